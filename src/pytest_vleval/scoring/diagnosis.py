"""The "format" diagnosis: a failed turn whose answer holds the right content in the wrong form.

A real model asked "What colour is the square?" without a format instruction answers "The square is green.":
the official VQA accuracy of that against ten "green" is 0, yet the model is right. Such a failure still fails
(the scorer is official), but its message says so and the summary counts it apart from wrong answers, so a
team adds a format instruction (``task:`` / ``post_prompt:``) or picks ``contains`` instead of blaming the
model. Boxes get the same check: a box that is right when read in another family's convention.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vleval.scoring.base import ScoreContext
from pytest_vleval.scoring.boxes import BOX_CONVENTIONS, box_iou, choose_box, parse_boxes
from pytest_vleval.scoring.extract import strip_thinking
from pytest_vleval.scoring.text import contains_words, exact_key

__all__ = ["format_issue"]

# Scorers that compare a short answer with the reference as a whole.
_WHOLE_ANSWER = frozenset({"exact", "exact_normalized", "any_of", "vqa_accuracy", "anls", "relaxed_accuracy"})


def _wanted(scorer: str, reference: Sequence[Any]) -> list[str]:
    texts = [str(r) for r in reference]
    if scorer != "vqa_accuracy":
        return texts
    counts = Counter(texts)
    agreed = [answer for answer, n in counts.items() if n >= 3]  # an answer 3 annotators gave scores 0.9+
    return agreed or [counts.most_common(1)[0][0]]


def _text_issue(scorer: str, reference: Sequence[Any], answer: str) -> str | None:
    body = strip_thinking(answer)
    for wanted in _wanted(scorer, reference):
        if wanted.strip() and exact_key(wanted) != exact_key(body) and contains_words(body, wanted):
            return (
                f"the expected answer {wanted!r} appears in a longer answer: add a format instruction "
                "(task: or post_prompt:) or use scorer 'contains'"
            )
    return None


def _box_issue(
    reference: Sequence[Any], threshold: float, options: Mapping[str, Any], answer: str, context: ScoreContext
) -> str | None:
    if not context.image_sizes:
        return None
    current = options.get("convention") or context.box_convention or "qwen3"
    resized = context.resized_sizes[0] if context.resized_sizes else None
    for convention, description in BOX_CONVENTIONS.items():
        if convention == current or (convention == "qwen2.5" and resized is None):
            continue
        boxes = parse_boxes(strip_thinking(answer), convention, image_size=context.image_sizes[0], resized_size=resized)
        chosen, _ = choose_box(boxes, refer=context.refer)
        if chosen is not None and box_iou(chosen[0], [float(v) for v in reference]) >= threshold:
            return (
                f"the box is right when read in the {convention!r} convention ({description}), not {current!r}: "
                f"is the model's family known? (options: {{convention: {convention}}} sets it for a case)"
            )
    return None


def format_issue(turn: Any, answer: str, context: ScoreContext) -> str | None:
    """Why a failed turn looks like a format problem rather than a wrong answer, or None.

    `turn` is the case's :class:`~pytest_vleval.cases.fields.Turn`, `answer` the model's raw answer.
    """
    if turn.scorer in _WHOLE_ANSWER:
        return _text_issue(turn.scorer, turn.reference, answer)
    if turn.scorer == "iou":
        return _box_issue(turn.reference, turn.threshold, turn.options, answer, context)
    return None
