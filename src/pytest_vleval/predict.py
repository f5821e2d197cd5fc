"""The prediction pass: models loaded once, answers generated in batches, failures isolated per case."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_vleval.cases import Case
from pytest_vleval.models import Backend, Conversation, GenerationFailure, ModelSpec, UnsupportedConversation

CaseKey = tuple[str, str, str]  # (model label, case file, case id)


def case_key(label: str, case: Case) -> CaseKey:
    return (label, str(case.path), case.id)


@dataclass
class Prediction:
    """The model's answers to a case, one per turn, or the error that stopped it."""

    answers: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    skipped: str | None = None  # the model's family cannot take this case (UnsupportedConversation)


class PredictionError(Exception):
    """A case could not be answered (the model failed on it); other cases are unaffected."""


class ModelPool:
    """Loads each model once per process; one model resident at a time."""

    def __init__(self, load: Callable[[ModelSpec], Backend]) -> None:
        self._load = load
        self._current: Backend | None = None
        self.load_counts: dict[str, int] = {}
        self.infos: dict[str, dict[str, object]] = {}
        self.load_errors: dict[str, str] = {}

    def get(self, spec: ModelSpec) -> Backend:
        if self._current is not None and self._current.spec.label == spec.label:
            return self._current
        if spec.label in self.load_errors:
            raise PredictionError(self.load_errors[spec.label])
        self.close()
        started = time.perf_counter()
        try:
            backend = self._load(spec)
        except Exception as exc:
            self.load_errors[spec.label] = f"model {spec.requested!r} failed to load: {exc}"
            raise PredictionError(self.load_errors[spec.label]) from exc
        self.load_counts[spec.label] = self.load_counts.get(spec.label, 0) + 1
        info = dict(getattr(backend, "info", {}) or {})
        info.setdefault("load_seconds", round(time.perf_counter() - started, 3))
        self.infos[spec.label] = info
        self._current = backend
        return backend

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


def is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class BatchPredictor:
    """Answers cases lazily in batches, in run order.

    When a test needs an answer that is not there yet, it and the next pending cases of the same model
    (up to the batch size) are generated together, turn by turn. Only selected cases are ever generated,
    and with `-x` at most one batch is spent on cases that do not run.
    """

    def __init__(self, pool: ModelPool, batch_size: Callable[[Backend], int], default_max_new_tokens: int) -> None:
        self.pool = pool
        self._batch_size = batch_size
        self._default_max_new_tokens = default_max_new_tokens
        self._queue: dict[str, list[tuple[ModelSpec, Case]]] = {}
        self._done: dict[CaseKey, Prediction] = {}
        self.batches: list[int] = []  # sizes of the batches generated (first turns), for the summary

    def plan(self, work: Sequence[tuple[ModelSpec, Case]]) -> None:
        """Set the run order of the cases to predict (called after selection)."""
        self._queue = {}
        for spec, case in work:
            self._queue.setdefault(spec.label, []).append((spec, case))

    def predict(self, spec: ModelSpec, case: Case) -> Prediction:
        key = case_key(spec.label, case)
        if key not in self._done:
            backend = self.pool.get(spec)
            batch = self._next_batch(spec, case, self._batch_size(backend))
            self._run(backend, batch)
        return self._done[key]

    def _next_batch(self, spec: ModelSpec, case: Case, size: int) -> list[Case]:
        batch = [case]
        queue = self._queue.get(spec.label, [])
        for _, other in queue:
            if len(batch) >= size:
                break
            if other is not case and case_key(spec.label, other) not in self._done:
                batch.append(other)
        return batch

    def _run(self, backend: Backend, cases: list[Case]) -> None:
        started = time.perf_counter()
        self.batches.append(len(cases))
        predictions = {id(c): Prediction() for c in cases}
        max_turns = max(len(c.turns) for c in cases)
        for turn in range(max_turns):
            active = [c for c in cases if turn < len(c.turns) and predictions[id(c)].error is None]
            self._generate_turn(backend, active, turn, predictions)
        elapsed = (time.perf_counter() - started) / len(cases)
        for case in cases:
            prediction = predictions[id(case)]
            prediction.seconds = elapsed
            self._done[case_key(backend.spec.label, case)] = prediction

    def _conversation(self, case: Case, turn: int, prediction: Prediction) -> Conversation:
        history = tuple((case.turns[i].question, prediction.answers[i]) for i in range(turn))
        return Conversation(
            images=case.images,
            question=case.turns[turn].question,
            history=history,
            system=case.system,
            max_new_tokens=case.max_new_tokens or self._default_max_new_tokens,
        )

    def _generate_turn(
        self, backend: Backend, cases: list[Case], turn: int, predictions: dict[int, Prediction]
    ) -> None:
        if not cases:
            return
        conversations = [self._conversation(c, turn, predictions[id(c)]) for c in cases]
        try:
            answers = backend.generate(conversations)
        except Exception as exc:
            if len(cases) == 1:
                kind = "ran out of memory" if is_out_of_memory(exc) else "failed"
                predictions[
                    id(cases[0])
                ].error = f"model {backend.spec.label!r} {kind} on turn {turn + 1}: {type(exc).__name__}: {exc}"
                return
            # Halve and retry: an out-of-memory batch fits in smaller pieces, and a case that breaks
            # the model alone fails alone.
            middle = len(cases) // 2
            self._generate_turn(backend, cases[:middle], turn, predictions)
            self._generate_turn(backend, cases[middle:], turn, predictions)
            return
        if len(answers) != len(cases):
            raise RuntimeError(
                f"backend {backend.spec.label!r} returned {len(answers)} answers for {len(cases)} conversations"
            )
        for case, answer in zip(cases, answers, strict=True):
            if isinstance(answer, GenerationFailure):
                predictions[
                    id(case)
                ].error = f"model {backend.spec.label!r} failed on turn {turn + 1}: {answer.message}"
                if isinstance(answer, UnsupportedConversation):
                    predictions[id(case)].skipped = answer.message
            else:
                predictions[id(case)].answers.append(answer)
