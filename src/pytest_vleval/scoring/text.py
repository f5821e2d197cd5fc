"""String scorers: exact, contains, regex and ANLS (ST-VQA / DocVQA)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vleval.scoring.base import ScoreContext, ScoreResult, as_texts, show
from pytest_vleval.scoring.cjk import CJK_CHARS, has_cjk, nfkc


def exact_key(text: str) -> str:
    """What `exact` compares: NFKC (full-width forms as ASCII), trimmed, case-folded, one trailing '.' or '。'
    dropped."""
    text = nfkc(text).strip().casefold()
    if text.endswith((".", "。")):
        text = text[:-1].rstrip()
    return text


def score_exact(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    key = exact_key(prediction)
    expected = as_texts(reference)
    for answer in expected:
        if exact_key(answer) == key:
            return ScoreResult(1.0, f"matched expected {show(answer)}")
    return ScoreResult(0.0, f"{show(prediction)} is not one of {', '.join(map(show, expected))}")


# A letter or digit of a script written with spaces: what may not touch an answer's edge ("red" is not in "reddish";
# Chinese has no spaces, so "红色" is in "这是红色的圆形", and "red" is in "这是red的").
_WORD_CHAR = f"[^\\W{CJK_CHARS}]"


def _contains_pattern(answer: str) -> re.Pattern[str]:
    # Word boundaries by look-around, not \b, so answers that start or end with a symbol ("$5") still work and an
    # edge that is a CJK character needs none; any run of whitespace in the answer matches any run in the prediction.
    answer = nfkc(answer).strip()
    body = r"\s+".join(re.escape(word) for word in answer.split())
    left = "" if has_cjk(answer[:1]) else f"(?<!{_WORD_CHAR})"
    right = "" if has_cjk(answer[-1:]) else f"(?!{_WORD_CHAR})"
    return re.compile(f"{left}{body}{right}", re.IGNORECASE)


def contains_words(text: str, answer: str) -> bool:
    """Whether `answer` appears in `text` as scorer `contains` looks for it (both NFKC; see `_contains_pattern`)."""
    return _contains_pattern(answer).search(nfkc(text)) is not None


def score_contains(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    expected = as_texts(reference)
    if options.get("all"):
        missing = [answer for answer in expected if not contains_words(prediction, answer)]
        if not missing:
            return ScoreResult(1.0, f"found all of {', '.join(map(show, expected))} in the answer")
        return ScoreResult(0.0, f"{', '.join(map(show, missing))} missing (as words) from {show(prediction)}")
    for answer in expected:
        if answer.strip() and contains_words(prediction, answer):
            return ScoreResult(1.0, f"found {show(answer)} in the answer")
    return ScoreResult(0.0, f"none of {', '.join(map(show, expected))} appears as words in {show(prediction)}")


def compile_regex(pattern: str, options: Mapping[str, Any]) -> re.Pattern[str]:
    flags = 0 if options.get("flags", "ignorecase") == "none" else re.IGNORECASE
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None


def score_regex(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    patterns = as_texts(reference)
    fullmatch = bool(options.get("fullmatch", False))
    for pattern in patterns:
        compiled = compile_regex(pattern, options)
        found = compiled.fullmatch(prediction.strip()) if fullmatch else compiled.search(prediction)
        if found:
            return ScoreResult(1.0, f"/{pattern}/ matched {show(found.group(0))}")
    how = "fully matches" if fullmatch else "matches"
    return ScoreResult(0.0, f"no pattern of {', '.join(f'/{p}/' for p in patterns)} {how} {show(prediction)}")


def _levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _anls_text(text: str) -> str:
    return " ".join(text.strip().lower().split())


def _anls_one(prediction: str, answer: str, threshold: float) -> tuple[float, float]:
    """(score, normalised Levenshtein distance) against one answer."""
    pred, gt = _anls_text(prediction), _anls_text(answer)
    length = max(len(pred), len(gt))
    distance = _levenshtein(pred, gt) / length if length else 0.0
    return (1.0 - distance if distance < threshold else 0.0), distance


def anls(prediction: str, answers: Sequence[str], *, threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity for one question, in [0, 1].

    Per answer: 1 - NL if NL < threshold else 0, where NL is the edit distance over the longer length, on
    lower-cased, whitespace-collapsed text (the ST-VQA definition; some ports keep NL == threshold). The max
    over the answers is returned.
    """
    return max((_anls_one(prediction, answer, threshold)[0] for answer in answers), default=0.0)


def score_anls(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    threshold = float(options.get("tau", 0.5))
    best: tuple[float, float, str] | None = None
    for answer in as_texts(reference):
        value, distance = _anls_one(prediction, answer, threshold)
        if best is None or (value, -distance) > (best[0], -best[1]):
            best = (value, distance, answer)
    if best is None:
        return ScoreResult(0.0, "no expected answers")
    value, distance, answer = best
    detail = f"normalised edit distance {distance:.2f} to {show(answer)}"
    if value == 0.0:
        detail += f" (not below tau {threshold:g}, so 0)"
    return ScoreResult(value, detail)
