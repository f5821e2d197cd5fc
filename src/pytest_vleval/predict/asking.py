"""How a model is asked a case: the text of each turn as sent (the task's format instruction, or the model
family's own grounding wording for ``refer:``) and the image-resolution limits. The answer cache key, the
generation, the latency items and the record all take the sent text from here, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_vleval.backends.base import Backend, Conversation
from pytest_vleval.backends.families import GENERIC, FamilyAdapter
from pytest_vleval.cases.casefile import Case

__all__ = ["Asking"]


@dataclass(frozen=True)
class Asking:
    """A model's family (for ``refer:`` wording) and the run's pixel limits (a case's own limits win)."""

    family: FamilyAdapter = GENERIC
    min_pixels: int | None = None
    max_pixels: int | None = None
    # Each case's questions, rendered once (the cache key, the batch order, the generation and the record all
    # ask): by the case object's id, with the case kept beside them so that an id reused by a later object never
    # matches (two flat dicts: no container per case for the garbage collector to walk).
    _sent: dict[int, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)
    _sent_for: dict[int, Case] = field(default_factory=dict, compare=False, repr=False)

    def questions(self, case: Case) -> tuple[str, ...]:
        """Each turn's text as sent to this model."""
        key = id(case)
        if self._sent_for.get(key) is case:
            return self._sent[key]
        sent = tuple(turn.sent(self.family.refer_prompt) for turn in case.turns)
        self._sent[key], self._sent_for[key] = sent, case
        return sent

    def forget(self, case: Case) -> None:
        """Drop `case`'s rendered questions (its test has them): asked again, they are rendered again."""
        key = id(case)
        if self._sent_for.get(key) is case:
            del self._sent[key], self._sent_for[key]

    def pixels(self, case: Case) -> tuple[int | None, int | None]:
        """(min_pixels, max_pixels) for `case`: the case's (or its file's), else the run's; None: the model's."""
        low = case.min_pixels if case.min_pixels is not None else self.min_pixels
        high = case.max_pixels if case.max_pixels is not None else self.max_pixels
        return low, high

    def conversation(self, case: Case, turn: int, answers: list[str], max_new_tokens: int) -> Conversation:
        """Turn `turn` of `case`, after the model's own answers to the turns before it (a CircularEval case's
        turns are rotations of one question, each asked on its own)."""
        questions = self.questions(case)
        low, high = self.pixels(case)
        earlier = 0 if case.circular else turn
        return Conversation(
            images=case.images,
            question=questions[turn],
            history=tuple((questions[i], answers[i]) for i in range(earlier)),
            system=case.system,
            max_new_tokens=max_new_tokens,
            min_pixels=low,
            max_pixels=high,
        )

    def vision_tokens(self, backend: Backend, case: Case, max_new_tokens: int) -> int | None:
        """The backend's count of the case's image tokens in its first turn, or None (unknown, or it could not
        say)."""
        try:
            return backend.vision_tokens(self.conversation(case, 0, [], max_new_tokens))
        except Exception:
            return None

    def probe(self, case: Case, max_new_tokens: int) -> Conversation:
        """The last turn with empty earlier answers: what a backend is asked before a dialogue starts."""
        last = len(case.turns) - 1
        return self.conversation(case, last, [""] * last, max_new_tokens)
