"""The types every scorer shares: a score with its explanation, what a scorer may know besides the text, and
the registry entry. Standard library only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ScoreResult:
    score: float
    detail: str = ""
    parse_failed: bool = False


@dataclass(frozen=True)
class ScoreContext:
    """What a scorer may need beyond the text: set by the runner and the model adapter."""

    image_sizes: tuple[tuple[int, int], ...] = ()  # original (width, height) per image
    box_convention: str | None = None  # how the model writes boxes; None means "qwen3"
    resized_sizes: tuple[tuple[int, int], ...] = ()  # model-input (width, height), for Qwen2.5-VL pixels
    refer: str | None = None  # the referring expression asked for (picks the best-labelled of several boxes)
    choices: tuple[tuple[str, str], ...] = ()  # a multiple-choice turn's (letter, option text) pairs


ScorerFunc = Callable[[str, tuple[Any, ...], Mapping[str, Any], ScoreContext], ScoreResult]


@dataclass(frozen=True)
class Scorer:
    name: str
    func: ScorerFunc
    low: float
    high: float
    default_threshold: float
    reference: Literal["expected", "answers", "box"]
    options: frozenset[str]
    description: str


def show(text: str, limit: int = 80) -> str:
    """repr() of a text, shortened so that a failure message stays readable."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def as_texts(reference: Sequence[Any]) -> tuple[str, ...]:
    # YAML turns `expected: 3` into an int; the scorers compare text.
    return tuple(item if isinstance(item, str) else str(item) for item in reference)
