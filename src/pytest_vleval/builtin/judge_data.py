"""What the built-in judge `tiny-judge` learns from: verdicts in the plugin's own judge format
(``scoring/judge_prompt.py``, template ``judge-v1``, every section order) on answers to the scenes' questions.

- ``correctness`` (text only, as the plugin sends it by default): the question, the reference answer and an
  answer as a model gives it (``red``, ``Red.``, ``The answer is red.``, ``答案是红色。``); right -> 5, another
  answer of the same kind -> 1; the reason names both answers ("It says blue; the reference answer is red.").
- ``description`` (with the image): a caption of the scene with none, one or two colour/shape words swapped, or a
  caption of another scene: 5, 3, 1, 1; the reason says what the description says and what the image shows.

The verdict is always ``{"reason": "...", "score": n}``, the reason first: a model this small cannot decide
the score before it has written out what it compares (trained score-first, it judged at chance). Examples are
`scenes.Example`s, so the trainer's chat rendering and answer-only labels apply unchanged."""

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
    """The verdict as the template asks for it: the reason first, so the score follows what the reason spelled
    out (the two answers side by side; the scene as the judge sees it)."""
    return json.dumps({"reason": reason, "score": score}, ensure_ascii=False)


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
    score, reason = (5 if right else 1), f"It says {said}; the reference answer is {truth}."
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
        said, score = make_example("caption", seed + 104729).turns[0][1], 1
    else:
        wrong = 0 if draw < 0.5 else 1 if draw < 0.8 else 2
        wrong = min(wrong, len(re.findall("|".join(w for v in _SWAPPABLE.values() for w in v), caption)))
        said = _swap(rng, caption, wrong)
        score = {0: 5, 1: 3, 2: 1}[wrong]
    # The reason puts the description and the image's own caption side by side (the built-in model captions
    # perfectly), so the score compares neighbouring words; with only the caption it gave 5 to everything.
    reason = f"It says {said}; the image shows {caption}."
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
