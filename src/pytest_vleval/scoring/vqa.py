"""The official VQA answer normalisation and accuracy (GT-Vision-Lab/VQA), and the scorers built on them."""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any

from pytest_vleval.scoring.base import ScoreContext, ScoreResult, as_texts, show
from pytest_vleval.scoring.cjk import normalize_zh_answer, to_ascii_punctuation

_VQA_PUNCT = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_VQA_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The official regex starts with a mistyped look-behind, "(?!<=\d)", which is a look-ahead that never fails
# before a '.'; kept verbatim so that "2.5" keeps its period and "3." loses it, exactly as upstream.
_VQA_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# Upstream passes re.UNICODE (32) as the positional `count` of sub(): at most 32 periods are removed.
_VQA_PERIOD_STRIP_COUNT = 32
_VQA_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_VQA_ARTICLES = frozenset({"a", "an", "the"})


@functools.cache
def _vqa_contractions() -> dict[str, str]:
    data = resources.files("pytest_vleval").joinpath("data", "vqa_contractions.json").read_text(encoding="utf-8")
    contractions: dict[str, str] = json.loads(data)
    return contractions


def _vqa_process_punctuation(in_text: str) -> str:
    out_text = in_text
    digit_comma = _VQA_COMMA_STRIP.search(in_text) is not None
    for p in _VQA_PUNCT:
        if p + " " in in_text or " " + p in in_text or digit_comma:
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return _VQA_PERIOD_STRIP.sub("", out_text, count=_VQA_PERIOD_STRIP_COUNT)


def _vqa_process_digit_article(in_text: str) -> str:
    contractions = _vqa_contractions()
    words = []
    for word in in_text.lower().split():
        word = _VQA_NUMBER_WORDS.get(word, word)
        if word not in _VQA_ARTICLES:
            words.append(word)
    return " ".join(contractions.get(word, word) for word in words)


def _vqa_clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_vqa_answer(text: str) -> str:
    """The official VQA answer normalisation: punctuation, periods, lower case, number words, articles,
    contractions. Idempotent except on texts with more than 32 periods (an upstream quirk kept on purpose)."""
    return _vqa_process_digit_article(_vqa_process_punctuation(_vqa_clean(text)))


@dataclass(frozen=True)
class _VQAOutcome:
    accuracy: float
    matches: int
    compared: str
    normalised: bool


VQA_MODES = ("official", "evalai", "zh")


def _normaliser(gts: Sequence[str], mode: str) -> Callable[[str], str] | None:
    """How the answers (and the prediction) are normalised, or None: the official code normalises only when the
    annotators disagree; EvalAI-style harnesses, and the Chinese variant with its own rules, always do."""
    if mode == "official" and len(set(gts)) <= 1:
        return None
    return normalize_zh_answer if mode == "zh" else normalize_vqa_answer


def _vqa_outcome(prediction: str, answers: Sequence[str], mode: str) -> _VQAOutcome:
    if mode not in VQA_MODES:
        raise ValueError(f"vqa_accuracy mode must be one of {', '.join(VQA_MODES)}, not {mode!r}")
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    gts = [_vqa_clean(answer) for answer in answers]
    res = _vqa_clean(prediction)
    normalise = _normaliser(gts, mode)
    if normalise is not None:
        gts = [normalise(answer) for answer in gts]
        res = normalise(res)
    matching = [gt == res for gt in gts]
    k = sum(matching)
    total = Fraction(0)
    # Leave-one-out by index: answer i is held out even when another annotator gave the same text. Exact
    # fractions give the closed-form values (0.3, 0.6, 0.9) without float drift; upstream reports
    # round(100 * mean, 2), which float rounding cannot change.
    for i in range(len(gts)):
        others = k - matching[i]
        total += min(Fraction(1), Fraction(others, 3))
    return _VQAOutcome(float(total / len(gts)), k, res, normalise is not None)


def best_vqa_accuracy(answers: Sequence[str], *, mode: str = "official") -> float:
    """The highest :func:`vqa_accuracy` any prediction can reach against `answers` (the most common answer's):
    ``max(vqa_accuracy(a, answers) for a in answers)``, with each answer normalised once instead of n times."""
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    return _best(tuple(answers), mode)


@functools.lru_cache(maxsize=256)  # collection asks twice per dataset row (reachable threshold, then validation)
def _best(answers: tuple[str, ...], mode: str) -> float:
    gts = [_vqa_clean(answer) for answer in answers]
    normalise = _normaliser(gts, mode)
    if normalise is not None:
        gts = [normalise(answer) for answer in gts]
    n, k = len(gts), Counter(gts).most_common(1)[0][1]
    # k annotators gave it: held out, each leaves k - 1 matches; the other n - k leave k.
    total = k * min(Fraction(1), Fraction(k - 1, 3)) + (n - k) * min(Fraction(1), Fraction(k, 3))
    return float(total / n)


def vqa_accuracy(prediction: str, answers: Sequence[str], *, mode: str = "official") -> float:
    """VQAv2 accuracy of one prediction against the human answers (10 in VQAv2), in [0, 1].

    ``mode="official"`` follows GT-Vision-Lab's vqaEval.py: answers and prediction are normalised only when
    the answers are not all identical, then accuracy = mean over answers i of min(1, #(other answers equal to
    the prediction) / 3). With 10 answers and k matching: 0, 0.3, 0.6, 0.9, 1.0 for k = 0, 1, 2, 3, >=4.
    ``mode="evalai"`` always normalises both sides (as lmms-eval and VLMEvalKit effectively do), so "Yes"
    against ten "yes" scores 1.0 instead of 0.0. ``mode="zh"`` is the same accuracy for Chinese answers, always
    normalised with :func:`~pytest_vleval.scoring.cjk.normalize_zh_answer` instead of the English rules (NFKC,
    Chinese punctuation, counts as digits: "三个" is 3). With fewer than 4 answers 1.0 is out of reach.
    """
    return _vqa_outcome(prediction, answers, mode).accuracy


def score_vqa(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    answers = as_texts(reference)
    mode = options.get("mode", "official")
    outcome = _vqa_outcome(prediction, answers, mode)
    n = len(answers)
    detail = f"{outcome.matches}/{n} annotators gave {show(outcome.compared)}"
    if outcome.normalised:
        detail += " (after the Chinese answer normalisation)" if mode == "zh" else " (after VQA normalisation)"
    else:
        detail += " (answers unanimous: compared without normalisation, the official rule)"
    if n < 4:
        best = vqa_accuracy("", [""] * n)
        detail += f"; with only {n} answers the best possible score is {best:.2f}"
    return ScoreResult(outcome.accuracy, detail)


def _normalized_key(text: str) -> str:
    """`exact_normalized` and `any_of`: the VQA normalisation after NFKC and Chinese punctuation as ASCII
    (``cjk.to_ascii_punctuation``), so "红色。" and "“红色”" are "红色"."""
    return normalize_vqa_answer(to_ascii_punctuation(text))


def score_exact_normalized(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    key = _normalized_key(prediction)
    for answer in as_texts(reference):
        if _normalized_key(answer) == key:
            return ScoreResult(1.0, f"{show(key)} equals expected {show(answer)} after VQA normalisation")
    return ScoreResult(0.0, f"normalised answer {show(key)} equals no expected answer")


def score_any_of(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    key = _normalized_key(prediction)
    accepted = as_texts(reference)
    normalised = {_normalized_key(answer): answer for answer in reversed(accepted)}
    if key in normalised:
        return ScoreResult(1.0, f"{show(key)} is accepted answer {show(normalised[key])}")
    return ScoreResult(0.0, f"normalised answer {show(key)} is none of the {len(accepted)} accepted answers")
