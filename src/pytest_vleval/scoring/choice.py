"""Multiple choice as MMBench asks and scores it: the options under the question, the letter read from the answer.

The options are rendered the way LLaVA's and VLMEvalKit's MMBench evaluations render them (``A. text`` per line
after the question, then the format instruction of the ``choice`` task). The answer is read with VLMEvalKit's
rules (``vlmeval/utils/matching_util.py``, ``can_infer``): exactly one option letter standing as a word
(``B``, ``(B)``, ``B.``, ``The answer is B``), else exactly one option's text inside the answer; two letters, or
two options' texts, read as no answer. Before them one visible step of ours: NFKC and Chinese punctuation as
ASCII, with a space between a Chinese character and a Latin letter, so that ``答案：B`` and ``选B`` read as ``B``
(VLMEvalKit's rules alone miss them). The judge fallback VLMEvalKit also has is not here. Standard library only.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from pytest_vleval.scoring.base import ScoreContext, ScoreResult, show
from pytest_vleval.scoring.cjk import CJK_CHARS, to_ascii_punctuation

__all__ = ["infer_choice", "parse_choices", "render_options", "score_choice"]

Choices = tuple[tuple[str, str], ...]
_SEPARATORS = ".()[],:;!*#{}"  # VLMEvalKit's can_infer_option
_CJK_LATIN = re.compile(f"(?<=[{CJK_CHARS}])(?=[A-Za-z])|(?<=[A-Za-z])(?=[{CJK_CHARS}])")


def parse_choices(value: Any) -> Choices:
    """A case's ``choices``: a list (lettered A, B, C, ...) or a mapping letter -> text. Raises ValueError."""
    if isinstance(value, list):
        if not 2 <= len(value) <= 26:
            raise ValueError(f"expected 2 to 26 options, got {len(value)}")
        pairs = list(zip(string.ascii_uppercase, value, strict=False))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
        if len(pairs) < 2:
            raise ValueError(f"expected at least 2 options, got {len(pairs)}")
    else:
        raise ValueError(f"expected a list of options or a mapping letter -> option, got {type(value).__name__}")
    out = []
    for letter, text in pairs:
        if not (isinstance(letter, str) and len(letter) == 1 and letter in string.ascii_uppercase):
            raise ValueError(f"option letters are single capital letters A-Z, not {letter!r}")
        if isinstance(text, bool) or not isinstance(text, str | int | float) or not str(text).strip():
            raise ValueError(f"option {letter} must be a non-empty text, not {text!r}")
        out.append((letter, str(text)))
    return tuple(out)


def render_options(choices: Choices) -> str:
    """The options as sent after the question: ``\\nA. text`` per option (LLaVA's ``model_vqa_mmbench.py``)."""
    if not choices:
        return ""
    return "".join(f"\n{letter}. {text}" for letter, text in choices)


def _letters_standing_alone(answer: str, letters: list[str]) -> list[str]:
    for ch in _SEPARATORS:
        answer = answer.replace(ch, " ")
    words = {word.strip() for word in answer.split()}
    return [letter for letter in letters if letter in words]


def infer_choice(answer: str, choices: Choices) -> tuple[str | None, str]:
    """(the letter read from `answer`, how it was read) or (None, why not)."""
    prepared = _CJK_LATIN.sub(" ", to_ascii_punctuation(answer))
    letters = [letter for letter, _ in choices]
    found = _letters_standing_alone(prepared, letters)
    if len(found) == 1:
        return found[0], f"option letter {found[0]}"
    if len(found) > 1:
        return None, f"ambiguous: option letters {', '.join(found)} all appear"
    lowered = prepared.lower()
    texts = [letter for letter, text in choices if to_ascii_punctuation(text).lower() in lowered]
    if len(texts) == 1:
        return texts[0], f"the text of option {texts[0]}"
    if len(texts) > 1:
        return None, f"ambiguous: the texts of options {', '.join(texts)} all appear"
    return None, "no option letter or option text found"


def score_choice(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    if not context.choices:
        raise ValueError("scorer 'choice' needs the case's choices")
    letter, how = infer_choice(prediction, context.choices)
    expected = str(reference[0])
    if letter is None:
        return ScoreResult(0.0, f"{how} in {show(prediction)}", parse_failed=True)
    text = dict(context.choices)[letter]
    verdict = "right" if letter == expected else f"expected {expected}"
    return ScoreResult(float(letter == expected), f"read {letter} ({show(text)}) from {how}: {verdict}")
