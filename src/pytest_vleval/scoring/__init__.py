"""Scoring: per-answer scorers, the official COCO caption metrics, golden sets and each case's outcome.

``pytest_vleval.scoring`` is also the public face of the per-answer scorers (pure functions from (prediction,
reference) to a score in a documented range), as it was before the package had sub-modules:

- ``base.py``: :class:`ScoreResult`, :class:`ScoreContext`, :class:`Scorer`;
- ``text.py``, ``vqa.py``, ``numbers.py``, ``boxes.py``: the scorers, one family of answers each;
- ``extract.py``: the answer-extraction steps run before a scorer; ``diagnosis.py``: "format" failures;
- ``registry.py``: :data:`SCORERS`, :func:`get_scorer`, :func:`validate_reference`, :func:`score`;
- ``captions.py``, ``java.py``, ``ptb_fallback.py``: corpus caption metrics (``pytest_vleval.metrics``);
- ``golden.py``: a golden caption set scored once per (set, model); ``outcome.py``: a case's result.

Importing this package stays cheap: standard library only (no torch, no numpy).
"""

from __future__ import annotations

from pytest_vleval.scoring.base import ScoreContext, Scorer, ScoreResult
from pytest_vleval.scoring.boxes import BOX_CONVENTIONS, box_iou, choose_box, parse_box, parse_boxes
from pytest_vleval.scoring.extract import DEFAULT_STEPS, evalai_answer, extract, strip_thinking
from pytest_vleval.scoring.numbers import relaxed_accuracy
from pytest_vleval.scoring.registry import SCORERS, get_scorer, score, validate_reference
from pytest_vleval.scoring.text import anls
from pytest_vleval.scoring.vqa import normalize_vqa_answer, vqa_accuracy

__all__ = [
    "BOX_CONVENTIONS",
    "DEFAULT_STEPS",
    "SCORERS",
    "ScoreContext",
    "ScoreResult",
    "Scorer",
    "anls",
    "box_iou",
    "choose_box",
    "evalai_answer",
    "extract",
    "get_scorer",
    "normalize_vqa_answer",
    "parse_box",
    "parse_boxes",
    "relaxed_accuracy",
    "score",
    "strip_thinking",
    "validate_reference",
    "vqa_accuracy",
]
