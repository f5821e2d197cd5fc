"""The bundled Chinese suite (``test_cases/zh/``): the same scene tasks asked in Chinese, each scored the way a
Chinese answer needs (``scoring/cjk.py``), written by ``python -m pytest_vleval.builtin.make_suite``.

Questions carry no instruction of their own: a Chinese question gets its task's Chinese instruction
(``cases/prompts.py``, VLMEvalKit's). Answers are the built-in model's short Chinese forms; the synthetic
annotators of the VQA-style files phrase them differently, as people do (红 / 大红色, 三 / 3).
"""

from __future__ import annotations

import random
from typing import Any

from pytest_vleval.builtin.scenes import HELD_OUT_SEED_BASE, make_example
from pytest_vleval.builtin.words import ZH, ZH_CAPTION_PROMPT, ZH_TASKS

__all__ = ["SUITE_FILES_ZH", "ZH_SEED_BASE", "zh_case_data"]

ZH_SEED_BASE = HELD_OUT_SEED_BASE + 100_000  # the English suite uses HELD_OUT_SEED_BASE + task * 10_000 + i
_VQA_ZH = {"task": "vqa", "scorer": "vqa_accuracy", "options": {"mode": "zh"}, "threshold": 0.9, "max_new_tokens": 16}

SUITE_FILES_ZH: dict[str, tuple[str, str, dict[str, Any]]] = {
    "caption": (
        "test_captions.yaml",
        "看图说话 (captioning) in Chinese: the caption must name every shape's colour and kind; `contains` needs no "
        "word boundary next to a Chinese character.",
        {
            "task": "caption",
            "scorer": "contains",
            "options": {"all": True},
            "max_new_tokens": 64,
            "tags": ["zh", "caption"],
        },
    ),
    "colour": (
        "test_colour.yaml",
        "颜色 (colour of a named shape), asked in Chinese; VQAv2 accuracy against 10 synthetic annotators with the "
        "Chinese answer normalisation (mode: zh).",
        {**_VQA_ZH, "tags": ["zh", "vqa", "colour"]},
    ),
    "shape": (
        "test_shape.yaml",
        "形状 (kind of shape), asked in Chinese; VQAv2 accuracy, mode: zh.",
        {**_VQA_ZH, "tags": ["zh", "vqa", "shape"]},
    ),
    "count": (
        "test_count.yaml",
        "数数 (counting), asked in Chinese; the model answers with a Chinese numeral and counter (三个), which "
        "`numeric` reads as the number.",
        {
            "task": "count",
            "scorer": "numeric",
            "options": {"absolute": 0},
            "max_new_tokens": 16,
            "tags": ["zh", "count"],
        },
    ),
    "position": (
        "test_position.yaml",
        "位置 (where a shape is: 左边, 右边, 上边, 下边), asked in Chinese; VQAv2 accuracy, mode: zh.",
        {**_VQA_ZH, "tags": ["zh", "vqa", "position"]},
    ),
    "ocr": (
        "test_ocr.yaml",
        "文字识别 (reading a rendered word or number), asked in Chinese; ANLS, passing at 0.8. The words are Latin: "
        "no font that ships in a Python package draws Chinese characters, so the renderer cannot draw them.",
        {"task": "ocr", "scorer": "anls", "threshold": 0.8, "max_new_tokens": 16, "tags": ["zh", "ocr"]},
    ),
    "chart": (
        "test_chart.yaml",
        "图表 (bar charts), asked in Chinese; ChartQA relaxed accuracy after the visible `cjk` answer step, which "
        "turns a count such as 四根 into 4 (the official metric itself is unchanged).",
        {
            "task": "chart",
            "scorer": "relaxed_accuracy",
            "threshold": 1.0,
            "max_new_tokens": 16,
            "answer": ["thinking", "fences", "label", "quotes", "period", "cjk"],
            "tags": ["zh", "chart"],
        },
    ),
}
assert set(SUITE_FILES_ZH) == set(ZH_TASKS)


def _annotators(rng: random.Random, answer: str, variants: list[str]) -> list[str]:
    n_variants = rng.randint(1, 3)
    answers = [answer] * (10 - n_variants) + [rng.choice(variants) for _ in range(n_variants)]
    rng.shuffle(answers)
    return answers


def _variants(task: str, answer: str) -> list[str]:
    if task == "colour":
        return [answer[0], f"大{answer}", f"{answer}的", f"深{answer}"]
    if task == "shape":
        short = {"圆形": "圆", "正方形": "方形", "三角形": "三角", "菱形": "钻石形"}[answer]
        return [f"一个{answer}", short, f"{answer}的"]
    return [answer[0], f"在{answer}", f"{answer}位置", f"图的{answer}"]  # position


def zh_case_data(task: str, index: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """(example, YAML mapping without images) of Chinese case number `index` (from 0) of `task`."""
    example = make_example(task, seed, lang="zh")
    (question, answer), *_ = example.turns
    data: dict[str, Any] = {"id": f"{task}-zh-{index + 1:03d}"}
    if task == "caption":
        data["question"] = ZH_CAPTION_PROMPT
        data["expected"] = [w for s in example.scenes[0].shapes for w in (ZH.colours[s.colour], ZH.shapes[s.kind])]
    elif task in ("colour", "shape", "position"):
        data["question"] = question
        rng = random.Random(f"annotators/zh/{task}/{seed}")
        data["answers"] = _annotators(rng, answer, _variants(task, answer))
    elif task == "count" or (task == "chart" and answer.endswith("根")):
        data["question"] = question
        data["expected"] = str(_count_value(answer))
    else:
        data["question"] = question
        data["expected"] = answer
    return example, data


def _count_value(answer: str) -> int:
    from pytest_vleval.scoring.cjk import cjk_answer

    return int(cjk_answer(answer))
