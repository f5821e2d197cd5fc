"""Scoring a case's answers and describing the outcome (the failure message and the stored record)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_vleval.cases.casefile import Case
from pytest_vleval.cases.fields import Turn
from pytest_vleval.predict.generation import Prediction
from pytest_vleval.scoring.base import ScoreContext, ScoreResult
from pytest_vleval.scoring.diagnosis import format_issue
from pytest_vleval.scoring.extract import extract, pipeline_for
from pytest_vleval.scoring.judge import JudgeOutcome
from pytest_vleval.scoring.registry import score_checked


class Judge(Protocol):
    """What scoring needs of the judge (``predict/judging.JudgeRunner``)."""

    def grade(self, case: Case, turn: Turn, answer: str) -> JudgeOutcome: ...

    def choose(self, case: Case, turn: Turn, answer: str) -> tuple[ScoreResult, dict[str, Any]]: ...


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
    prompt: str = ""  # the text sent (the question with its format instruction, or the family's refer: wording)
    extracted: str = ""  # the answer the scorer compared, after the `answer_steps`
    answer_steps: list[str] = field(default_factory=list)
    format_issue: str | None = None  # the right content in the wrong form (see scoring/diagnosis.py)
    judge: dict[str, Any] | None = None  # scorer judge: the verdicts (scoring/judge.JudgeOutcome.to_dict)


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
    vision_tokens: int | None = None  # the images as prompt tokens, where the backend can count them
    pixels: list[int | None] = field(default_factory=lambda: [None, None])  # case-level [min, max] limits
    dialogue: bool = False  # turns that build on each other (not CircularEval's independent rotations)
    judge_error: bool = False  # `error` is the judge's (unreadable verdict, judge not loadable): not the model's

    @property
    def turns_held(self) -> int | None:
        """A dialogue's depth: how many turns in a row, from the first, were right (None for other cases)."""
        if not self.dialogue:
            return None
        if self.error is not None:
            return 0
        held = 0
        for turn in self.turns:
            if not turn.passed:
                break
            held += 1
        return held

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
            "vision_tokens": self.vision_tokens,
            "pixels": list(self.pixels),
            "passed": self.passed,
            "score": self.score,
            "turns_held": self.turns_held,
            "judge_error": self.judge_error,
        }


def _image_sizes(case: Case) -> tuple[tuple[int, int], ...]:
    from PIL import Image

    sizes = []
    for path in case.images:
        with Image.open(path) as image:
            sizes.append(image.size)
    return tuple(sizes)


def turn_context(
    turn: Turn,
    image_sizes: tuple[tuple[int, int], ...],
    *,
    box_convention: str | None = None,
    resized_sizes: tuple[tuple[int, int], ...] = (),
) -> ScoreContext:
    """What a turn's scorer knows besides the text; a refer: turn's expression picks among several boxes."""
    return ScoreContext(
        image_sizes=image_sizes,
        box_convention=box_convention,
        resized_sizes=resized_sizes,
        refer=turn.question if turn.refer else None,
        choices=turn.choices,
    )


def score_turn(turn: Turn, answer: str, context: ScoreContext) -> tuple[str, tuple[str, ...], ScoreResult]:
    """One turn's answer as the plugin scores it: the case's extraction steps (else the scorer's default), then the
    scorer (the turn's reference and options were validated at collection). Returns (the extracted answer, the
    steps, the result)."""
    steps = pipeline_for(turn.scorer, turn.answer_steps, turn.options)
    extracted = extract(answer, steps)
    return extracted, steps, score_checked(turn.scorer, extracted, turn.reference, turn.options, context)


def judge_turn(
    case: Case, turn: Turn, answer: str, judge: Judge | None
) -> tuple[str, tuple[str, ...], ScoreResult, JudgeOutcome]:
    """A judged turn: the answer after its extraction steps, graded by the judge."""
    if judge is None:
        raise RuntimeError(f"case {case.id!r} is judged but the run has no judge (items skip it without one)")
    steps = pipeline_for(turn.scorer, turn.answer_steps, turn.options)
    extracted = extract(answer, steps)
    outcome = judge.grade(case, turn, extracted)
    return extracted, steps, ScoreResult(outcome.score, "" if outcome.error else outcome.summary()), outcome


def evaluate(
    case: Case,
    model: str,
    prediction: Prediction,
    *,
    box_convention: str | None = None,
    resized_sizes: tuple[tuple[int, int], ...] = (),
    pixels: tuple[int | None, int | None] = (None, None),
    judge: Judge | None = None,
) -> CaseResult:
    """Score each turn's answer after its extraction steps (``scoring/extract.py``). `box_convention` and
    `resized_sizes` (the model-input size of each image, for conventions in input pixels) say how the model
    writes boxes (see families.box_context); `pixels` are the case's effective resolution limits; `judge` grades
    the turns of ``scorer: judge``."""
    result = CaseResult(
        model=model,
        file=str(case.path),
        case_id=case.id,
        images=[str(p) for p in case.images],
        error=prediction.error,
        seconds=prediction.seconds,
        cached=prediction.cached,
        vision_tokens=prediction.vision_tokens,
        pixels=list(pixels),
        dialogue=len(case.turns) > 1 and not case.circular,
    )
    sizes: tuple[tuple[int, int], ...] | None = None
    for n, (turn, answer) in enumerate(zip(case.turns, prediction.answers, strict=False)):
        if turn.scorer == "iou" and sizes is None:
            sizes = _image_sizes(case)  # read only where a box is scored
        context = turn_context(turn, sizes or (), box_convention=box_convention, resized_sizes=resized_sizes)
        judged: JudgeOutcome | None = None
        fallback: dict[str, Any] | None = None
        if turn.scorer == "judge":
            extracted, steps, scored, judged = judge_turn(case, turn, answer, judge)
            if judged.error is not None and result.error is None:
                result.error, result.judge_error = judged.error, True
        else:
            extracted, steps, scored = score_turn(turn, answer, context)
            if turn.scorer == "choice" and scored.parse_failed and judge is not None:  # VLMEvalKit's fallback
                scored, fallback = judge.choose(case, turn, extracted)
        passed = scored.score >= turn.threshold and (judged is None or judged.error is None)
        result.turns.append(
            TurnResult(
                question=turn.shown_question,
                expected=turn.expected_text,
                answer=answer,
                scorer=turn.scorer,
                score=float(scored.score),
                threshold=turn.threshold,
                passed=passed,
                detail=scored.detail,
                parse_failed=scored.parse_failed,
                prompt=prediction.prompts[n] if n < len(prediction.prompts) else turn.question,
                extracted=extracted,
                answer_steps=list(steps),
                format_issue=None if passed or judged is not None else format_issue(turn, answer, context),
                judge=judged.to_dict() if judged is not None else fallback,
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
    if result.error is not None and result.judge_error:
        lines.append(f"  ERROR of the judge, not of the model (its answer is shown, not scored): {result.error}")
    elif result.error is not None:
        lines.append(f"  {'error:':<10}{result.error}")
    for n, turn in enumerate(case.turns):
        prefix = f"  turn {n + 1}/{len(case.turns)}" if case.is_dialogue else ""
        if prefix:
            lines.append(prefix)
        pad = "    " if prefix else "  "
        lines.append(f"{pad}{'question:':<10}{turn.shown_question}")
        tr = result.turns[n] if n < len(result.turns) else None
        if tr is not None and tr.prompt and tr.prompt != turn.question:
            lines.append(f"{pad}{'sent:':<10}{tr.prompt!r}")
        lines.append(f"{pad}{'expected:':<10}{turn.expected_text}")
        if tr is not None:
            verdict = ">=" if tr.passed else "<"
            lines.append(f"{pad}{'answer:':<10}{tr.answer!r}")
            if tr.extracted != tr.answer:
                lines.append(f"{pad}{'scored:':<10}{tr.extracted!r} (after {', '.join(tr.answer_steps)})")
            status = "ok" if tr.passed else "FAILED"
            if tr.judge is not None and tr.judge.get("error"):
                lines.append(f"{pad}{'score:':<10}not scored: the judge's verdict is missing")
                continue
            lines.append(
                f"{pad}{'score:':<10}{tr.score:.3f} {verdict} threshold {tr.threshold:g} ({tr.scorer}) {status}"
            )
            if tr.detail:
                lines.append(f"{pad}{'judge:' if tr.judge else 'detail:':<10}{tr.detail}")
            if tr.format_issue:
                lines.append(f"{pad}{'format:':<10}{tr.format_issue}")
        else:
            lines.append(f"{pad}{'answer:':<10}(not generated)")
    return "\n".join(lines)
