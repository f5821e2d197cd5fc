"""The regression gate: compare this run's record with a baseline record, metric by metric and case by case.

``--vl-compare-fail`` takes comma-separated ``METRIC[@WHERE]:LIMIT`` items, for example
``accuracy:-2%,accuracy@test_colour.yaml:-5pp,CIDEr@shapes:-0.05,latency_p50:+15%,memory_peak:+200MB``.

- ``LIMIT`` is how far the metric may move in its bad direction before the run fails: ``%`` is relative to the
  baseline value, ``pp`` is percentage points (rates only), a plain number is in the metric's own unit (a rate or
  score from 0 to 1, seconds, bytes, tokens per second), ``ms``/``s`` are times and ``KB``...``GiB`` sizes.
- The sign is optional; when given it must point the bad way (``-`` for accuracy and scores, ``+`` for latency
  and memory), so that ``accuracy:+2%`` (a typo that would never fire) is refused.
- ``WHERE`` names a case file (``accuracy@test_colour.yaml``, matched by path or file name, ``*`` for each) or a
  golden caption set (``CIDEr@shapes``) — or a precision variant of this run (``accuracy@int4:-5pp``,
  ``latency_p50@int8:+20%``): that variant is compared with the reference variant of the same run
  (``--vl-precisions``), without a baseline.

With ``--vl-compare-significance=ALPHA`` an accuracy drop fails only when the exact McNemar test on the paired
cases (passed/failed in both runs) gives p < ALPHA, and a score drop (mean_score, CIDEr, ROUGE_L, SPICE) only when
a paired bootstrap on per-case (per-image) scores does. A metric the limits name but a run lacks fails the gate.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_vleval.backends.precision import PRECISIONS
from pytest_vleval.gate.units import HIGHER, METRICS, UNITS
from pytest_vleval.records.schema import CAPTION_METRICS

__all__ = ["BENCHMARK_METRICS", "SUITE_METRICS", "Rule", "SpecError", "needs_benchmark", "parse_fail_spec"]

SUITE_METRICS = ("accuracy", "mean_score")
BENCHMARK_METRICS = tuple(
    m for m in METRICS if m.split("_")[0] in ("latency", "ttft", "prepare", "generate") or m == "tokens_per_s"
)
_UNIT_KINDS = {"pp": ("rate",), "ms": ("seconds",), "s": ("seconds",)}
_ITEM_RE = re.compile(
    r"^(?P<metric>[A-Za-z_0-9]+)(?:@(?P<where>[^:]+))?:"
    r"(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<unit>[A-Za-z%]*)$"
)


class SpecError(ValueError):
    """A ``--vl-compare-fail`` spec that cannot be parsed; the message names the item and what is wrong."""


@dataclass(frozen=True)
class Rule:
    """One ``METRIC[@WHERE]:LIMIT`` item of ``--vl-compare-fail``."""

    text: str
    metric: str
    where: str | None
    limit: float  # >= 0: how far the metric may move the bad way (a fraction when relative)
    relative: bool

    @property
    def direction(self) -> str:
        return METRICS[self.metric][0]

    @property
    def kind(self) -> str:
        return METRICS[self.metric][1]

    @property
    def name(self) -> str:
        return self.metric if self.where is None else f"{self.metric}@{self.where}"

    @property
    def precision(self) -> str | None:
        """The precision variant an in-run rule (``accuracy@int4:-5pp``) compares with the reference, or None."""
        return self.where if self.where in PRECISIONS else None

    @property
    def limit_text(self) -> str:
        return self.text.split(":", 1)[1]


def parse_fail_spec(spec: str, flag: str = "--vl-compare-fail") -> tuple[Rule, ...]:
    """Parse ``--vl-compare-fail``; every problem raises :class:`SpecError` naming the flag and the item."""
    rules = []
    items = [item.strip() for item in spec.split(",")]
    if not any(items):
        raise SpecError(f"{flag}={spec!r}: empty; expected items like accuracy:-2%,latency_p50:+15%")
    for item in items:
        if not item:
            raise SpecError(f"{flag}={spec!r}: empty item between commas")
        rules.append(_parse_item(item, flag))
    return tuple(rules)


def _parse_item(item: str, flag: str) -> Rule:
    match = _ITEM_RE.match(item)
    if match is None:
        raise SpecError(
            f"{flag}: {item!r}: expected METRIC[@SUITE_OR_SET]:LIMIT, e.g. accuracy:-2% or latency_p50:+15%"
        )
    metric, where, sign, unit = match["metric"], match["where"], match["sign"], match["unit"]
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, list(METRICS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"{flag}: {item!r}: unknown metric {metric!r}{hint}; known: {', '.join(METRICS)}")
    direction, kind = METRICS[metric]
    if where is not None:
        where = where.strip()
        if where.lower() in PRECISIONS:
            where = where.lower()
        elif metric not in SUITE_METRICS and metric not in CAPTION_METRICS:
            raise SpecError(
                f"{flag}: {item!r}: only {', '.join(SUITE_METRICS)} (per case file) and caption metrics "
                "(per golden set) take @WHERE"
            )
        if not where:
            raise SpecError(f"{flag}: {item!r}: empty name after '@'")
    if unit not in UNITS:
        raise SpecError(f"{flag}: {item!r}: unknown unit {unit!r}; use %, pp, ms, s, B, KB, MB, GB, KiB, MiB or GiB")
    if unit in _UNIT_KINDS and kind not in _UNIT_KINDS[unit]:
        raise SpecError(f"{flag}: {item!r}: {unit!r} does not apply to {metric} (a {kind})")
    if unit.endswith("B") and kind != "bytes":
        raise SpecError(f"{flag}: {item!r}: {unit!r} is a size; {metric} is not a memory metric")
    bad_sign = "-" if direction == HIGHER else "+"
    if sign and sign != bad_sign:
        worse = "falls" if direction == HIGHER else "rises"
        raise SpecError(
            f"{flag}: {item!r}: {metric} regresses when it {worse}; the limit is written "
            f"{metric}{'@' + where if where else ''}:{bad_sign}{match['number']}{unit}"
        )
    number = float(match["number"])
    relative = unit == "%"
    limit = number / 100 if relative else number * UNITS[unit]
    return Rule(text=item, metric=metric, where=where, limit=limit, relative=relative)


def needs_benchmark(rules: Sequence[Rule]) -> list[str]:
    """The rules that only a run with ``--vl-benchmark`` can check."""
    return [rule.text for rule in rules if rule.metric in BENCHMARK_METRICS]
