"""Models loaded once per process, one resident at a time, and what to do when a device runs out of memory."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable

from pytest_vleval.backends.base import Backend, ModelLoadError, ModelSpec, UnsupportedPrecision, complete_backend

__all__ = ["ModelLoadFailed", "ModelPool", "PredictionError", "free_accelerator_memory", "is_out_of_memory"]


NOT_RUN_HERE = "not run here: "  # how a variant this machine cannot run (UnsupportedPrecision) is reported


class PredictionError(Exception):
    """A case could not be answered (the model failed on it); other cases are unaffected."""


class ModelLoadFailed(PredictionError):
    """The model of a case could not be loaded: every case of that model fails, the reason is told once."""

    def __init__(self, label: str, reason: str, *, skip: bool = False) -> None:
        super().__init__(reason)
        self.label = label
        self.reason = reason
        self.skip = skip  # a variant that cannot run here (UnsupportedPrecision): its cases are skipped


class ModelPool:
    """Loads each model once per process; one model resident at a time.

    ``load`` returns whatever the ``pytest_vleval_load_model`` hook gave; the pool hands it out as a full
    :class:`~pytest_vleval.backends.base.Backend` (:func:`~pytest_vleval.backends.base.complete_backend`).
    """

    def __init__(self, load: Callable[[ModelSpec], object]) -> None:
        self._load = load
        self._current: Backend | None = None
        self.load_counts: dict[str, int] = {}
        self.infos: dict[str, dict[str, object]] = {}
        self.load_errors: dict[str, str] = {}
        self.unsupported: set[str] = set()  # labels whose load error is an UnsupportedPrecision (skipped)
        self.load_error_shown_at: dict[str, str] = {}  # model label -> the test id whose report holds the reason

    def get(self, spec: ModelSpec) -> Backend:
        if self._current is not None and self._current.spec.label == spec.label:
            return self._current
        if spec.label in self.load_errors:
            raise ModelLoadFailed(spec.label, self.load_errors[spec.label], skip=spec.label in self.unsupported)
        self.close()
        started = time.perf_counter()
        try:
            backend = complete_backend(self._load(spec))
        except Exception as exc:
            self.load_errors[spec.label] = str(exc) if isinstance(exc, ModelLoadError) else load_error_text(spec, exc)
            if isinstance(exc, UnsupportedPrecision):
                self.unsupported.add(spec.label)
                self.load_errors[spec.label] = f"{NOT_RUN_HERE}{exc}"
            raise ModelLoadFailed(
                spec.label, self.load_errors[spec.label], skip=spec.label in self.unsupported
            ) from exc
        self.load_counts[spec.label] = self.load_counts.get(spec.label, 0) + 1
        info = dict(backend.info or {})
        info.setdefault("load_seconds", round(time.perf_counter() - started, 3))
        self.infos[spec.label] = info
        self._current = backend
        return backend

    def load_failure(self, failure: ModelLoadFailed, test_id: str) -> str:
        """The message a test of a model that did not load fails with: the whole reason in the first test's
        report (per process), a one-line reference to it in every other."""
        first = self.load_error_shown_at.setdefault(failure.label, test_id)
        if first == test_id:
            return f"model {failure.label!r} could not be loaded: {failure.reason}"
        return f"model {failure.label!r} could not be loaded (the reason is in the report of {first})"

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


def load_error_text(spec: ModelSpec, exc: Exception) -> str:
    """A loader's unexpected exception as one line or two: its type and message, never its traceback."""
    text = str(exc).strip() or "(no message)"
    return f"loading {spec.requested!r} raised {type(exc).__name__}: {text} (--full-trace shows where)"


def is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def free_accelerator_memory(backend: Backend) -> None:
    """Return cached blocks to the device after an out-of-memory error, before the halves are retried."""
    gc.collect()
    torch = sys.modules.get("torch")  # a CUDA backend has imported it; never import it here
    device = str((backend.info or {}).get("device", ""))
    if torch is not None and device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
