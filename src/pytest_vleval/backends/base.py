"""What every backend shares: the model spec, a conversation, failures, and the :class:`Backend` protocol.

No torch here: the backends that need it (``hf.py``) import it when a model is loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict, runtime_checkable

__all__ = [
    "Backend",
    "BackendBase",
    "Conversation",
    "GenerationFailure",
    "ModelLoadError",
    "ModelSpec",
    "TimedAnswer",
    "UnsupportedConversation",
    "UnsupportedPrecision",
    "backend_type",
    "complete_backend",
]


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for (`requested`) and where it loads from (`source`)."""

    requested: str
    source: str  # a local directory or a hub id
    label: str  # the test-id suffix: test_x.yaml::case[label]
    is_local: bool
    precision: str | None = None  # a precision variant (MODEL@int8): fp32, bf16, fp16, int8, int4; None: the run's

    @property
    def path(self) -> Path | None:
        return Path(self.source) if self.is_local else None


@dataclass(frozen=True)
class Conversation:
    """One generation: the images, earlier turns (question, the model's own answer), the new question."""

    images: tuple[Path, ...]
    question: str
    history: tuple[tuple[str, str], ...] = ()
    system: str | None = None
    max_new_tokens: int = 32
    min_pixels: int | None = None  # image resolution limits; None: the model's own
    max_pixels: int | None = None


@dataclass(frozen=True)
class GenerationFailure:
    """Returned by a backend in place of an answer when one conversation failed and the others did not
    (e.g. one HTTP request that failed after its retries). The message is shown in the case's failure."""

    message: str


@dataclass(frozen=True)
class UnsupportedConversation(GenerationFailure):
    """Returned in place of an answer when the model's family cannot take the conversation at all (two images
    for BLIP-2, a dialogue without a chat template): the case is skipped with this message, not failed."""


class TimedAnswer(TypedDict, total=False):
    """One conversation answered alone and timed by stage (seconds; token counts where the backend knows them).

    Only ``answer`` and ``total_s`` are always there; ``ttft_s`` runs from the request's start (preprocessing
    included) to the first new token.
    """

    answer: str | GenerationFailure
    total_s: float
    prepare_s: float
    generate_s: float
    decode_s: float
    ttft_s: float | None
    input_tokens: int | None
    output_tokens: int | None


class ModelLoadError(Exception):
    """A model could not be loaded; the message says which and why."""


class UnsupportedPrecision(ModelLoadError):
    """A precision variant this machine or this model cannot run (fp16 without a GPU, int4 for a family the
    quantisation backend cannot take): its cases are skipped with the reason, not failed."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model that answers conversations: everything the predictor and the benchmarks ask of one.

    Implement ``spec``, ``info``, ``generate`` and ``close``; subclass :class:`BackendBase` for the rest. A hook
    may also return an object with the first four only: :func:`complete_backend` gives it the defaults.
    """

    @property
    def spec(self) -> ModelSpec:
        """What the user asked for and where it loaded from."""

    @property
    def info(self) -> dict[str, object]:
        """Device, dtype, load seconds, fingerprint... (shown in the summary, kept in the record)."""

    @property
    def preferred_batch_size(self) -> int | None:
        """Conversations per batch that suit this backend (an HTTP server's concurrency); None: the device's."""

    @property
    def fingerprint(self) -> str | None:
        """What identifies this backend's answers for the answer cache (it changes whenever they may); None: not
        cached."""

    def generate(self, conversations: Sequence[Conversation]) -> Sequence[str | GenerationFailure]:
        """Greedy answers, one per conversation, in order.

        Raising fails the whole batch: the caller halves it and retries, down to single conversations.
        A :class:`GenerationFailure` in the list fails that conversation alone; an
        :class:`UnsupportedConversation` skips its case.
        """

    def input_length(self, conversation: Conversation) -> int | None:
        """The conversation's input length in tokens, images counted (batches are sorted by it); None: unknown."""

    def unsupported(self, conversation: Conversation) -> str | None:
        """Why this model cannot take `conversation` at all (asked before a dialogue's first turn), or None."""

    def vision_tokens(self, conversation: Conversation) -> int | None:
        """How many prompt tokens the conversation's images become (after its pixel limits); None: unknown."""

    def generate_timed(self, conversation: Conversation) -> TimedAnswer:
        """One conversation alone, timed for the latency benchmarks (``bench/latency.py``)."""

    def close(self) -> None:
        """Free the model (the pool calls this before loading the next one)."""


class BackendBase:
    """Defaults for the optional capabilities of :class:`Backend`; backends subclass it."""

    spec: ModelSpec
    info: dict[str, object]
    preferred_batch_size: int | None = None
    fingerprint: str | None = None

    def generate(self, conversations: Sequence[Conversation]) -> Sequence[str | GenerationFailure]:
        raise NotImplementedError

    def input_length(self, conversation: Conversation) -> int | None:
        return None

    def unsupported(self, conversation: Conversation) -> str | None:
        return None

    def vision_tokens(self, conversation: Conversation) -> int | None:
        return None

    def generate_timed(self, conversation: Conversation) -> TimedAnswer:
        return timed_end_to_end(self.generate, conversation)

    def close(self) -> None:
        pass


def timed_end_to_end(
    generate: Callable[[Sequence[Conversation]], Sequence[str | GenerationFailure]], conversation: Conversation
) -> TimedAnswer:
    """``generate`` on a batch of one, timed end to end (for backends that cannot time the stages)."""
    started = time.perf_counter()
    answer = generate([conversation])[0]
    return {"answer": answer, "total_s": time.perf_counter() - started}


class _CompletedBackend:
    """A hook's backend with only ``spec``, ``info``, ``generate`` and ``close``: the optional capabilities it
    lacks get :class:`BackendBase`'s defaults. This is the one place that asks an object what it has."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.spec: ModelSpec = backend.spec

    @property
    def info(self) -> dict[str, object]:
        info: dict[str, object] = getattr(self._backend, "info", None) or {}
        return info

    def _own(self, name: str) -> Any:
        value = getattr(self._backend, name, None)
        return value if callable(value) else None

    @property
    def preferred_batch_size(self) -> int | None:
        value = getattr(self._backend, "preferred_batch_size", None)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    @property
    def fingerprint(self) -> str | None:
        value = getattr(self._backend, "fingerprint", None)
        return str(value) if value and not callable(value) else None

    def generate(self, conversations: Sequence[Conversation]) -> Sequence[str | GenerationFailure]:
        answers: Sequence[str | GenerationFailure] = self._backend.generate(conversations)
        return answers

    def input_length(self, conversation: Conversation) -> int | None:
        own = self._own("input_length")
        return None if own is None else int(own(conversation))

    def unsupported(self, conversation: Conversation) -> str | None:
        own = self._own("unsupported")
        return None if own is None else own(conversation)

    def vision_tokens(self, conversation: Conversation) -> int | None:
        own = self._own("vision_tokens")
        value = None if own is None else own(conversation)
        return None if value is None else int(value)

    def generate_timed(self, conversation: Conversation) -> TimedAnswer:
        own = self._own("generate_timed")
        return timed_end_to_end(self.generate, conversation) if own is None else own(conversation)

    def close(self) -> None:
        own = self._own("close")
        if own is not None:
            own()

    def __getattr__(self, name: str) -> Any:  # the hook's own attributes stay reachable (the vl_model fixture)
        if name == "_backend":
            raise AttributeError(name)
        return getattr(self._backend, name)

    def __repr__(self) -> str:
        return repr(self._backend)


def complete_backend(backend: Any) -> Backend:
    """``backend`` as a full :class:`Backend`: as it is when it has every member, else with the defaults."""
    for member in ("spec", "generate"):
        if not hasattr(backend, member):
            raise TypeError(f"{type(backend).__name__} is not a backend: it has no {member!r} (see hookspec.py)")
    if isinstance(backend, Backend):
        return backend
    return _CompletedBackend(backend)


def backend_type(backend: Backend) -> type:
    """The class of the backend a hook returned (not of the wrapper :func:`complete_backend` may have added)."""
    return type(backend._backend) if isinstance(backend, _CompletedBackend) else type(backend)
