"""The prediction pass: answers generated lazily in batches, in run order, failures isolated per case.

Answers come from the answer cache when it has them (see ``cache.py``); the rest are generated lazily, in
run order, in batches sorted by input length (``generation.py`` runs one batch), and stored as each batch
finishes. Latency measurements must call a backend directly: only this predictor reads the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vleval.backends.base import Backend, ModelSpec
from pytest_vleval.cases.casefile import Case
from pytest_vleval.predict.asking import Asking
from pytest_vleval.predict.generation import (
    BatchGeneration,
    InvarianceDifference,
    Prediction,
    check_invariance,
)
from pytest_vleval.predict.pool import ModelPool
from pytest_vleval.predict.runs import ModelRun, difference_entry

if TYPE_CHECKING:
    import pytest

    from pytest_vleval.options import VlOptions
    from pytest_vleval.predict.cache import AnswerCache
    from pytest_vleval.predict.fingerprints import ModelFingerprint
    from pytest_vleval.predict.progress import PredictionProgress

__all__ = ["BatchPredictor", "CaseKey", "ModelRun", "Prediction", "case_key", "make_predictor"]

CaseKey = tuple[str, str, str]  # (model label, case file, case id)

# A batch is taken from a window of this many batches' worth of pending cases, sorted by input length.
SORT_WINDOW_BATCHES = 4

SERVED = Prediction()  # a case's entry in `_done` once its test has the prediction (200,000 are not kept twice)


def case_key(label: str, case: Case) -> CaseKey:
    return (label, str(case.path), case.id)


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
        pixels: tuple[int | None, int | None] = (None, None),
    ) -> None:
        self.pool = pool
        self._batch_size = batch_size
        self._default_max_new_tokens = default_max_new_tokens
        self.cache = cache if fingerprint is not None else None
        self._fingerprint = fingerprint
        self.progress = progress
        self.check_invariance = check_invariance
        self.cache_off_reason = cache_off_reason
        self.pixels = pixels
        self._asking: dict[str, Asking] = {}
        self._queue: dict[str, list[Case]] = {}
        self._position: dict[CaseKey, int] = {}
        self._done: dict[CaseKey, Prediction] = {}  # answered; SERVED once handed to the test
        self._chunk_of: dict[CaseKey, list[Case]] = {}
        self._case_fingerprints: dict[CaseKey, str] = {}
        self._image_hashes: dict[str, str] = {}
        self._models: dict[str, ModelFingerprint | None] = {}
        self.runs: dict[str, ModelRun] = {}
        self.batches: list[int] = []  # sizes of the batches generated (first turns)
        self.invariance_checked = 0
        self.invariance_differences: list[InvarianceDifference] = []
        # What this process runs next, when another process runs the rest (an xdist worker); None: the plan.
        # (Called with how many queued items it needs to look at.)
        self.upcoming: Callable[[int], Sequence[tuple[ModelSpec, Case]] | None] | None = None
        self.shared = False  # an xdist worker: others store answers in the cache while this one runs

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
        """The case's prediction, handed over once: asked again (a rerun plugin), it is answered anew."""
        key = case_key(spec.label, case)
        if self._done.get(key) is SERVED:
            del self._done[key]
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
        prediction = self._done[key]
        self._done[key] = SERVED  # the test keeps the prediction
        asking = self.asking(spec)
        prediction.prompts = asking.questions(case)  # the memoised tuple, shared with the cache key
        asking.forget(case)
        if prediction.cached:
            # Counted when a test asks for it: an xdist worker reads cached answers of cases another worker runs.
            self._run_of(spec.label).cached += 1
        return prediction

    def asking(self, spec: ModelSpec) -> Asking:
        """How `spec` is asked, fixed for the run once known: its family (from the loaded backend, else from its
        files without loading it; generic when neither says) and the run's pixel limits."""
        if spec.label in self._asking:
            return self._asking[spec.label]
        from pytest_vleval.backends.families import GENERIC, family_for

        info = self.pool.infos.get(spec.label)
        asking = Asking(family_for(spec, info), *self.pixels)
        if info is not None or asking.family is not GENERIC:
            # Settled: a hub model not downloaded yet is asked generically only until it has loaded.
            self._asking[spec.label] = asking
        return asking

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

    def _case_fingerprint(self, spec: ModelSpec, case: Case) -> str:
        from pytest_vleval.predict.fingerprints import case_fingerprint

        key = case_key(spec.label, case)
        if key not in self._case_fingerprints:
            asking = self.asking(spec)
            self._case_fingerprints[key] = case_fingerprint(
                case, self._max_new_tokens(case), self._image_hash, asking.questions(case), asking.pixels(case)
            )
        return self._case_fingerprints[key]

    def _lookup(self, spec: ModelSpec, model: ModelFingerprint, cases: Sequence[Case]) -> int:
        assert self.cache is not None
        found = 0
        for case in cases:
            key = case_key(spec.label, case)
            if key in self._done:
                continue
            try:
                fingerprint = self._case_fingerprint(spec, case)
            except OSError:
                continue  # an unreadable image fails at generation, with the backend's message
            entry = self.cache.get(model, fingerprint, len(case.turns))
            if entry is not None:
                tokens = entry.get("vision_tokens")
                tokens = tokens if isinstance(tokens, int) else None
                self._done[key] = Prediction(answers=list(entry["answers"]), cached=True, vision_tokens=tokens)
                del self._case_fingerprints[key]  # answered: its fingerprint and place in the plan are not needed
                self._position.pop(key, None)
                self._chunk_of.pop(key, None)
                found += 1
        return found

    def _read_cache(self, spec: ModelSpec) -> None:
        """Once per model: every planned case that the cache answers is answered from it."""
        if spec.label in self._models:
            return
        model = self._model(spec)
        if model is not None and self.cache is not None and self.cache.read:
            self._lookup(spec, model, self._queue.get(spec.label, []))

    def _pending_after(self, label: str, case: Case, limit: int) -> list[Case]:
        """Up to `limit` cases of `label` after `case` in run order, not answered yet; linear in what it looks
        at, not in the run's size (a 200,000-case run asks this once per batch)."""
        upcoming = self.upcoming(limit * 2 + 2) if self.upcoming is not None else None
        following: Iterable[Case]
        if upcoming is not None:
            # An xdist worker: only the cases it runs itself, in its order (the rest are another worker's).
            own = [c for spec, c in upcoming if spec.label == label]
            start = next((i + 1 for i, c in enumerate(own) if c is case), 0)
            following = own[start:]
        else:
            queue = self._queue.get(label, [])
            start = self._position.get(case_key(label, case), -1) + 1
            following = (queue[i] for i in range(start, len(queue)))
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
        if self.shared and model is not None and self.cache is not None and self.cache.read:
            # Another xdist worker may have answered some of them since the cache was read.
            self._lookup(spec, model, window)
            window = [c for c in window if case_key(label, c) not in self._done]
            if not window or window[0] is not case:
                return []
        return self._sorted_by_length(backend, window) if len(window) > size else window

    def _sorted_by_length(self, backend: Backend, cases: list[Case]) -> list[Case]:
        """Cases of similar input length batch together, so less of each batch is padding.

        Answers do not depend on the batch (greedy decoding, left padding), so the order is free to choose.
        A backend that cannot measure its inputs (``input_length`` gives None) keeps the run order.
        """
        asking = self.asking(backend.spec)
        try:
            measured = {
                id(c): backend.input_length(asking.conversation(c, 0, [], self._max_new_tokens(c))) for c in cases
            }
        except Exception:
            return cases
        if any(length is None for length in measured.values()):
            return cases
        lengths = {key: int(length) for key, length in measured.items() if length is not None}
        return sorted(cases, key=lambda c: lengths[id(c)])

    def _run(self, spec: ModelSpec, backend: Backend, cases: list[Case]) -> None:
        run = self._run_of(spec.label)
        if self.progress is not None:
            self.progress.update(spec.label, run, busy=len(cases))
        asking = self.asking(spec)  # before the clock: finding the family may read the model's files
        started = time.perf_counter()
        self.batches.append(len(cases))
        generation = BatchGeneration(backend, self._max_new_tokens, asking)
        predictions = generation.run(cases, len(cases))
        if generation.oom_size is not None:
            run.oom_batch = max(run.oom_batch or 0, generation.oom_size)
            run.batch_cap = max(1, min(generation.largest_ok or 1, len(cases) - 1))
        if self.check_invariance and len(cases) > 1:
            checked, differences = check_invariance(backend, cases, predictions, self._max_new_tokens, asking)
            self.invariance_checked += checked
            self.invariance_differences.extend(differences)
        elapsed = time.perf_counter() - started
        model = self._model(spec)
        answered = []
        for case in cases:
            prediction = predictions[id(case)]
            prediction.seconds = elapsed / len(cases)
            prediction.vision_tokens = asking.vision_tokens(backend, case, self._max_new_tokens(case))
            key = case_key(spec.label, case)
            self._done[key] = prediction
            self._chunk_of.pop(key, None)  # what planned its batch, and its place in the plan: not needed again
            self._position.pop(key, None)
            if prediction.error is not None and prediction.skipped is None:
                run.failed.append(f"{case.path.name}::{case.id}: {prediction.error.splitlines()[0]}")
            else:
                answered.append((key, case, prediction))
        if model is not None and self.cache is not None:
            with self.cache.batch():  # the batch's answers in one commit
                for key, case, prediction in answered:
                    self._store(spec, backend, model, case, prediction)
                    self._case_fingerprints.pop(key, None)  # not needed again
        run.generated += len(cases)
        run.batches += 1
        run.seconds += elapsed

    def _store(
        self, spec: ModelSpec, backend: Backend, model: ModelFingerprint, case: Case, prediction: Prediction
    ) -> None:
        assert self.cache is not None
        info = backend.info or {}
        self.cache.put(
            model,
            self._case_fingerprint(spec, case),
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
                "vision_tokens": prediction.vision_tokens,
            },
        )

    def close(self) -> None:
        """Close the answer cache's database (the judge's verdicts share it); every batch is committed already."""
        if self.cache is not None:
            self.cache.close()

    def snapshot(self) -> dict[str, Any]:
        """What this process's prediction pass did, in plain types, for the run record (``records/``): per model
        the cases planned, answered from the cache, generated, batches and failures; the answer cache; the
        batch-invariance check."""
        models = {label: run.to_dict() for label, run in self.runs.items() if run.done}
        cache: dict[str, Any] = {"off": self.cache_off_reason}
        if self.cache is not None:
            cache.update(
                root=str(self.cache.root),
                refreshing=not self.cache.read,
                hits=sum(run.cached for run in self.runs.values()),  # answers handed to tests
                writes=self.cache.writes,
                write_error=self.cache.write_error,
                not_used={label: m.basis for label, m in self._models.items() if m is not None and m.key is None},
            )
        invariance = None
        if self.check_invariance:
            invariance = {
                "checked": self.invariance_checked,
                "differences": [difference_entry(d) for d in self.invariance_differences],
            }
        return {"models": models, "cache": cache, "invariance": invariance}


def make_predictor(
    config: pytest.Config, options: VlOptions, pool: ModelPool, batch_size: Callable[[Backend], int]
) -> BatchPredictor:
    """The session's predictor: with the answer cache unless --vl-no-cache, and a progress bar in a terminal."""
    from pytest_vleval.predict import progress
    from pytest_vleval.predict.cache import AnswerCache
    from pytest_vleval.predict.fingerprints import ModelFingerprints, third_party_loaders

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
        pixels=(options.min_pixels, options.max_pixels),
    )
