"""Generating one batch of cases, turn by turn: a failing batch is halved and retried, so an out-of-memory
batch fits in smaller pieces and a case that breaks the model fails alone; the answers of the halves that
succeed are kept. Also the batch-invariance check (``--vl-check-batch-invariance``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_vleval.backends.base import Backend, GenerationFailure, UnsupportedConversation
from pytest_vleval.cases.casefile import Case
from pytest_vleval.predict.asking import Asking
from pytest_vleval.predict.pool import free_accelerator_memory, is_out_of_memory

__all__ = ["BatchGeneration", "InvarianceDifference", "Prediction", "check_invariance"]


@dataclass
class Prediction:
    """The model's answers to a case, one per turn, or the error that stopped it."""

    answers: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False  # read from the answer cache (seconds is then 0)
    batch_size: int = 0  # the size of the batch its first turn was generated in
    skipped: str | None = None  # the model's family cannot take this case (UnsupportedConversation)
    prompts: Sequence[str] = ()  # each turn's text as sent
    vision_tokens: int | None = None  # the case's images as tokens in the first turn's prompt, if the backend says


@dataclass
class InvarianceDifference:
    label: str
    case: Case
    batch_size: int
    batched: list[str]
    alone: list[str]

    @property
    def turn(self) -> int:
        pairs = zip(self.batched, self.alone, strict=False)
        return next((n for n, (a, b) in enumerate(pairs) if a != b), min(len(self.batched), len(self.alone)))

    def answers_at_turn(self) -> tuple[str | None, str | None]:
        n = self.turn
        return (
            self.batched[n] if n < len(self.batched) else None,
            self.alone[n] if n < len(self.alone) else None,
        )


class BatchGeneration:
    """One batch of cases generated on `backend`; what happened is left on the object for the caller's stats."""

    def __init__(self, backend: Backend, max_new_tokens: Callable[[Case], int], asking: Asking | None = None) -> None:
        self.backend = backend
        self.max_new_tokens = max_new_tokens
        self.asking = asking or Asking()
        self.largest_ok = 0  # largest generate call that succeeded
        self.oom_size: int | None = None  # largest generate call that ran out of memory

    @property
    def out_of_memory(self) -> bool:
        return self.oom_size is not None

    def run(self, cases: list[Case], batch_size: int) -> dict[int, Prediction]:
        """Predictions keyed by ``id(case)``."""
        predictions = {id(c): Prediction(batch_size=batch_size) for c in cases}
        self._skip_unsupported(cases, predictions)
        for turn in range(max(len(c.turns) for c in cases)):
            active = [c for c in cases if turn < len(c.turns) and predictions[id(c)].error is None]
            self._turn(active, turn, predictions, batch_size)
        return predictions

    def _skip_unsupported(self, cases: list[Case], predictions: dict[int, Prediction]) -> None:
        """A dialogue the model's family cannot hold (BLIP-2: no chat template) is skipped before its first turn
        is generated: the backend is asked about the last turn."""
        for case in cases:
            last = len(case.turns) - 1
            if last < 1:
                continue
            probe = self.asking.probe(case, self.max_new_tokens(case))
            reason = self.backend.unsupported(probe)
            if reason:
                prediction = predictions[id(case)]
                prediction.error = f"model {self.backend.spec.label!r} failed on turn {last + 1}: {reason}"
                prediction.skipped = reason

    def _turn(self, cases: list[Case], turn: int, predictions: dict[int, Prediction], batch_size: int) -> None:
        if not cases:
            return
        label = self.backend.spec.label
        conversations = [
            self.asking.conversation(c, turn, predictions[id(c)].answers, self.max_new_tokens(c)) for c in cases
        ]
        failure: str | None = None
        out_of_memory = False
        try:
            answers = self.backend.generate(conversations)
        except Exception as exc:
            out_of_memory = is_out_of_memory(exc)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            failure = f"{type(exc).__name__}: {first_line}"
        # The exception (and the tensors its traceback holds) is gone here, so memory can be freed.
        if failure is not None:
            if out_of_memory:
                self.oom_size = max(self.oom_size or 0, len(cases))
                free_accelerator_memory(self.backend)
            if len(cases) == 1:
                predictions[id(cases[0])].error = _failure_text(label, turn, failure, out_of_memory, batch_size)
                return
            middle = len(cases) // 2
            self._turn(cases[:middle], turn, predictions, batch_size)
            self._turn(cases[middle:], turn, predictions, batch_size)
            return
        if len(answers) != len(cases):
            raise RuntimeError(f"backend {label!r} returned {len(answers)} answers for {len(cases)} conversations")
        self.largest_ok = max(self.largest_ok, len(cases))
        for case, answer in zip(cases, answers, strict=True):
            prediction = predictions[id(case)]
            if isinstance(answer, GenerationFailure):
                prediction.error = f"model {label!r} failed on turn {turn + 1}: {answer.message}"
                if isinstance(answer, UnsupportedConversation):
                    prediction.skipped = answer.message
            else:
                prediction.answers.append(answer)


def _failure_text(label: str, turn: int, failure: str, out_of_memory: bool, batch_size: int) -> str:
    if not out_of_memory:
        return f"model {label!r} failed on turn {turn + 1}: {failure}"
    alone = f" even alone (its batch of {batch_size} was halved down to 1)" if batch_size > 1 else ""
    return (
        f"model {label!r} ran out of memory on turn {turn + 1}{alone}: {failure}; "
        "try a smaller max_new_tokens, a smaller image, --vl-dtype or another --vl-device"
    )


def check_invariance(
    backend: Backend,
    cases: list[Case],
    predictions: dict[int, Prediction],
    max_new_tokens: Callable[[Case], int],
    asking: Asking | None = None,
) -> tuple[int, list[InvarianceDifference]]:
    """Regenerate each case alone; a case whose answers differ fails, scored on its batch-1 answers.
    Returns (cases checked, differences)."""
    checked = 0
    differences = []
    for case in cases:
        batched = predictions[id(case)]
        if batched.error is not None:
            continue
        reference = BatchGeneration(backend, max_new_tokens, asking).run([case], 1)[id(case)]
        if reference.error is not None:
            continue
        checked += 1
        if reference.answers == batched.answers:
            continue
        difference = InvarianceDifference(
            backend.spec.label, case, len(cases), list(batched.answers), list(reference.answers)
        )
        differences.append(difference)
        got, want = difference.answers_at_turn()
        batched.error = (
            f"batch invariance: turn {difference.turn + 1} answered {got!r} in a batch of {len(cases)} "
            f"but {want!r} alone (--vl-check-batch-invariance)"
        )
        batched.answers = list(reference.answers)
    return checked, differences
