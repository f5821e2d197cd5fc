"""Scoring a case's answers and describing the outcome (the failure message and the stored record)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pytest_vleval.backends.families import strip_thinking
from pytest_vleval.cases.casefile import Case
from pytest_vleval.predict.generation import Prediction
from pytest_vleval.scoring.base import ScoreContext
from pytest_vleval.scoring.registry import score


@dataclass
class TurnResult:
    question: str
    expected: str
    answer: str
    scorer: str
    score: float
    threshold: float
    passed: bool
    detail: str = ""
    parse_failed: bool = False


@dataclass
class CaseResult:
    model: str
    file: str
    case_id: str
    images: list[str]
    turns: list[TurnResult] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False  # the answers came from the answer cache (then `seconds` is 0)

    @property
    def passed(self) -> bool:
        return self.error is None and all(t.passed for t in self.turns)

    @property
    def score(self) -> float:
        """Mean score over turns (0 for a case that errored)."""
        if self.error is not None or not self.turns:
            return 0.0
        return sum(t.score for t in self.turns) / len(self.turns)

    def to_dict(self) -> dict[str, Any]:
        """Plain types, as the result travels to the recorder (``records/schema.case_entry`` reads it)."""
        return {
            "model": self.model,
            "file": self.file,
            "case_id": self.case_id,
            "images": list(self.images),
            "turns": [vars(turn).copy() for turn in self.turns],
            "error": self.error,
            "seconds": self.seconds,
            "cached": self.cached,
            "passed": self.passed,
            "score": self.score,
        }


def _image_sizes(case: Case) -> tuple[tuple[int, int], ...]:
    from PIL import Image

    sizes = []
    for path in case.images:
        with Image.open(path) as image:
            sizes.append(image.size)
    return tuple(sizes)


def evaluate(
    case: Case,
    model: str,
    prediction: Prediction,
    *,
    box_convention: str | None = None,
    resized_sizes: tuple[tuple[int, int], ...] = (),
) -> CaseResult:
    """Score each turn's answer. `box_convention` and `resized_sizes` (the model-input size of each image,
    for conventions in input pixels) say how the model writes boxes (see families.box_context)."""
    result = CaseResult(
        model=model,
        file=str(case.path),
        case_id=case.id,
        images=[str(p) for p in case.images],
        error=prediction.error,
        seconds=prediction.seconds,
        cached=prediction.cached,
    )
    context = None
    for turn, answer in zip(case.turns, prediction.answers, strict=False):
        if turn.scorer == "iou" and context is None:
            context = ScoreContext(
                image_sizes=_image_sizes(case), box_convention=box_convention, resized_sizes=resized_sizes
            )
        cleaned = strip_thinking(answer)
        scored = score(turn.scorer, cleaned, turn.reference, turn.options, context or ScoreContext())
        result.turns.append(
            TurnResult(
                question=turn.question,
                expected=turn.expected_text,
                answer=answer,
                scorer=turn.scorer,
                score=float(scored.score),
                threshold=turn.threshold,
                passed=scored.score >= turn.threshold,
                detail=scored.detail,
                parse_failed=scored.parse_failed,
            )
        )
    return result


def _rel(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def failure_message(case: Case, result: CaseResult) -> str:
    """What a failed case prints instead of a traceback."""
    lines = [f"case {case.id!r} on model {result.model!r} ({_rel(str(case.path))}:{case.line})"]
    label = "image" if len(case.images) == 1 else "images"
    lines.append(f"  {label + ':':<10}{', '.join(_rel(str(p)) for p in case.images)}")
    if result.error is not None:
        lines.append(f"  {'error:':<10}{result.error}")
    for n, turn in enumerate(case.turns):
        prefix = f"  turn {n + 1}/{len(case.turns)}" if case.is_dialogue else ""
        if prefix:
            lines.append(prefix)
        pad = "    " if prefix else "  "
        lines.append(f"{pad}{'question:':<10}{turn.question}")
        lines.append(f"{pad}{'expected:':<10}{turn.expected_text}")
        if n < len(result.turns):
            tr = result.turns[n]
            verdict = ">=" if tr.passed else "<"
            lines.append(f"{pad}{'answer:':<10}{tr.answer!r}")
            status = "ok" if tr.passed else "FAILED"
            lines.append(
                f"{pad}{'score:':<10}{tr.score:.3f} {verdict} threshold {tr.threshold:g} ({tr.scorer}) {status}"
            )
            if tr.detail:
                lines.append(f"{pad}{'detail:':<10}{tr.detail}")
        else:
            lines.append(f"{pad}{'answer:':<10}(not generated)")
    return "\n".join(lines)
