"""Number scorers: the first number within a tolerance, and ChartQA's relaxed accuracy."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pytest_vleval.scoring.base import ScoreContext, ScoreResult, as_texts, show
from pytest_vleval.scoring.cjk import cjk_answer, find_chinese_numbers, nfkc
from pytest_vleval.scoring.text import exact_key

# A sign counts only when it is not glued to a word ("x-3" reads 3, "-3" reads -3); "1,234" is one number.
_SIGN = r"(?:(?<![\w.])[-+\u2212])?"
_EXPONENT = r"(?:[eE][-+]?[0-9]+)?"
_NUMBER = rf"{_SIGN}(?:(?:[0-9]{{1,3}}(?:,[0-9]{{3}})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+){_EXPONENT}"
_NUMBER_SEARCH = re.compile(rf"({_NUMBER})\s*(%?)")
_NUMBER_FULL = re.compile(rf"\s*({_NUMBER})\s*(%?)\s*")


def _to_number(text: str) -> float | None:
    value = float(text.replace(",", "").replace("\u2212", "-"))
    return value if math.isfinite(value) else None


def _first_number(text: str) -> float | None:
    """The first number in free text, in digits (full-width too) or a Chinese numeral that reads as a count
    (三个, 十二: ``cjk.find_chinese_numbers``); a trailing '%' is dropped, not divided by 100."""
    text = nfkc(text)
    found = _NUMBER_SEARCH.search(text)
    candidates = [(found.start(), _to_number(found.group(1)))] if found else []
    candidates += [(position, float(value)) for position, value in find_chinese_numbers(text)[:1]]
    return min(candidates)[1] if candidates else None


def _whole_number(text: str) -> float | None:
    """A target that is a number: digits, or a Chinese count (三, 三个, 十二) read by the ``cjk`` answer step."""
    found = _NUMBER_FULL.fullmatch(nfkc(text))
    if found is None:
        found = _NUMBER_FULL.fullmatch(cjk_answer(text))
    return _to_number(found.group(1)) if found else None


def score_numeric(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    targets = as_texts(reference)
    absolute = options.get("absolute")
    tolerance = float(options.get("tolerance", 0.05))
    value = _first_number(prediction)
    details = []
    for target in targets:
        target_value = _whole_number(target)
        if target_value is None:
            if exact_key(prediction) == exact_key(target):
                return ScoreResult(1.0, f"matched non-numeric expected {show(target)} exactly")
            details.append(f"{show(target)} (not a number) not matched exactly")
            continue
        if value is None:
            continue
        error = abs(value - target_value)
        if absolute is not None:
            ok = error <= float(absolute)
            what = f"absolute error {error:g} (tolerance {float(absolute):g})"
        else:
            ok = error <= tolerance * abs(target_value)
            relative = error / abs(target_value) if target_value else math.inf
            what = f"relative error {relative:.1%} (tolerance {tolerance:.1%})"
        detail = f"number {value:g} vs {target_value:g}, {what}"
        if ok:
            return ScoreResult(1.0, detail)
        details.append(detail)
    if value is None and any(_whole_number(target) is not None for target in targets):
        return ScoreResult(0.0, f"no number found in {show(prediction)}", parse_failed=True)
    return ScoreResult(0.0, "; ".join(details))


def _chartqa_float(text: str) -> float | None:
    try:
        value = float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None
    # Not in pix2struct: "nan"/"inf" count as words, so that such a text at least matches itself.
    return value if math.isfinite(value) else None


def _relaxed(prediction: str, target: str, tolerance: float) -> tuple[bool, str, bool]:
    """(correct, detail, prediction unparsable where a number was expected)."""
    prediction, target = prediction.strip(), target.strip()
    pred_value, target_value = _chartqa_float(prediction), _chartqa_float(target)
    # A target of 0 falls back to text equality, as in pix2struct (it avoids dividing by zero).
    if pred_value is not None and target_value:
        relative = abs(pred_value - target_value) / abs(target_value)
        detail = f"number {pred_value:g} vs {target_value:g}, relative error {relative:.1%} (tolerance {tolerance:.1%})"
        return relative <= tolerance, detail, False
    correct = prediction.lower() == target.lower()
    missing = bool(target_value) and pred_value is None
    how = "is not a number" if missing else "compared as text"
    return correct, f"{show(prediction)} vs {show(target)}: {how}", missing


def relaxed_accuracy(prediction: str, target: str, *, tolerance: float = 0.05) -> float:
    """ChartQA relaxed accuracy (pix2struct's ``relaxed_correctness``), 0 or 1.

    Both texts are stripped and read whole with float(); a trailing '%' is removed and the value divided by
    100 on both sides (so "12.5%" vs "12.5" is wrong, as upstream). Numbers pass within ``tolerance``
    relative change; anything else, and a target of 0, needs case-insensitive text equality.
    """
    return 1.0 if _relaxed(prediction, target, tolerance)[0] else 0.0


def score_relaxed(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    tolerance = float(options.get("tolerance", 0.05))
    details = []
    missing = False
    for target in as_texts(reference):
        correct, detail, target_missing = _relaxed(prediction, target, tolerance)
        if correct:
            return ScoreResult(1.0, detail)
        details.append(detail)
        missing = missing or target_missing
    return ScoreResult(0.0, "; ".join(details), parse_failed=missing)
