"""Write the bundled suite (`test_cases/`) and golden caption set (`golden/shapes/`) from held-out scenes.

    python -m pytest_vleval.builtin.make_suite            # writes test_cases/ and golden/shapes/
    python -m pytest_vleval.builtin.make_suite --measure  # also prints tiny vs tiny-v0 per task

Every case comes from a seed at or above `scenes.HELD_OUT_SEED_BASE`, which training never draws. The
suite is a regression gate for the shipped `tiny`: for each task the first `CANDIDATES` held-out scenes
are asked to `tiny` (the plugin's prompt format, greedy decoding, the case's own scorer) and the first
`CASES_PER_TASK` it answers right are kept; the ids keep their candidate number and each file's
description names the candidates left out, so nothing is hidden. `--measure` prints both models'
accuracy on all candidates (the unfiltered numbers) and on the kept suite.
"""

from __future__ import annotations

import argparse
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_vleval.builtin.golden_set import (
    GENERATED,
    GOLDEN_THRESHOLDS,
    golden_references,
    measure_golden,
    mirror_caption,
    write_golden,
)
from pytest_vleval.builtin.scenes import HELD_OUT_SEED_BASE, NUMBER_WORDS, Example, make_example

__all__ = ["SuiteCase", "build_cases", "golden_references", "main", "write_golden", "write_suite"]

SUITE_SEED_BASE = HELD_OUT_SEED_BASE  # train.evaluate uses HELD_OUT_SEED_BASE + 10**6 onwards
CASES_PER_TASK = {
    "caption": 8,
    "colour": 8,
    "shape": 8,
    "count": 8,
    "position": 8,
    "ocr": 8,
    "chart": 8,
    "multi_image": 8,
    "dialogue": 6,
    "grounding": 8,
}
# Held-out scenes asked per task: the README's unfiltered accuracy is measured on all of them.
CANDIDATES = {task: 2 * n for task, n in CASES_PER_TASK.items()}
# File name, description and shared defaults of each task's YAML file.
SUITE_FILES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "caption": (
        "test_captions.yaml",
        "Captions asked as a question: the answer must contain the scene's caption (or its mirror).",
        {"scorer": "contains", "threshold": 1.0, "max_new_tokens": 24, "tags": ["caption"]},
    ),
    "colour": (
        "test_colour.yaml",
        "Colour of a named shape; VQAv2 accuracy against 10 synthetic annotators.",
        {"scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 8, "tags": ["vqa", "colour"]},
    ),
    "shape": (
        "test_shape.yaml",
        "Kind of shape (circle, square, triangle, diamond); VQAv2 accuracy against 10 synthetic annotators.",
        {"scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 8, "tags": ["vqa", "shape"]},
    ),
    "count": (
        "test_count.yaml",
        "Counting shapes of a kind or colour among distractors; VQAv2 accuracy.",
        {"scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 8, "tags": ["vqa", "count"]},
    ),
    "position": (
        "test_position.yaml",
        "Where a shape is in the image (left, right, top, bottom); VQAv2 accuracy.",
        {"scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 8, "tags": ["vqa", "position"]},
    ),
    "ocr": (
        "test_ocr.yaml",
        "Reading a rendered word or number; ANLS (1 - normalised edit distance, 0 beyond 0.5).",
        {"scorer": "anls", "threshold": 0.5, "max_new_tokens": 12, "tags": ["ocr"]},
    ),
    "chart": (
        "test_chart.yaml",
        "Bar-chart questions (a bar's value, tallest/shortest bar, number of bars); ChartQA relaxed accuracy.",
        {"scorer": "relaxed_accuracy", "threshold": 1.0, "max_new_tokens": 8, "tags": ["chart"]},
    ),
    "multi_image": (
        "test_multi_image.yaml",
        "Two images in one question: comparing them, or asking about the first or the second.",
        {"scorer": "exact", "threshold": 1.0, "max_new_tokens": 8, "tags": ["multi_image"]},
    ),
    "dialogue": (
        "test_dialogue.yaml",
        "Two-turn dialogue: the second question refers back to the first answer.",
        {"scorer": "exact", "threshold": 1.0, "max_new_tokens": 8, "tags": ["dialogue"]},
    ),
    "grounding": (
        "test_grounding.yaml",
        'Grounding answered as Qwen3-VL does: JSON {"bbox_2d": [x1, y1, x2, y2]} on the 0-1000 grid; IoU.',
        {"scorer": "iou", "threshold": 0.5, "max_new_tokens": 48, "tags": ["grounding"]},
    ),
}


@dataclass
class SuiteCase:
    """One case: the YAML mapping to write (images as paths) and the example it was made from."""

    task: str
    example: Example
    data: dict[str, Any]
    image_names: list[str] = field(default_factory=list)


def _annotators(rng: random.Random, answer: str, variants: Sequence[str], n_variants: int) -> list[str]:
    """Ten 'human' answers: mostly the true answer, with `n_variants` of them phrased differently."""
    answers = [answer] * (10 - n_variants) + [rng.choice(variants) for _ in range(n_variants)]
    rng.shuffle(answers)
    return answers


def _vqa_answers(task: str, answer: str, rng: random.Random) -> list[str]:
    if task == "colour":
        variants = [f"dark {answer}", f"bright {answer}", answer.capitalize(), f"{answer} colour"]
    elif task == "shape":
        variants = [f"a {answer}", f"{answer}s", answer.capitalize(), {"circle": "round", "square": "box",
                    "triangle": "pyramid", "diamond": "rhombus"}[answer]]  # fmt: skip
    elif task == "count":
        n = int(answer)
        variants = [NUMBER_WORDS[n], str(n + 1), str(max(n - 1, 0)), f"{answer} shapes"]
    else:
        variants = [f"on the {answer}", f"{answer} side", f"the {answer}", f"at the {answer}"]
    return _annotators(rng, answer, variants, rng.randint(1, 3))


def build_cases(cases_per_task: dict[str, int] | None = None) -> list[SuiteCase]:
    """The candidate cases, in order, `CANDIDATES[task]` of each task."""
    counts = CANDIDATES if cases_per_task is None else cases_per_task
    out = []
    for t_index, (task, n) in enumerate(counts.items()):
        for i in range(n):
            seed = SUITE_SEED_BASE + t_index * 10_000 + i
            example = make_example(task, seed)
            rng = random.Random(f"annotators/{task}/{seed}")
            names = [f"{task}_{i + 1:03d}" + (f"_{j + 1}" if len(example.scenes) > 1 else "") + ".png"
                     for j in range(len(example.scenes))]  # fmt: skip
            data: dict[str, Any] = {"id": f"{task.replace('_', '-')}-{i + 1:03d}"}
            if len(names) == 1:
                data["image"] = f"images/{names[0]}"
            else:
                data["images"] = [f"images/{n}" for n in names]
            (question, answer), *rest = example.turns
            if task == "dialogue":
                second_q, second_a = rest[0]
                data["turns"] = [
                    {"question": question, "expected": answer},
                    {"question": second_q, "expected": second_a},
                ]
            else:
                data["question"] = question
                if task == "caption":
                    mirror = mirror_caption(answer)
                    data["expected"] = [answer, mirror] if mirror else answer
                elif task in ("colour", "shape", "count", "position"):
                    data["answers"] = _vqa_answers(task, answer, rng)
                elif task == "grounding":
                    data["box"] = list(example.box)
                else:
                    data["expected"] = answer
            out.append(SuiteCase(task, example, data, names))
    return out


def write_suite(cases: Sequence[SuiteCase], root: Path, left_out: dict[str, list[str]] | None = None) -> None:
    """Write `root/test_<task>.yaml` files and `root/images/*.png`, replacing what was there."""
    images = root / "images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir(parents=True)
    for old in root.glob("test_*.yaml"):
        old.unlink()
    by_task: dict[str, list[SuiteCase]] = {}
    for case in cases:
        by_task.setdefault(case.task, []).append(case)
        for scene, name in zip(case.example.scenes, case.image_names, strict=True):
            scene.image.save(images / name, optimize=True)
    for task, task_cases in by_task.items():
        filename, description, defaults = SUITE_FILES[task]
        dropped = (left_out or {}).get(task)
        if dropped:
            description += (
                f" Held-out scenes; left out because the shipped tiny answers them wrongly: {', '.join(dropped)}"
                " (this suite is tiny's regression gate; its accuracy on all of them is in the README)."
            )
        doc = {"description": description, "defaults": defaults, "cases": [c.data for c in task_cases]}
        text = yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)
        (root / filename).write_text(GENERATED + text)


def _turn_specs(case: SuiteCase) -> list[tuple[str, Any, dict, float]]:
    """(scorer, reference, options, threshold) per turn, as the plugin reads them."""
    _, _, defaults = SUITE_FILES[case.task]
    if "turns" in case.data:
        return [
            (t.get("scorer", defaults["scorer"]), t["expected"], t.get("options", {}),
             t.get("threshold", defaults["threshold"]))
            for t in case.data["turns"]
        ]  # fmt: skip
    key = {"vqa_accuracy": "answers", "iou": "box"}.get(defaults["scorer"], "expected")
    return [(defaults["scorer"], case.data[key], {}, defaults["threshold"])]


def measure(model_dir: Path, cases: Sequence[SuiteCase]) -> dict[str, tuple[bool, list[str]]]:
    """Run every case on `model_dir` like the plugin does: {case id: (passed, answers)}."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pytest_vleval import scoring
    from pytest_vleval.builtin.train import generate_answers

    torch.set_num_threads(2)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    answers = generate_answers(model, processor, [c.example for c in cases])
    results = {}
    for case, case_answers in zip(cases, answers, strict=True):
        sizes = tuple(im.size for im in case.example.images)
        ok = True
        for (name, ref, options, threshold), answer in zip(_turn_specs(case), case_answers, strict=True):
            result = scoring.score(name, answer, ref, options, scoring.ScoreContext(image_sizes=sizes))
            ok = ok and result.score >= threshold
        results[case.data["id"]] = (ok, case_answers)
    return results


def _per_task(cases: Sequence[SuiteCase], results: dict[str, tuple[bool, list[str]]]) -> dict[str, float]:
    by_task: dict[str, list[bool]] = {}
    for case in cases:
        by_task.setdefault(case.task, []).append(results[case.data["id"]][0])
    return {task: sum(v) / len(v) for task, v in by_task.items()}


def select(cases: Sequence[SuiteCase], results: dict[str, tuple[bool, list[str]]]) -> tuple[list, dict]:
    """The first `CASES_PER_TASK` passing cases of each task, and the ids left out before the last kept one."""
    kept: list[SuiteCase] = []
    left_out: dict[str, list[str]] = {}
    for case in cases:
        n_kept = sum(c.task == case.task for c in kept)
        if n_kept >= CASES_PER_TASK[case.task]:
            continue
        if results[case.data["id"]][0]:
            kept.append(case)
        else:
            left_out.setdefault(case.task, []).append(case.data["id"])
    return kept, left_out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=Path, default=Path("test_cases"), help="Suite folder (default: test_cases).")
    parser.add_argument("--golden", type=Path, default=Path("golden/shapes"),
                        help="Golden caption set folder (default: golden/shapes).")  # fmt: skip
    parser.add_argument("--measure", action="store_true", help="Print tiny vs tiny-v0 accuracy per task.")
    args = parser.parse_args(argv)
    from pytest_vleval.builtin import BUILTIN_MODELS

    candidates = build_cases()
    tiny = measure(BUILTIN_MODELS["tiny"], candidates)
    cases, left_out = select(candidates, tiny)
    write_suite(cases, args.cases, left_out)
    args.golden.mkdir(parents=True, exist_ok=True)
    golden = write_golden(args.golden, GOLDEN_THRESHOLDS)
    print(f"wrote {len(cases)} cases to {args.cases}/ and {len(golden)} golden images to {args.golden}/")
    print(f"left out (tiny answers them wrongly): {left_out}")
    if args.measure:
        table = {}
        for name, model_dir in BUILTIN_MODELS.items():
            results = tiny if name == "tiny" else measure(model_dir, candidates)
            table[name] = (_per_task(candidates, results), _per_task(cases, results))
            failing = [
                (c.data["id"], " | ".join(results[c.data["id"]][1])) for c in cases if not results[c.data["id"]][0]
            ]
            print(f"{name}: {len(cases) - len(failing)}/{len(cases)} suite cases pass; failing: {failing}")
            print(f"{name} golden: {measure_golden(model_dir, golden, args.golden)}")
        names = list(table)
        print("| task | candidates | " + " | ".join(f"{n} (all)" for n in names) + " | suite cases | "
              + " | ".join(f"{n} (suite)" for n in names) + " |")  # fmt: skip
        for task in CASES_PER_TASK:
            n_suite = sum(c.task == task for c in cases)
            print(
                f"| {task} | {CANDIDATES[task]} | " + " | ".join(f"{table[n][0][task]:.2f}" for n in names)
                + f" | {n_suite} | " + " | ".join(f"{table[n][1].get(task, 0):.2f}" for n in names) + " |"
            )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
