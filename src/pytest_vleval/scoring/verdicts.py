"""Reading a judge's verdict: the strict format, its documented fallback, and nothing else.

Strict: a JSON object ``{"score": n, "reason": "..."}`` — the whole reply, or the first object in it (a fenced
```` ```json ```` block, or text around it, is fine); `score` an integer (``4`` or ``4.0`` or ``"4"``) within the
rubric's scale. Fallback, when no such object is there: ``score: 4`` / ``Score = 4``, ``4/5``, ``4 out of 5``, or
a reply that is only the number; the verdict then records ``parsed_by: fallback`` and the reply as its reason.
Anything else is unparsable: the case is an ERROR that shows the judge's raw output (the model is not blamed)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["Verdict", "VerdictError", "parse_verdict"]


class VerdictError(ValueError):
    """The judge's reply holds no score on the scale; `raw` is the reply."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True)
class Verdict:
    score: int
    reason: str
    parsed_by: str  # "json" or "fallback"


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_FALLBACKS = (
    re.compile(r"\bscore\b\s*[:=]?\s*(-?\d+(?:\.0+)?)\b", re.I),
    re.compile(r"(?<![\d.])(-?\d+(?:\.0+)?)\s*(?:/|out of)\s*(\d+)\b", re.I),
    re.compile(r"^\W*(-?\d+(?:\.0+)?)\W*$"),
)


def _objects(text: str) -> list[dict]:
    """Every JSON object that parses in `text`, fenced blocks first, in order."""
    decoder = json.JSONDecoder()
    found: list[dict] = []
    for chunk in [*_FENCE.findall(text), text]:
        start = chunk.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(chunk, start)
            except ValueError:
                value = None
            if isinstance(value, dict):
                found.append(value)
            start = chunk.find("{", start + 1)
    return found


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    return None


def parse_verdict(raw: str, low: int, high: int) -> Verdict:
    """The verdict in the judge's reply `raw` on the scale `low`..`high`; VerdictError when there is none."""
    scale = f"{low} to {high}"
    for obj in _objects(raw):
        if "score" not in obj:
            continue
        score = _integer(obj["score"])
        if score is None or not low <= score <= high:
            raise VerdictError(f'"score" is {obj["score"]!r}, not an integer from {scale}', raw)
        reason = obj.get("reason", "")
        return Verdict(score, reason if isinstance(reason, str) else json.dumps(reason), "json")
    for pattern in _FALLBACKS:
        match = pattern.search(raw.strip())
        if match is None:
            continue
        score = _integer(match.group(1))
        if pattern.groups == 2 and int(match.group(2)) != high:
            continue
        if score is not None and low <= score <= high:
            return Verdict(score, " ".join(raw.split()), "fallback")
    raise VerdictError(f'no {{"score": n, "reason": "..."}} with n from {scale} in the judge\'s reply', raw)
