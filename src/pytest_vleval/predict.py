"""The prediction pass: models loaded once, answers generated in batches, failures isolated per case.

Answers come from the answer cache when it has them (see ``cache.py``); the rest are generated lazily, in
run order, in batches sorted by input length, and stored as each batch finishes. Latency measurements must
call a backend directly: only this predictor reads the cache.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vleval.cases import Case
from pytest_vleval.models import Backend, Conversation, GenerationFailure, ModelSpec, UnsupportedConversation

if TYPE_CHECKING:
    import pytest

    from pytest_vleval.cache import AnswerCache, ModelFingerprint
    from pytest_vleval.options import VlOptions
    from pytest_vleval.progress import PredictionProgress

CaseKey = tuple[str, str, str]  # (model label, case file, case id)

# A batch is taken from a window of this many batches' worth of pending cases, sorted by input length.
SORT_WINDOW_BATCHES = 4


def case_key(label: str, case: Case) -> CaseKey:
    return (label, str(case.path), case.id)


@dataclass
class Prediction:
    """The model's answers to a case, one per turn, or the error that stopped it."""

    answers: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    cached: bool = False  # read from the answer cache (seconds is then 0)
    batch_size: int = 0  # the size of the batch its first turn was generated in
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


def free_accelerator_memory(backend: Backend) -> None:
    """Return cached blocks to the device after an out-of-memory error, before the halves are retried."""
    gc.collect()
    torch = sys.modules.get("torch")  # a CUDA backend has imported it; never import it here
    device = str((getattr(backend, "info", None) or {}).get("device", ""))
    if torch is not None and device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class ModelRun:
    """What the prediction pass did for one model, for the progress bar and the summary."""

    total: int = 0  # cases planned
    cached: int = 0
    generated: int = 0
    batches: int = 0
    seconds: float = 0.0  # spent generating
    failed: list[str] = field(default_factory=list)  # "file::case: reason" of cases the model failed
    oom_batch: int | None = None  # a batch size that ran out of memory
    batch_cap: int | None = None  # the largest size that fitted after it

    @property
    def done(self) -> int:
        return self.cached + self.generated


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


class BatchPredictor:
    """Answers cases lazily in batches, in run order.

    When a test needs an answer that is not there yet, the cache is read for all of its model's selected
    cases (once); if it is still missing, it and the next pending cases of the same model are sorted by
    input length and cut into batches, and the batch holding it is generated, turn by turn. Only selected
    cases are ever generated, and with `-x` at most one batch is spent on cases that do not run.
    """

    def __init__(
        self,
        pool: ModelPool,
        batch_size: Callable[[Backend], int],
        default_max_new_tokens: int,
        *,
        cache: AnswerCache | None = None,
        fingerprint: Callable[[ModelSpec], ModelFingerprint] | None = None,
        progress: PredictionProgress | None = None,
        check_invariance: bool = False,
        cache_off_reason: str | None = None,
    ) -> None:
        self.pool = pool
        self._batch_size = batch_size
        self._default_max_new_tokens = default_max_new_tokens
        self.cache = cache if fingerprint is not None else None
        self._fingerprint = fingerprint
        self.progress = progress
        self.check_invariance = check_invariance
        self.cache_off_reason = cache_off_reason
        self._queue: dict[str, list[Case]] = {}
        self._position: dict[CaseKey, int] = {}
        self._done: dict[CaseKey, Prediction] = {}
        self._chunk_of: dict[CaseKey, list[Case]] = {}
        self._case_fingerprints: dict[CaseKey, str] = {}
        self._image_hashes: dict[str, str] = {}
        self._models: dict[str, ModelFingerprint | None] = {}
        self._chunk_ok = 0  # largest successful generate call of the running batch
        self._chunk_oom = False
        self.runs: dict[str, ModelRun] = {}
        self.batches: list[int] = []  # sizes of the batches generated (first turns)
        self.invariance_checked = 0
        self.invariance_differences: list[InvarianceDifference] = []
        # What this process runs next, when another process runs the rest (an xdist worker); None: the plan.
        self.upcoming: Callable[[], Sequence[tuple[ModelSpec, Case]] | None] | None = None

    def plan(self, work: Sequence[tuple[ModelSpec, Case]]) -> None:
        """Set the run order of the cases to predict (called after selection)."""
        self._queue = {}
        self._position = {}
        for spec, case in work:
            queue = self._queue.setdefault(spec.label, [])
            self._position[case_key(spec.label, case)] = len(queue)
            queue.append(case)
        self.runs = {label: ModelRun(total=len(cases)) for label, cases in self._queue.items()}

    def predict(self, spec: ModelSpec, case: Case) -> Prediction:
        key = case_key(spec.label, case)
        if key not in self._done:
            self._read_cache(spec)
        if key not in self._done:
            try:
                backend = self.pool.get(spec)
                batch = self._next_batch(spec, case, backend)
                if batch:
                    self._run(spec, backend, batch)
            finally:
                if self.progress is not None:
                    self.progress.clear()
        return self._done[key]

    def _run_of(self, label: str) -> ModelRun:
        return self.runs.setdefault(label, ModelRun())

    def _max_new_tokens(self, case: Case) -> int:
        return case.max_new_tokens or self._default_max_new_tokens

    def _model(self, spec: ModelSpec) -> ModelFingerprint | None:
        if self.cache is None or self._fingerprint is None:
            return None
        if spec.label not in self._models:
            self._models[spec.label] = self._fingerprint(spec)
        model = self._models[spec.label]
        return model if model is not None and model.key is not None else None

    def _image_hash(self, path: object) -> str:
        assert self.cache is not None
        name = str(path)
        if name not in self._image_hashes:
            self._image_hashes[name] = self.cache.file_hash(path)  # type: ignore[arg-type]
        return self._image_hashes[name]

    def _case_fingerprint(self, label: str, case: Case) -> str:
        from pytest_vleval.cache import case_fingerprint

        key = case_key(label, case)
        if key not in self._case_fingerprints:
            self._case_fingerprints[key] = case_fingerprint(case, self._max_new_tokens(case), self._image_hash)
        return self._case_fingerprints[key]

    def _lookup(self, spec: ModelSpec, model: ModelFingerprint, cases: Sequence[Case]) -> int:
        assert self.cache is not None
        found = 0
        for case in cases:
            key = case_key(spec.label, case)
            if key in self._done:
                continue
            try:
                fingerprint = self._case_fingerprint(spec.label, case)
            except OSError:
                continue  # an unreadable image fails at generation, with the backend's message
            entry = self.cache.get(model, fingerprint, len(case.turns))
            if entry is not None:
                self._done[key] = Prediction(answers=list(entry["answers"]), cached=True)
                found += 1
        self._run_of(spec.label).cached += found
        return found

    def _read_cache(self, spec: ModelSpec) -> None:
        """Once per model: every planned case that the cache answers is answered from it."""
        if spec.label in self._models:
            return
        model = self._model(spec)
        if model is not None and self.cache is not None and self.cache.read:
            self._lookup(spec, model, self._queue.get(spec.label, []))

    def _pending_after(self, label: str, case: Case, limit: int) -> list[Case]:
        upcoming = self.upcoming() if self.upcoming is not None else None
        if upcoming is not None:
            # An xdist worker: only the cases it runs itself, in its order (the rest are another worker's).
            own = [c for spec, c in upcoming if spec.label == label]
            start = next((i + 1 for i, c in enumerate(own) if c is case), 0)
            following = own[start:]
        else:
            queue = self._queue.get(label, [])
            following = queue[self._position.get(case_key(label, case), -1) + 1 :]
        pending: list[Case] = []
        for other in following:
            if len(pending) >= limit:
                break
            if other is not case and case_key(label, other) not in self._done:
                pending.append(other)
        return pending

    def _size(self, spec: ModelSpec, backend: Backend) -> int:
        size = max(1, self._batch_size(backend))
        cap = self._run_of(spec.label).batch_cap
        return min(size, cap) if cap else size

    def _next_batch(self, spec: ModelSpec, case: Case, backend: Backend) -> list[Case]:
        label = spec.label
        size = self._size(spec, backend)
        planned = self._chunk_of.get(case_key(label, case))
        if planned is not None:
            pending = [c for c in planned if case_key(label, c) not in self._done]
            if len(pending) <= size:
                return pending
            window = pending  # planned before an out-of-memory error lowered the batch size
        else:
            window = self._window(spec, case, backend, size)
            if not window:
                return []
        chunks = [window[i : i + size] for i in range(0, len(window), size)]
        for chunk in chunks:
            for member in chunk:
                self._chunk_of[case_key(label, member)] = chunk
        return next(chunk for chunk in chunks if any(c is case for c in chunk))

    def _window(self, spec: ModelSpec, case: Case, backend: Backend, size: int) -> list[Case]:
        """`case` and the pending cases after it, a few batches' worth, sorted by input length."""
        label = spec.label
        window = [case, *self._pending_after(label, case, size * SORT_WINDOW_BATCHES - 1)]
        model = self._model(spec)
        if model is not None and self.cache is not None and self.cache.read:
            # Another process (an xdist worker) may have answered some of them since the cache was read.
            self._lookup(spec, model, window)
            window = [c for c in window if case_key(label, c) not in self._done]
            if not window or window[0] is not case:
                return []
        return self._sorted_by_length(backend, window) if len(window) > size else window

    def _sorted_by_length(self, backend: Backend, cases: list[Case]) -> list[Case]:
        """Cases of similar input length batch together, so less of each batch is padding.

        Answers do not depend on the batch (greedy decoding, left padding), so the order is free to choose.
        A backend that cannot measure its inputs (no ``input_length``) keeps the run order.
        """
        measure = getattr(backend, "input_length", None)
        if not callable(measure):
            return cases
        try:
            lengths = {id(c): int(measure(self._conversation(c, 0, Prediction()))) for c in cases}
        except Exception:
            return cases
        return sorted(cases, key=lambda c: lengths[id(c)])

    def _run(self, spec: ModelSpec, backend: Backend, cases: list[Case]) -> None:
        run = self._run_of(spec.label)
        if self.progress is not None:
            self.progress.update(spec.label, run, busy=len(cases))
        started = time.perf_counter()
        self.batches.append(len(cases))
        self._chunk_ok, self._chunk_oom = 0, False
        predictions = {id(c): Prediction(batch_size=len(cases)) for c in cases}
        self._generate(backend, cases, predictions, batch_size=len(cases))
        if self._chunk_oom:
            run.batch_cap = max(1, min(self._chunk_ok or 1, len(cases) - 1))
        if self.check_invariance and len(cases) > 1:
            self._check_invariance(spec, backend, cases, predictions)
        elapsed = time.perf_counter() - started
        model = self._model(spec)
        for case in cases:
            prediction = predictions[id(case)]
            prediction.seconds = elapsed / len(cases)
            self._done[case_key(spec.label, case)] = prediction
            if prediction.error is not None and prediction.skipped is None:
                run.failed.append(f"{case.path.name}::{case.id}: {prediction.error.splitlines()[0]}")
            elif model is not None and self.cache is not None:
                self._store(spec, backend, model, case, prediction)
        run.generated += len(cases)
        run.batches += 1
        run.seconds += elapsed

    def _store(
        self, spec: ModelSpec, backend: Backend, model: ModelFingerprint, case: Case, prediction: Prediction
    ) -> None:
        assert self.cache is not None
        info = getattr(backend, "info", None) or {}
        self.cache.put(
            model,
            self._case_fingerprint(spec.label, case),
            {
                "model": spec.label,
                "source": spec.source,
                "file": str(case.path),
                "case": case.id,
                "answers": prediction.answers,
                "seconds": round(prediction.seconds, 4),
                "batch_size": prediction.batch_size,
                "device": str(info.get("device", "")),
                "dtype": str(info.get("dtype", "")),
            },
        )

    def _generate(
        self, backend: Backend, cases: list[Case], predictions: dict[int, Prediction], batch_size: int
    ) -> None:
        self._skip_unsupported(backend, cases, predictions)
        for turn in range(max(len(c.turns) for c in cases)):
            active = [c for c in cases if turn < len(c.turns) and predictions[id(c)].error is None]
            self._generate_turn(backend, active, turn, predictions, batch_size)

    def _skip_unsupported(self, backend: Backend, cases: list[Case], predictions: dict[int, Prediction]) -> None:
        """A dialogue the model's family cannot hold (BLIP-2: no chat template) is skipped before its first turn
        is generated. Asks the backend's optional ``unsupported(conversation) -> reason | None`` about the last
        turn; a backend without it answers per conversation in ``generate`` (turn by turn)."""
        check = getattr(backend, "unsupported", None)
        if not callable(check):
            return
        for case in cases:
            last = len(case.turns) - 1
            if last < 1:
                continue
            probe = Conversation(
                images=case.images,
                question=case.turns[last].question,
                history=tuple((t.question, "") for t in case.turns[:last]),
                system=case.system,
                max_new_tokens=self._max_new_tokens(case),
            )
            reason = check(probe)
            if reason:
                prediction = predictions[id(case)]
                prediction.error = f"model {backend.spec.label!r} failed on turn {last + 1}: {reason}"
                prediction.skipped = reason

    def _conversation(self, case: Case, turn: int, prediction: Prediction) -> Conversation:
        history = tuple((case.turns[i].question, prediction.answers[i]) for i in range(turn))
        return Conversation(
            images=case.images,
            question=case.turns[turn].question,
            history=history,
            system=case.system,
            max_new_tokens=self._max_new_tokens(case),
        )

    def _generate_turn(
        self,
        backend: Backend,
        cases: list[Case],
        turn: int,
        predictions: dict[int, Prediction],
        batch_size: int,
    ) -> None:
        if not cases:
            return
        conversations = [self._conversation(c, turn, predictions[id(c)]) for c in cases]
        failure: str | None = None
        out_of_memory = False
        try:
            answers = backend.generate(conversations)
        except Exception as exc:
            out_of_memory = is_out_of_memory(exc)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            failure = f"{type(exc).__name__}: {first_line}"
        # The exception (and the tensors its traceback holds) is gone here, so memory can be freed.
        if failure is not None:
            label = backend.spec.label
            if out_of_memory:
                self._chunk_oom = True
                run = self._run_of(label)
                run.oom_batch = max(run.oom_batch or 0, len(cases))
                free_accelerator_memory(backend)
            if len(cases) == 1:
                if out_of_memory:
                    alone = f" even alone (its batch of {batch_size} was halved down to 1)" if batch_size > 1 else ""
                    predictions[id(cases[0])].error = (
                        f"model {label!r} ran out of memory on turn {turn + 1}{alone}: {failure}; "
                        "try a smaller max_new_tokens, a smaller image, --vl-dtype or another --vl-device"
                    )
                else:
                    predictions[id(cases[0])].error = f"model {label!r} failed on turn {turn + 1}: {failure}"
                return
            # Halve and retry: an out-of-memory batch fits in smaller pieces, and a case that breaks
            # the model alone fails alone. Answers of the halves that succeed are kept.
            middle = len(cases) // 2
            self._generate_turn(backend, cases[:middle], turn, predictions, batch_size)
            self._generate_turn(backend, cases[middle:], turn, predictions, batch_size)
            return
        if len(answers) != len(cases):
            raise RuntimeError(
                f"backend {backend.spec.label!r} returned {len(answers)} answers for {len(cases)} conversations"
            )
        self._chunk_ok = max(self._chunk_ok, len(cases))
        for case, answer in zip(cases, answers, strict=True):
            if isinstance(answer, GenerationFailure):
                predictions[
                    id(case)
                ].error = f"model {backend.spec.label!r} failed on turn {turn + 1}: {answer.message}"
                if isinstance(answer, UnsupportedConversation):
                    predictions[id(case)].skipped = answer.message
            else:
                predictions[id(case)].answers.append(answer)

    def _check_invariance(
        self, spec: ModelSpec, backend: Backend, cases: list[Case], predictions: dict[int, Prediction]
    ) -> None:
        """Regenerate each case alone; a case whose answers differ fails, scored on its batch-1 answers."""
        for case in cases:
            batched = predictions[id(case)]
            if batched.error is not None:
                continue
            alone = {id(case): Prediction(batch_size=1)}
            self._generate(backend, [case], alone, batch_size=1)
            reference = alone[id(case)]
            if reference.error is not None:
                continue
            self.invariance_checked += 1
            if reference.answers != batched.answers:
                difference = InvarianceDifference(
                    spec.label, case, len(cases), list(batched.answers), list(reference.answers)
                )
                self.invariance_differences.append(difference)
                n = difference.turn
                got = batched.answers[n] if n < len(batched.answers) else None
                want = reference.answers[n] if n < len(reference.answers) else None
                batched.error = (
                    f"batch invariance: turn {n + 1} answered {got!r} in a batch of {len(cases)} "
                    f"but {want!r} alone (--vl-check-batch-invariance)"
                )
                batched.answers = list(reference.answers)

    def summary_lines(self) -> list[str]:
        """The prediction pass per model, the cache, and the batch-invariance check, for the terminal summary."""
        lines = []
        for label, run in self.runs.items():
            if not run.done:
                continue
            rate = f", {run.generated / run.seconds:.1f} cases/s" if run.generated and run.seconds > 0 else ""
            lines.append(
                f"prediction {label}: {run.done}/{run.total} cases, {run.generated} generated in "
                f"{run.batches} batches ({run.seconds:.1f} s{rate}), {run.cached} from the answer cache"
            )
            if run.oom_batch is not None:
                cap = f"; later batches used at most {run.batch_cap}" if run.batch_cap else ""
                lines.append(f"  out of memory at batch size {run.oom_batch}: the batch was halved and retried{cap}")
            for failure in run.failed[:20]:
                lines.append(f"  failed: {failure}")
            if len(run.failed) > 20:
                lines.append(f"  ... and {len(run.failed) - 20} more failed cases")
        if self.cache_off_reason:
            lines.append(f"answer cache: off ({self.cache_off_reason})")
        elif self.cache is not None:
            mode = "" if self.cache.read else " (refreshing: every answer regenerated)"
            lines.append(
                f"answer cache {self.cache.root}{mode}: {self.cache.hits} answers reused, {self.cache.writes} stored"
            )
            for label, model in self._models.items():
                if model is not None and model.key is None:
                    lines.append(f"  not used for model {label}: {model.basis}")
            if self.cache.write_error:
                lines.append(f"  could not write: {self.cache.write_error}")
        if self.check_invariance:
            differ = self.invariance_differences
            lines.append(
                f"batch invariance: {len(differ)} of {self.invariance_checked} cases generated in batches "
                "answered differently alone"
            )
            for d in differ:
                n = d.turn
                got = d.batched[n] if n < len(d.batched) else None
                want = d.alone[n] if n < len(d.alone) else None
                lines.append(
                    f"  {d.case.path.name}::{d.case.id}[{d.label}] turn {n + 1}: {got!r} in a batch of "
                    f"{d.batch_size}, {want!r} alone"
                )
        return lines


def make_predictor(
    config: pytest.Config, options: VlOptions, pool: ModelPool, batch_size: Callable[[Backend], int]
) -> BatchPredictor:
    """The session's predictor: with the answer cache unless --vl-no-cache, and a progress bar in a terminal."""
    from pytest_vleval import progress
    from pytest_vleval.cache import AnswerCache, ModelFingerprints, third_party_loaders

    cache = fingerprints = None
    if options.cache_dir:
        # --vl-check-batch-invariance must generate everything it checks, so it reads nothing.
        cache = AnswerCache(Path(options.cache_dir), read=not (options.refresh or options.check_batch_invariance))
        fingerprints = ModelFingerprints(options, cache, pool.get, lambda: third_party_loaders(config))
    return BatchPredictor(
        pool,
        batch_size,
        options.max_new_tokens,
        cache=cache,
        fingerprint=fingerprints,
        progress=progress.for_config(config),
        check_invariance=options.check_batch_invariance,
        cache_off_reason=None if cache is not None else "--vl-no-cache",
    )
