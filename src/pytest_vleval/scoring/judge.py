"""Scoring a turn with a judge model (``scorer: judge``): the prompts of its verdicts, how they are read, and
how several verdicts make one score.

The judge itself (loading it, the verdict cache) lives in ``predict/judging.py``; this module only needs a
function that takes prompts and returns the judge's replies. One verdict per ``--vl-judge-repeat``, repeat k
asked with section order ``judge_prompt.VARIANTS[k % 4]``; the turn's score is the mean of the verdicts on 0..1,
and ``agreement`` the share of verdicts that gave the most common score. A verdict that cannot be read
(``scoring/verdicts.py``) makes the case an ERROR that shows the judge's reply: the model is not blamed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_vleval.cases.fields import Turn
from pytest_vleval.scoring.base import ScoreResult, show
from pytest_vleval.scoring.choice import infer_choice
from pytest_vleval.scoring.judge_prompt import (
    CHOICE_TEMPLATE,
    JUDGE_TEMPLATE,
    JudgePrompt,
    choice_prompt,
    judge_prompt,
    template_sha256,
)
from pytest_vleval.scoring.verdicts import VerdictError, parse_verdict

__all__ = ["JudgeOutcome", "JudgeRequest", "Reply", "choice_by_judge", "grade", "judge_requests"]


@dataclass(frozen=True)
class JudgeRequest:
    """One verdict to ask for: the prompt and whether the judge sees the case's images with it."""

    prompt: JudgePrompt
    with_images: bool
    template: str = JUDGE_TEMPLATE


@dataclass(frozen=True)
class Reply:
    """The judge's reply to one request, or `failure` (the request itself failed: a dead judge server)."""

    text: str = ""
    cached: bool = False
    failure: str | None = None


@dataclass
class JudgeOutcome:
    judge: str  # the judge model's label
    fingerprint: str | None  # its content fingerprint (None: not fingerprinted, verdicts not cached)
    rubric: str
    scale: tuple[int, int]
    score: float = 0.0  # mean verdict on 0..1
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    agreement: float | None = None  # share of verdicts with the most common score (None: one verdict)
    error: str | None = None  # the verdict could not be read, or the judge could not be asked
    raw: str | None = None  # the judge's unreadable reply

    @property
    def reason(self) -> str:
        return str(self.verdicts[0]["reason"]) if self.verdicts else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "fingerprint": self.fingerprint,
            "template": JUDGE_TEMPLATE,
            "template_sha256": template_sha256(JUDGE_TEMPLATE),
            "rubric": self.rubric,
            "scale": list(self.scale),
            "score": self.score,
            "reason": self.reason,
            "verdicts": self.verdicts,
            "agreement": self.agreement,
            "error": self.error,
            "raw": self.raw,
        }

    def summary(self) -> str:
        """'4/5 by tiny-judge (judge-v1, rubric correctness): It gives the reference answer.'"""
        scores = ", ".join(str(v["score"]) for v in self.verdicts)
        high = self.scale[1]
        if len(self.verdicts) == 1:
            head = f"{scores}/{high}"
        else:
            head = f"{scores} (of {high}; agreement {self.agreement:.2f})"
        return f"{head} by {self.judge} ({JUDGE_TEMPLATE}, rubric {self.rubric}): {self.reason}"


def judge_requests(turn: Turn, answer: str, repeat: int) -> list[JudgeRequest]:
    """The verdicts to ask for `answer` to `turn`, one per repeat."""
    assert turn.rubric is not None, "a judged turn has a rubric (cases/rubrics.py)"
    reference = str(turn.reference[0]) if turn.reference else None
    with_images = turn.rubric.sees_image if turn.judge_image is None else turn.judge_image
    return [
        JudgeRequest(judge_prompt(turn.rubric, turn.question, answer, reference, k), with_images) for k in range(repeat)
    ]


def grade(
    turn: Turn,
    answer: str,
    repeat: int,
    ask: Callable[[Sequence[JudgeRequest]], Sequence[Reply]],
    *,
    judge: str,
    fingerprint: str | None,
) -> JudgeOutcome:
    """Ask the judge for `repeat` verdicts on `answer` and combine them (see the module's docstring)."""
    assert turn.rubric is not None
    rubric = turn.rubric
    outcome = JudgeOutcome(judge, fingerprint, rubric.name, (rubric.low, rubric.high))
    requests = judge_requests(turn, answer, repeat)
    for request, reply in zip(requests, ask(requests), strict=True):
        if reply.failure is not None:
            outcome.error = f"judge {judge!r} could not be asked: {reply.failure}"
            return outcome
        try:
            verdict = parse_verdict(reply.text, rubric.low, rubric.high)
        except VerdictError as exc:
            outcome.error = f"the verdict of judge {judge!r} could not be read: {exc}; its reply: {show(exc.raw, 300)}"
            outcome.raw = exc.raw
            return outcome
        outcome.verdicts.append(
            {
                "score": verdict.score,
                "reason": verdict.reason,
                "parsed_by": verdict.parsed_by,
                "variant": request.prompt.variant,
                "cached": reply.cached,
            }
        )
    scores = [int(v["score"]) for v in outcome.verdicts]
    outcome.score = sum(rubric.normalized(s) for s in scores) / len(scores)
    if len(scores) > 1:
        outcome.agreement = Counter(scores).most_common(1)[0][1] / len(scores)
    return outcome


def choice_by_judge(
    turn: Turn,
    answer: str,
    ask: Callable[[Sequence[JudgeRequest]], Sequence[Reply]],
    *,
    judge: str,
    fingerprint: str | None,
) -> tuple[ScoreResult, dict[str, Any]]:
    """VLMEvalKit's fallback for a multiple-choice answer its rules cannot read: the judge is asked which option
    the answer means (template ``choice-v1``, text only) and its reply read with the same rules (``Z``: none).
    Returns the turn's score and what the record keeps of it (``fallback: choice``)."""
    request = JudgeRequest(JudgePrompt(choice_prompt(turn.question, dict(turn.choices), answer), 0), False,
                           CHOICE_TEMPLATE)  # fmt: skip
    (reply,) = ask([request])
    record: dict[str, Any] = {
        "judge": judge,
        "fingerprint": fingerprint,
        "template": CHOICE_TEMPLATE,
        "template_sha256": template_sha256(CHOICE_TEMPLATE),
        "fallback": "choice",
        "raw": reply.text,
        "cached": reply.cached,
        "letter": None,
        "error": None,
    }
    if reply.failure is not None:
        record["error"] = f"judge {judge!r} could not be asked: {reply.failure}"
        return ScoreResult(0.0, f"no option read from {show(answer)}; {record['error']}", parse_failed=True), record
    letter, _ = infer_choice(reply.text, turn.choices)
    record["letter"] = letter
    if letter is None:
        detail = f"no option read from {show(answer)}, nor by judge {judge} (it said {show(reply.text)})"
        return ScoreResult(0.0, detail, parse_failed=True), record
    expected = str(turn.reference[0])
    verdict = "right" if letter == expected else f"expected {expected}"
    detail = f"read {letter} by judge {judge} ({CHOICE_TEMPLATE}): {verdict}"
    return ScoreResult(float(letter == expected), detail), record
