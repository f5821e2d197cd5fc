"""Scorers: pure functions from (prediction, reference) to a score in a documented range.

Every scorer has the signature ``func(prediction, reference, options, context) -> ScoreResult`` and is
registered in :data:`SCORERS`. A case passes when ``score >= threshold``. Callers validate a case's
reference and options once, at collection, with :func:`validate_reference`.

Only the standard library is used here: importing this module must stay cheap (no torch, no numpy).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from typing import Any, Literal

__all__ = [
    "BOX_CONVENTIONS",
    "SCORERS",
    "ScoreContext",
    "ScoreResult",
    "Scorer",
    "anls",
    "box_iou",
    "get_scorer",
    "normalize_vqa_answer",
    "parse_box",
    "relaxed_accuracy",
    "score",
    "strip_thinking",
    "validate_reference",
    "vqa_accuracy",
]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ScoreResult:
    score: float
    detail: str = ""
    parse_failed: bool = False


@dataclass(frozen=True)
class ScoreContext:
    """What a scorer may need beyond the text: set by the runner and the model adapter."""

    image_sizes: tuple[tuple[int, int], ...] = ()  # original (width, height) per image
    box_convention: str | None = None  # how the model writes boxes; None means "qwen3"
    resized_sizes: tuple[tuple[int, int], ...] = ()  # model-input (width, height), for Qwen2.5-VL pixels


ScorerFunc = Callable[[str, tuple[Any, ...], Mapping[str, Any], ScoreContext], ScoreResult]


@dataclass(frozen=True)
class Scorer:
    name: str
    func: ScorerFunc
    low: float
    high: float
    default_threshold: float
    reference: Literal["expected", "answers", "box"]
    options: frozenset[str]
    description: str


def _show(text: str, limit: int = 80) -> str:
    """repr() of a text, shortened so that a failure message stays readable."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _texts(reference: Sequence[Any]) -> tuple[str, ...]:
    # YAML turns `expected: 3` into an int; the scorers compare text.
    return tuple(item if isinstance(item, str) else str(item) for item in reference)


def strip_thinking(text: str) -> str:
    """Remove Qwen3-style ``<think>...</think>`` reasoning and return the stripped answer.

    Chat templates that open ``<think>`` in the prompt leave a dangling ``...</think>`` at the start of the
    output; everything up to the last ``</think>`` is dropped. An unclosed ``<think>`` (generation cut off
    while reasoning) means no answer was given: everything from it on is dropped.
    """
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    _, sep, after = text.rpartition("</think>")
    if sep:
        text = after
    text = text.split("<think>", 1)[0]
    return text.strip()


# --- exact, contains, regex -------------------------------------------------------------------------


def _exact_key(text: str) -> str:
    text = text.strip().casefold()
    if text.endswith("."):
        text = text[:-1].rstrip()
    return text


def _score_exact(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    key = _exact_key(prediction)
    expected = _texts(reference)
    for answer in expected:
        if _exact_key(answer) == key:
            return ScoreResult(1.0, f"matched expected {_show(answer)}")
    return ScoreResult(0.0, f"{_show(prediction)} is not one of {', '.join(map(_show, expected))}")


def _contains_pattern(answer: str) -> re.Pattern[str]:
    # Word boundaries by look-around, not \b, so answers that start or end with a symbol ("$5") still work;
    # any run of whitespace in the answer matches any run in the prediction.
    body = r"\s+".join(re.escape(word) for word in answer.split())
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


def _score_contains(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    expected = _texts(reference)
    for answer in expected:
        if answer.strip() and _contains_pattern(answer).search(prediction):
            return ScoreResult(1.0, f"found {_show(answer)} in the answer")
    return ScoreResult(0.0, f"none of {', '.join(map(_show, expected))} appears as words in {_show(prediction)}")


def _compile_regex(pattern: str, options: Mapping[str, Any]) -> re.Pattern[str]:
    flags = 0 if options.get("flags", "ignorecase") == "none" else re.IGNORECASE
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None


def _score_regex(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    patterns = _texts(reference)
    fullmatch = bool(options.get("fullmatch", False))
    for pattern in patterns:
        compiled = _compile_regex(pattern, options)
        found = compiled.fullmatch(prediction.strip()) if fullmatch else compiled.search(prediction)
        if found:
            return ScoreResult(1.0, f"/{pattern}/ matched {_show(found.group(0))}")
    how = "fully matches" if fullmatch else "matches"
    return ScoreResult(0.0, f"no pattern of {', '.join(f'/{p}/' for p in patterns)} {how} {_show(prediction)}")


# --- VQA normalisation and accuracy (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py) ----

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


def _vqa_outcome(prediction: str, answers: Sequence[str], mode: str) -> _VQAOutcome:
    if mode not in ("official", "evalai"):
        raise ValueError(f"vqa_accuracy mode must be 'official' or 'evalai', not {mode!r}")
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    gts = [_vqa_clean(answer) for answer in answers]
    res = _vqa_clean(prediction)
    # The official code normalises only when the annotators disagree; EvalAI-style harnesses always do.
    normalised = mode == "evalai" or len(set(gts)) > 1
    if normalised:
        gts = [normalize_vqa_answer(answer) for answer in gts]
        res = normalize_vqa_answer(res)
    matching = [gt == res for gt in gts]
    k = sum(matching)
    total = Fraction(0)
    # Leave-one-out by index: answer i is held out even when another annotator gave the same text. Exact
    # fractions give the closed-form values (0.3, 0.6, 0.9) without float drift; upstream reports
    # round(100 * mean, 2), which float rounding cannot change.
    for i in range(len(gts)):
        others = k - matching[i]
        total += min(Fraction(1), Fraction(others, 3))
    return _VQAOutcome(float(total / len(gts)), k, res, normalised)


def vqa_accuracy(prediction: str, answers: Sequence[str], *, mode: str = "official") -> float:
    """VQAv2 accuracy of one prediction against the human answers (10 in VQAv2), in [0, 1].

    ``mode="official"`` follows GT-Vision-Lab's vqaEval.py: answers and prediction are normalised only when
    the answers are not all identical, then accuracy = mean over answers i of min(1, #(other answers equal to
    the prediction) / 3). With 10 answers and k matching: 0, 0.3, 0.6, 0.9, 1.0 for k = 0, 1, 2, 3, >=4.
    ``mode="evalai"`` always normalises both sides (as lmms-eval and VLMEvalKit effectively do), so "Yes"
    against ten "yes" scores 1.0 instead of 0.0. With fewer than 4 answers 1.0 is out of reach.
    """
    return _vqa_outcome(prediction, answers, mode).accuracy


def _score_vqa(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    answers = _texts(reference)
    outcome = _vqa_outcome(prediction, answers, options.get("mode", "official"))
    n = len(answers)
    detail = f"{outcome.matches}/{n} annotators gave {_show(outcome.compared)}"
    if outcome.normalised:
        detail += " (after VQA normalisation)"
    else:
        detail += " (answers unanimous: compared without normalisation, the official rule)"
    if n < 4:
        best = vqa_accuracy("", [""] * n)
        detail += f"; with only {n} answers the best possible score is {best:.2f}"
    return ScoreResult(outcome.accuracy, detail)


def _score_exact_normalized(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    key = normalize_vqa_answer(prediction)
    for answer in _texts(reference):
        if normalize_vqa_answer(answer) == key:
            return ScoreResult(1.0, f"{_show(key)} equals expected {_show(answer)} after VQA normalisation")
    return ScoreResult(0.0, f"normalised answer {_show(key)} equals no expected answer")


def _score_any_of(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    key = normalize_vqa_answer(prediction)
    accepted = _texts(reference)
    normalised = {normalize_vqa_answer(answer): answer for answer in reversed(accepted)}
    if key in normalised:
        return ScoreResult(1.0, f"{_show(key)} is accepted answer {_show(normalised[key])}")
    return ScoreResult(0.0, f"normalised answer {_show(key)} is none of the {len(accepted)} accepted answers")


# --- ANLS (ST-VQA / DocVQA) ------------------------------------------------------------------------


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


def _score_anls(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    threshold = float(options.get("tau", 0.5))
    best: tuple[float, float, str] | None = None
    for answer in _texts(reference):
        value, distance = _anls_one(prediction, answer, threshold)
        if best is None or (value, -distance) > (best[0], -best[1]):
            best = (value, distance, answer)
    if best is None:
        return ScoreResult(0.0, "no expected answers")
    value, distance, answer = best
    detail = f"normalised edit distance {distance:.2f} to {_show(answer)}"
    if value == 0.0:
        detail += f" (not below tau {threshold:g}, so 0)"
    return ScoreResult(value, detail)


# --- numbers -----------------------------------------------------------------------------------------

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
    """The first number in free text; a trailing '%' is dropped, not divided by 100."""
    found = _NUMBER_SEARCH.search(text)
    return _to_number(found.group(1)) if found else None


def _whole_number(text: str) -> float | None:
    found = _NUMBER_FULL.fullmatch(text)
    return _to_number(found.group(1)) if found else None


def _score_numeric(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    targets = _texts(reference)
    absolute = options.get("absolute")
    tolerance = float(options.get("tolerance", 0.05))
    value = _first_number(prediction)
    details = []
    for target in targets:
        target_value = _whole_number(target)
        if target_value is None:
            if _exact_key(prediction) == _exact_key(target):
                return ScoreResult(1.0, f"matched non-numeric expected {_show(target)} exactly")
            details.append(f"{_show(target)} (not a number) not matched exactly")
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
        return ScoreResult(0.0, f"no number found in {_show(prediction)}", parse_failed=True)
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
    return correct, f"{_show(prediction)} vs {_show(target)}: {how}", missing


def relaxed_accuracy(prediction: str, target: str, *, tolerance: float = 0.05) -> float:
    """ChartQA relaxed accuracy (pix2struct's ``relaxed_correctness``), 0 or 1.

    Both texts are stripped and read whole with float(); a trailing '%' is removed and the value divided by
    100 on both sides (so "12.5%" vs "12.5" is wrong, as upstream). Numbers pass within ``tolerance``
    relative change; anything else, and a target of 0, needs case-insensitive text equality.
    """
    return 1.0 if _relaxed(prediction, target, tolerance)[0] else 0.0


def _score_relaxed(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    tolerance = float(options.get("tolerance", 0.05))
    details = []
    missing = False
    for target in _texts(reference):
        correct, detail, target_missing = _relaxed(prediction, target, tolerance)
        if correct:
            return ScoreResult(1.0, detail)
        details.append(detail)
        missing = missing or target_missing
    return ScoreResult(0.0, "; ".join(details), parse_failed=missing)


# --- boxes -------------------------------------------------------------------------------------------

BOX_CONVENTIONS: dict[str, str] = {
    "qwen3": 'Qwen3-VL: JSON "bbox_2d": [x1, y1, x2, y2] (or a bare list) on a 0-1000 grid',
    "qwen2": "Qwen2-VL: <|box_start|>(x1,y1),(x2,y2)<|box_end|> on a 0-1000 grid",
    "qwen2.5": 'Qwen2.5-VL: JSON "bbox_2d" in absolute pixels of the resized model input',
    "qwen-vl": "Qwen-VL: <box>(x1,y1),(x2,y2)</box> on a 0-999 grid",
    "cogvlm": "CogVLM: [[x1,y1,x2,y2]] (boxes separated by ';') on a 0-1000 grid, three digits (000-999)",
    "minigpt-v2": "MiniGPT-v2: {<x1><y1><x2><y2>} on a 0-100 grid",
    "normalized": "[x1, y1, x2, y2] as fractions of the width and height, in [0, 1]",
}

_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_LIST4 = rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]"
_BBOX_2D = re.compile(rf"""["']?bbox_2d["']?\s*:\s*{_LIST4}""")
_BARE_LIST = re.compile(_LIST4)
_PAIRS = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_QWEN2_TAGGED = re.compile(rf"<\|box_start\|>\s*{_PAIRS}\s*<\|box_end\|>")
_QWENVL_TAGGED = re.compile(rf"<box>\s*{_PAIRS}\s*</box>")
_BARE_PAIRS = re.compile(_PAIRS)
# CogVLM's parser reads `[[x0,y0,x1,y1;...]]` and divides by 1000 (THUDM/CogVLM utils); we take the first box.
_COGVLM = re.compile(rf"\[\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[;\]]")
# MiniGPT-v2's eval_ref.py: `{<x1><y1><x2><y2>}`, integers divided by 100 (its `--res`).
_MINIGPT = re.compile(rf"\{{\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*\}}")


def _four(patterns: Sequence[re.Pattern[str]], text: str) -> Box | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            values = tuple(float(v) for v in found.groups())
            if all(math.isfinite(v) for v in values):
                return values[0], values[1], values[2], values[3]
            return None
    return None


def _check_size(size: Any, what: str) -> tuple[float, float]:
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (width, height) pair, not {size!r}") from None
    if not (width > 0 and height > 0):
        raise ValueError(f"{what} must be positive, not {size!r}")
    return float(width), float(height)


def parse_box(
    text: str,
    convention: str = "qwen3",
    *,
    image_size: tuple[int, int],
    resized_size: tuple[int, int] | None = None,
) -> Box | None:
    """The first box in a model's answer, as original-image pixels xyxy, or None if there is none.

    ``convention`` says how the model writes boxes (see :data:`BOX_CONVENTIONS`); it is never guessed from
    the numbers. Reversed corners are swapped and the box is clipped to the image. ``resized_size`` is the
    model-input (width, height), needed for "qwen2.5" only. An unknown convention or a missing size raises
    ValueError: those are set-up errors, not bad answers.
    """
    if convention not in BOX_CONVENTIONS:
        raise ValueError(f"unknown box convention {convention!r}; known: {', '.join(BOX_CONVENTIONS)}")
    width, height = _check_size(image_size, "image_size")
    if convention == "qwen3":
        raw, sx, sy = _four((_BBOX_2D, _BARE_LIST), text), width / 1000, height / 1000
    elif convention == "normalized":
        raw, sx, sy = _four((_BBOX_2D, _BARE_LIST), text), width, height
    elif convention == "qwen2.5":
        if resized_size is None:
            raise ValueError("qwen2.5 boxes are pixels of the resized model input: resized_size is needed")
        resized_w, resized_h = _check_size(resized_size, "resized_size")
        raw, sx, sy = _four((_BBOX_2D, _BARE_LIST), text), width / resized_w, height / resized_h
    elif convention == "qwen2":
        raw, sx, sy = _four((_QWEN2_TAGGED, _BARE_PAIRS), text), width / 1000, height / 1000
    elif convention == "cogvlm":
        raw, sx, sy = _four((_COGVLM,), text), width / 1000, height / 1000
    elif convention == "minigpt-v2":
        raw, sx, sy = _four((_MINIGPT,), text), width / 100, height / 100
    else:
        raw, sx, sy = _four((_QWENVL_TAGGED, _BARE_PAIRS), text), width / 999, height / 999
    if raw is None:
        return None
    x1, y1, x2, y2 = raw[0] * sx, raw[1] * sy, raw[2] * sx, raw[3] * sy
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    return x1, y1, x2, y2


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes on continuous coordinates (no +1), in [0, 1].

    A box with zero or negative area (including reversed corners) scores 0 against anything.
    """
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    area_a = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1)
    area_b = max(0.0, bx2 - bx1) * max(0.0, by2 - by1)
    if not (area_a > 0 and area_b > 0 and math.isfinite(area_a) and math.isfinite(area_b)):
        return 0.0
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = area_a + area_b - inter
    if not (union > 0 and math.isfinite(union)):
        return 0.0
    return min(1.0, max(0.0, inter / union))


def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in box) + "]"


def _score_iou(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    convention = options.get("convention") or context.box_convention or "qwen3"
    if not context.image_sizes:
        raise ValueError("the iou scorer needs the original image size (ScoreContext.image_sizes)")
    resized = context.resized_sizes[0] if context.resized_sizes else None
    box = parse_box(prediction, convention, image_size=context.image_sizes[0], resized_size=resized)
    if box is None:
        return ScoreResult(
            0.0,
            f"could not parse a box in the {convention!r} convention ({BOX_CONVENTIONS[convention]})",
            True,
        )
    value = box_iou(box, [float(v) for v in reference])
    return ScoreResult(value, f"IoU {value:.2f} with predicted box {_fmt_box(box)} (original pixels)")


# --- registry ----------------------------------------------------------------------------------------


def _scorer(
    name: str,
    func: ScorerFunc,
    reference: Literal["expected", "answers", "box"],
    description: str,
    *,
    default_threshold: float = 1.0,
    options: tuple[str, ...] = (),
) -> Scorer:
    return Scorer(name, func, 0.0, 1.0, default_threshold, reference, frozenset(options), description)


SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in (
        _scorer(
            "exact",
            _score_exact,
            "expected",
            "Trimmed, case-insensitive equality with any expected answer; one trailing '.' ignored. 0/1.",
        ),
        _scorer(
            "exact_normalized",
            _score_exact_normalized,
            "expected",
            "Equality after the official VQA answer normalisation. 0/1.",
        ),
        _scorer(
            "contains",
            _score_contains,
            "expected",
            "Any expected answer appears in the answer as whole words, case-insensitive. 0/1.",
        ),
        _scorer(
            "regex",
            _score_regex,
            "expected",
            "Expected strings are regexes, searched case-insensitively (flags: none to respect case; "
            "fullmatch: true to match the whole answer). 0/1.",
            options=("flags", "fullmatch"),
        ),
        _scorer(
            "any_of",
            _score_any_of,
            "expected",
            "Membership of the VQA-normalised answer in the set of normalised accepted answers. 0/1.",
        ),
        _scorer(
            "vqa_accuracy",
            _score_vqa,
            "answers",
            "Official VQAv2 accuracy against the human answers (10 recommended); mode: official|evalai. "
            "Default threshold 0.9: at least 3 of 10 annotators agree, the paper's 'fully correct'.",
            default_threshold=0.9,
            options=("mode",),
        ),
        _scorer(
            "anls",
            _score_anls,
            "expected",
            "ANLS (DocVQA): 1 - normalised edit distance to the closest answer, 0 at or beyond tau (0.5).",
            default_threshold=0.5,
            options=("tau",),
        ),
        _scorer(
            "numeric",
            _score_numeric,
            "expected",
            "First number in the answer within tolerance (relative, default 0.05) or absolute of the "
            "target; non-numeric targets need an exact match. 0/1.",
            options=("tolerance", "absolute"),
        ),
        _scorer(
            "relaxed_accuracy",
            _score_relaxed,
            "expected",
            "ChartQA relaxed accuracy: the answer as a number within 5% of the target, else exact. 0/1.",
            options=("tolerance",),
        ),
        _scorer(
            "iou",
            _score_iou,
            "box",
            "IoU of the predicted box (read in the model's box convention, or the case's option "
            "'convention') with the reference box, original-image pixels xyxy.",
            default_threshold=0.5,
            options=("convention",),
        ),
    )
}


def get_scorer(name: str) -> Scorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; known scorers: {', '.join(sorted(SCORERS))}") from None


def _check_number_option(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high != math.inf else "")
        raise ValueError(f"option {name!r} must be a number {bound}, not {value!r}")


def _validate_options(scorer: Scorer, options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - scorer.options)
    if unknown:
        accepted = ", ".join(sorted(scorer.options)) or "none"
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for scorer {scorer.name!r}; accepted: {accepted}"
        )
    if "flags" in options and options["flags"] not in ("none", "ignorecase"):
        raise ValueError(f"option 'flags' must be 'none' or 'ignorecase', not {options['flags']!r}")
    if "fullmatch" in options and not isinstance(options["fullmatch"], bool):
        raise ValueError(f"option 'fullmatch' must be true or false, not {options['fullmatch']!r}")
    if "mode" in options and options["mode"] not in ("official", "evalai"):
        raise ValueError(f"option 'mode' must be 'official' or 'evalai', not {options['mode']!r}")
    if "convention" in options and options["convention"] not in BOX_CONVENTIONS:
        raise ValueError(
            f"option 'convention' must be one of {', '.join(BOX_CONVENTIONS)}, not {options['convention']!r}"
        )
    if "tau" in options:
        _check_number_option("tau", options["tau"], low=0.0, high=1.0, low_open=True)
    if "tolerance" in options:
        _check_number_option("tolerance", options["tolerance"], low=0.0)
    if "absolute" in options:
        _check_number_option("absolute", options["absolute"], low=0.0)
        if "tolerance" in options:
            raise ValueError("give either option 'tolerance' (relative) or 'absolute', not both")


def validate_reference(name: str, reference: Any, options: Mapping[str, Any] | None = None) -> None:
    """Check a case's reference and options for scorer ``name``; raise ValueError saying what is wrong.

    ``reference`` is the value of the scorer's YAML key (a string or a list of answers, or the box).
    """
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; known scorers: {', '.join(sorted(SCORERS))}")
    scorer = SCORERS[name]
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ValueError(f"options for scorer {name!r} must be a mapping, not {options!r}")
    _validate_options(scorer, options)
    key = scorer.reference
    items: Sequence[Any] = (reference,) if isinstance(reference, str) else reference
    if not isinstance(items, Sequence) or isinstance(items, bytes):
        raise ValueError(f"scorer {name!r} reads {key!r}, which must be a list, not {reference!r}")
    if key == "box":
        numbers_ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in items)
        if len(items) != 4 or not numbers_ok:
            raise ValueError(f"'box' must be 4 numbers [x1, y1, x2, y2] in original-image pixels, not {reference!r}")
        x1, y1, x2, y2 = items
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"'box' {list(items)} must have x1 < x2 and y1 < y2 (xyxy, not xywh?)")
        return
    if not items:
        raise ValueError(f"scorer {name!r} needs at least one entry in {key!r}")
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"{key!r} contains the YAML boolean {item!r}; quote it, e.g. 'yes' or 'no'")
        if not isinstance(item, str | int | float):
            raise ValueError(f"{key!r} entries must be strings, not {item!r}")
        if key == "expected" and not str(item).strip():
            raise ValueError(f"{key!r} contains an empty answer, which would match anything or nothing")
        if name == "regex":
            _compile_regex(str(item), options)


def score(
    name: str,
    prediction: str,
    reference: str | Sequence[Any],
    options: Mapping[str, Any] | None = None,
    context: ScoreContext | None = None,
) -> ScoreResult:
    """Validate and run scorer ``name``; ``reference`` may be a single string."""
    scorer = get_scorer(name)
    options = {} if options is None else options
    validate_reference(name, reference, options)
    items = (reference,) if isinstance(reference, str) else tuple(reference)
    return scorer.func(prediction, items, options, context or ScoreContext())
