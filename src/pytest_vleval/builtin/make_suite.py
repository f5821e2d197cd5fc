"""Write the bundled suites (`test_cases/`, `test_cases/zh/`) and golden caption sets (`golden/shapes/`,
`golden/zh/`) from held-out scenes.

    python -m pytest_vleval.builtin.make_suite            # writes test_cases/ and golden/
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
import dataclasses
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_vleval.builtin.golden_set import (
    CAPTION_PROMPT,
    GENERATED,
    GOLDEN_THRESHOLDS,
    GOLDEN_THRESHOLDS_ZH,
    golden_references,
    measure_golden,
    write_golden,
)
from pytest_vleval.builtin.scenes import HELD_OUT_SEED_BASE, NUMBER_WORDS, Example, make_example
from pytest_vleval.builtin.suite_zh import SUITE_FILES_ZH, ZH_SEED_BASE, zh_case_data
from pytest_vleval.builtin.train_data import sent_example
from pytest_vleval.builtin.words import ZH_CAPTION_PROMPT, ZH_TASKS

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
CASES_PER_TASK.update({f"{task}/zh": 8 for task in ZH_TASKS})
# Held-out scenes asked per task: the README's unfiltered accuracy is measured on all of them.
CANDIDATES = {task: 2 * n for task, n in CASES_PER_TASK.items()}
# File name, description and shared defaults of each task's YAML file.
SUITE_FILES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "caption": (
        "test_captions.yaml",
        "Captioning with lmms-eval's COCO prompt: the caption must name every shape's colour and kind (any wording).",
        {"task": "caption", "scorer": "contains", "options": {"all": True}, "max_new_tokens": 64, "tags": ["caption"]},
    ),
    "colour": (
        "test_colour.yaml",
        "Colour of a named shape, asked with the VQAv2 format instruction; VQAv2 accuracy against 10 synthetic "
        "annotators after the EvalAI answer processor.",
        {"task": "vqa", "scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 16, "tags": ["vqa", "colour"]},
    ),
    "shape": (
        "test_shape.yaml",
        "Kind of shape (circle, square, triangle, diamond), asked with the VQAv2 format instruction; VQAv2 accuracy.",
        {"task": "vqa", "scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 16, "tags": ["vqa", "shape"]},
    ),
    "count": (
        "test_count.yaml",
        "Counting shapes of a kind or colour among distractors, asked with the CountBenchQA instruction; VQAv2 "
        "accuracy (number words count: 'Three.' is 3).",
        {"task": "count", "scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 16, "tags": ["vqa", "count"]},
    ),
    "position": (
        "test_position.yaml",
        "Where a shape is in the image (left, right, top, bottom), asked with the VQAv2 format instruction; VQAv2 "
        "accuracy.",
        {"task": "vqa", "scorer": "vqa_accuracy", "threshold": 0.9, "max_new_tokens": 16, "tags": ["vqa", "position"]},
    ),
    "ocr": (
        "test_ocr.yaml",
        "Reading a rendered word or number, asked with the TextVQA format instruction; ANLS, passing at 0.8 (one "
        "wrong letter in a five-letter word passes, one wrong digit of three does not).",
        {"task": "ocr", "scorer": "anls", "threshold": 0.8, "max_new_tokens": 16, "tags": ["ocr"]},
    ),
    "chart": (
        "test_chart.yaml",
        "Bar-chart questions (a bar's value, tallest/shortest bar, number of bars), asked with the ChartQA format "
        "instruction; ChartQA relaxed accuracy.",
        {"task": "chart", "scorer": "relaxed_accuracy", "threshold": 1.0, "max_new_tokens": 16, "tags": ["chart"]},
    ),
    "multi_image": (
        "test_multi_image.yaml",
        "Two images in one question: comparing them, or asking about the first or the second; short answers.",
        {"task": "multi_image", "scorer": "exact", "threshold": 1.0, "max_new_tokens": 16, "tags": ["multi_image"]},
    ),
    "dialogue": (
        "test_dialogue.yaml",
        "Two-turn dialogue: the second question refers back to the first answer; the answer must name the "
        "expected word (a sentence is fine).",
        {"task": "vqa", "scorer": "contains", "threshold": 1.0, "max_new_tokens": 32, "tags": ["dialogue"]},
    ),
    "grounding": (
        "test_grounding.yaml",
        "Grounding by referring expression: each model is asked in its family's own words (docs/families.md) and "
        "its box read in its own convention; IoU with the true box.",
        {"task": "grounding", "scorer": "iou", "threshold": 0.5, "max_new_tokens": 128, "tags": ["grounding"]},
    ),
}


@dataclass
class SuiteCase:
    """One case: the YAML mapping to write (images as paths) and the example it was made from. `task` is the
    scene task, with "/zh" for the Chinese suite's."""

    task: str
    example: Example
    data: dict[str, Any]
    image_names: list[str] = field(default_factory=list)

    @property
    def file(self) -> tuple[str, str, dict[str, Any]]:
        """(file name, description, defaults) of the case's YAML file."""
        scene_task, _, lang = self.task.partition("/")
        return SUITE_FILES_ZH[scene_task] if lang == "zh" else SUITE_FILES[scene_task]


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
            if task.endswith("/zh"):
                out.append(_zh_case(task, i, ZH_SEED_BASE + t_index * 10_000 + i))
                continue
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
            elif task == "caption":  # asked with the task's own question (lmms-eval's COCO caption prompt)
                data["expected"] = [word for shape in example.scenes[0].shapes for word in (shape.colour, shape.kind)]
            elif task == "grounding":
                assert example.label is not None and example.box is not None
                data["refer"] = example.label
                data["box"] = list(example.box)
            else:
                data["question"] = question
                if task in ("colour", "shape", "count", "position"):
                    data["answers"] = _vqa_answers(task, answer, rng)
                else:
                    data["expected"] = answer
            out.append(SuiteCase(task, example, data, names))
    return out


def _zh_case(task: str, i: int, seed: int) -> SuiteCase:
    scene_task = task.split("/")[0]
    example, data = zh_case_data(scene_task, i, seed)
    name = f"{scene_task}_zh_{i + 1:03d}.png"
    return SuiteCase(task, example, {"id": data.pop("id"), "image": f"images/{name}", **data}, [name])


def write_suites(cases: Sequence[SuiteCase], root: Path, left_out: dict[str, list[str]]) -> None:
    """The English suite in `root`, the Chinese one in `root/zh`."""
    write_suite([c for c in cases if "/" not in c.task], root, left_out)
    write_suite([c for c in cases if c.task.endswith("/zh")], root / "zh", left_out)


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
        filename, description, defaults = task_cases[0].file
        dropped = (left_out or {}).get(task)
        if dropped:
            description += (
                f" Held-out scenes; left out because the shipped tiny answers them wrongly: {', '.join(dropped)}"
                " (this suite is tiny's regression gate; its accuracy on all of them is in the README)."
            )
        doc = {"description": description, "defaults": defaults, "cases": [c.data for c in task_cases]}
        text = yaml.safe_dump(doc, sort_keys=False, width=120, allow_unicode=True)
        (root / filename).write_text(GENERATED + text, encoding="utf-8")


def _sent(case: SuiteCase) -> Example:
    """The example with the questions the plugin sends for its case (captions: the task's own question)."""
    sent = sent_example(case.example)
    if case.task == "caption":
        sent = dataclasses.replace(sent, turns=((CAPTION_PROMPT, sent.turns[0][1]),))
    elif case.task == "caption/zh":
        sent = dataclasses.replace(sent, turns=((ZH_CAPTION_PROMPT, sent.turns[0][1]),))
    return sent


def measure(model_dir: Path, cases: Sequence[SuiteCase]) -> dict[str, tuple[bool, list[str]]]:
    """Run every case on `model_dir` as the plugin does (the sent prompts; each turn scored by the case's own
    scorer after its answer extraction): {case id: (passed, answers)}."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from pytest_vleval.builtin.train import generate_answers
    from pytest_vleval.cases.fields import Where, parse_turn
    from pytest_vleval.scoring.outcome import score_turn, turn_context

    torch.set_num_threads(2)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    answers = generate_answers(model, processor, [_sent(c) for c in cases])
    results = {}
    for case, case_answers in zip(cases, answers, strict=True):
        sizes = tuple(im.size for im in case.example.images)
        _, _, defaults = case.file
        raw_turns = case.data.get("turns") or [case.data]
        ok = True
        for raw, answer in zip(raw_turns, case_answers, strict=True):
            turn = parse_turn(raw, {**defaults, **raw}, Where(Path(f"{case.task}.yaml"), case.data["id"]))
            _, _, result = score_turn(turn, answer, turn_context(turn, sizes))
            ok = ok and result.score >= turn.threshold
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
    parser.add_argument("--golden", type=Path, default=Path("golden"),
                        help="Folder of the golden caption sets shapes/ and zh/ (default: golden).")  # fmt: skip
    parser.add_argument("--measure", action="store_true", help="Print tiny vs tiny-v0 accuracy per task.")
    args = parser.parse_args(argv)
    from pytest_vleval.builtin import BUILTIN_MODELS

    candidates = build_cases()
    tiny = measure(BUILTIN_MODELS["tiny"], candidates)
    cases, left_out = select(candidates, tiny)
    write_suites(cases, args.cases, left_out)
    golden = {}
    for lang, folder, thresholds in (("en", "shapes", GOLDEN_THRESHOLDS), ("zh", "zh", GOLDEN_THRESHOLDS_ZH)):
        (args.golden / folder).mkdir(parents=True, exist_ok=True)
        golden[lang] = write_golden(args.golden / folder, thresholds, lang=lang)
    print(f"wrote {len(cases)} cases to {args.cases}/ and the golden sets to {args.golden}/")
    print(f"left out (tiny answers them wrongly): {left_out}")
    if args.measure:
        _print_measurements(BUILTIN_MODELS, candidates, cases, tiny, golden, args.golden)
    return 0


def _print_measurements(
    models: dict[str, Path],
    candidates: list[SuiteCase],
    cases: list[SuiteCase],
    tiny: dict[str, tuple[bool, list[str]]],
    golden: dict[str, list[Example]],
    golden_root: Path,
) -> None:
    table = {}
    for name, model_dir in models.items():
        results = tiny if name == "tiny" else measure(model_dir, candidates)
        table[name] = (_per_task(candidates, results), _per_task(cases, results))
        failing = [(c.data["id"], " | ".join(results[c.data["id"]][1])) for c in cases if not results[c.data["id"]][0]]
        print(f"{name}: {len(cases) - len(failing)}/{len(cases)} suite cases pass; failing: {failing}")
        print(f"{name} golden shapes: {measure_golden(model_dir, golden['en'], golden_root / 'shapes')}")
        print(f"{name} golden zh: {measure_golden(model_dir, golden['zh'], golden_root / 'zh', lang='zh')}")
    names = list(table)
    print("| task | candidates | " + " | ".join(f"{n} (all)" for n in names) + " | suite cases | "
          + " | ".join(f"{n} (suite)" for n in names) + " |")  # fmt: skip
    for task in CASES_PER_TASK:
        n_suite = sum(c.task == task for c in cases)
        print(
            f"| {task} | {CANDIDATES[task]} | " + " | ".join(f"{table[n][0][task]:.2f}" for n in names)
            + f" | {n_suite} | " + " | ".join(f"{table[n][1].get(task, 0):.2f}" for n in names) + " |"
        )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
