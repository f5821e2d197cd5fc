"""What the built-in judge `tiny-judge` learns from: verdicts in the plugin's own judge format
(``scoring/judge_prompt.py``, template ``judge-v1``, every section order) on answers to the scenes' questions.

- ``correctness`` (text only, as the plugin sends it by default): the question, the reference answer and an
  answer as a model gives it (``red``, ``Red.``, ``The answer is red.``, ``答案是红色。``); right -> 5, another
  answer of the same kind -> 1, with the two answers in the reason.
- ``description`` (with the image): a caption of the scene with none, one or two colour/shape words swapped, or a
  caption of another scene: 5, 3, 1, 1.

The verdict is always ``{"score": n, "reason": "..."}``. Examples are `scenes.Example`s, so the trainer's chat
rendering and answer-only labels apply unchanged."""

from __future__ import annotations

import json
import random
import re

from pytest_vleval.builtin.scenes import COLOURS, SHAPES, Example, make_example
from pytest_vleval.builtin.train_data import language
from pytest_vleval.scoring.judge_prompt import RUBRICS, VARIANTS, judge_prompt

__all__ = ["JUDGE_TASKS", "judge_example", "verdict_text"]

# The scene tasks whose answers the correctness examples grade (one short answer each).
JUDGE_TASKS = ("colour", "shape", "count", "position", "ocr", "chart", "multi_image")
DESCRIPTION_SHARE = 0.3
_EN_FORMS = ("{a}", "{A}.", "The answer is {a}.", "It is {a}.", "{A}", "{a}.")
_ZH_FORMS = ("{a}", "{a}。", "答案是{a}。", "是{a}。")
_SWAPPABLE = {"colour": tuple(COLOURS), "shape": SHAPES}


def verdict_text(score: int, reason: str) -> str:
    return json.dumps({"score": score, "reason": reason}, ensure_ascii=False)


def _as_given(rng: random.Random, answer: str, lang: str) -> str:
    form = rng.choice(_ZH_FORMS if lang == "zh" else _EN_FORMS)
    return form.format(a=answer, A=answer[:1].upper() + answer[1:])


def _other_answer(task: str, seed: int, lang: str, truth: str) -> str:
    """The answer of a nearby example of the same task that differs from `truth` (same kind of answer)."""
    for k in range(1, 50):
        other = make_example(task, seed + 7919 * k, lang=lang).turns[0][1]
        if other.lower() != truth.lower():
            return other
    raise RuntimeError(f"no other answer for {task} {seed}")


def _correctness(rng: random.Random, seed: int, size: int) -> Example:
    task = rng.choice(JUDGE_TASKS)
    lang = language(task, seed)
    base = make_example(task, seed, size, lang)
    question, truth = base.turns[0]
    right = rng.random() < 0.5
    said = truth if right else _other_answer(task, seed, lang, truth)
    prompt = judge_prompt(RUBRICS["correctness"], question, _as_given(rng, said, lang), truth, rng.randrange(4))
    score, reason = (5, "It gives the reference answer.") if right else (1, f"It says {said}, not {truth}.")
    meta = {"rubric": "correctness", "score": score}
    return Example("judge", seed, (), ((prompt.text, verdict_text(score, reason)),), meta=meta)


def _swap(rng: random.Random, caption: str, n: int) -> str:
    """`caption` with `n` of its colour or shape words replaced by another of the same kind."""
    words = caption.split(" ")
    spots = [i for i, w in enumerate(words) if any(w in v for v in _SWAPPABLE.values())]
    for i in rng.sample(spots, min(n, len(spots))):
        kind = next(k for k, v in _SWAPPABLE.items() if words[i] in v)
        words[i] = rng.choice([w for w in _SWAPPABLE[kind] if w != words[i] and w not in words])
    return " ".join(words)


def _description(rng: random.Random, seed: int, size: int) -> Example:
    base = make_example("caption", seed, size)
    question, caption = base.turns[0]
    draw = rng.random()
    if draw < 0.1:
        said, score, reason = make_example("caption", seed + 104729).turns[0][1], 1, "It does not match the image."
    else:
        wrong = 0 if draw < 0.5 else 1 if draw < 0.8 else 2
        wrong = min(wrong, len(re.findall("|".join(w for v in _SWAPPABLE.values() for w in v), caption)))
        said = _swap(rng, caption, wrong)
        score, reason = {0: (5, "Everything it names is in the image."), 1: (3, "One colour or shape is wrong."),
                         2: (1, "It does not match the image.")}[wrong]  # fmt: skip
    prompt = judge_prompt(RUBRICS["description"], question, _as_given(rng, said, "en"), None, rng.randrange(4))
    return Example(
        "judge", seed, base.scenes, ((prompt.text, verdict_text(score, reason)),),
        meta={"rubric": "description", "score": score},
    )  # fmt: skip


def judge_example(seed: int, size: int = 64) -> Example:
    """Judge example number `seed` (the same seed always gives the same prompt, image and verdict)."""
    rng = random.Random(f"judge/{seed}")
    if rng.random() < DESCRIPTION_SHARE:
        return _description(rng, seed, size)
    return _correctness(rng, seed, size)


assert len(VARIANTS) == 4  # _correctness and _description draw randrange(4)
