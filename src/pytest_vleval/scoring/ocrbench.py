"""OCRBench's official rule: a question scores 1 when any accepted answer is a substring of the model's answer.

Transcribed from the OCRBench evaluation script (Yuliang-Liu/MultimodalOCR ``OCRBench/example.py``, the scoring
loop after generation; the per-model scripts in ``OCRBench/scripts/`` hold the same loop). Both texts are
normalised alike before the containment check:

- rows of the HME100k dataset (handwritten LaTeX; option ``hme: true``): ``strip()``, newlines to spaces, then
  every space removed; case is kept;
- every other row: ``lower()``, ``strip()``, newlines to spaces.

lmms-eval's port (``lmms_eval/tasks/ocrbench/utils.py``) also lower-cases the prediction of HME100k rows (not the
answer); this module follows the official script. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vleval.scoring.base import ScoreContext, ScoreResult, as_texts, show

__all__ = ["ocrbench_key", "ocrbench_score", "score_ocrbench"]


def ocrbench_key(text: str, *, hme: bool = False) -> str:
    """A text as the official script compares it (str.lower, not casefold: 'ß' stays 'ß')."""
    if hme:
        return text.strip().replace("\n", " ").replace(" ", "")
    return text.lower().strip().replace("\n", " ")


def ocrbench_score(prediction: str, answers: str | Sequence[str], *, hme: bool = False) -> int:
    """1 when any answer, normalised, is a substring of the normalised prediction, else 0 (one answer may be
    given as a plain string, as in OCRBench.json)."""
    items = (answers,) if isinstance(answers, str) else answers
    predict = ocrbench_key(prediction, hme=hme)
    return int(any(ocrbench_key(answer, hme=hme) in predict for answer in items))


def score_ocrbench(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    hme = bool(options.get("hme", False))
    how = "spaces removed (HME100k)" if hme else "lower-cased"
    predict = ocrbench_key(prediction, hme=hme)
    answers = as_texts(reference)
    for answer in answers:
        if ocrbench_key(answer, hme=hme) in predict:
            return ScoreResult(1.0, f"{show(answer)} found in the answer ({how})")
    return ScoreResult(0.0, f"none of {', '.join(map(show, answers))} is in {show(predict)} ({how})")
