"""The precision table: a model's precision variants (``--vl-precisions``, ``MODEL@int8``) side by side, each
against the reference variant (``--vl-precision-reference``, else the model's first): accuracy and mean score
overall and per case file with their deltas, caption metrics, the measured weight bytes and their ratio, peak
memory, latency, tokens per second, throughput and, given a price and a volume, the monthly cost; then the cases
that flipped between the reference and each variant.

Built from the run record (docs/records.md) like the comparison table (``table.py``), whose layout it uses; shown
in the terminal summary, the HTML report and ``python -m pytest_vleval report``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_vleval.backends.precision import split_precision
from pytest_vleval.gate.precision import PrecisionGroup
from pytest_vleval.report.table import (
    CAPTION_NAMES,
    HIGHER,
    LOWER,
    Column,
    ComparisonTable,
    column_adder,
    metric_value,
    short_names,
)

__all__ = ["PrecisionView", "build_precision_table", "flip_lines", "flipped_cases", "gate_lines", "precision_views"]

DAYS_PER_MONTH = 30
NEUTRAL = ""  # a column with no best value (deltas, ratios)


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def build_precision_table(
    record: Mapping[str, Any],
    group: PrecisionGroup,
    *,
    cost_per_hour: float | None = None,
    requests_per_day: float | None = None,
) -> ComparisonTable:
    """One row per variant of ``group`` (the reference first)."""
    by_label = {str(m.get("label")): m for m in record.get("models") or []}
    models = [by_label.get(label) or {} for label in group.variants]
    reference = by_label.get(group.reference) or {}
    table = ComparisonTable(models=list(group.variants))
    add = column_adder(table)

    def with_delta(group_name: str, name: str, metric: str, kind: str, delta_kind: str, title: str) -> None:
        values = [metric_value(m, metric) for m in models]
        add(Column(group_name, name, kind, HIGHER, title), values)
        base = metric_value(reference, metric)
        add(
            Column(group_name, "d" + name, delta_kind, NEUTRAL, f"{title}: change vs {group.reference}"),
            [None if m is reference else _delta(v, base) for m, v in zip(models, values, strict=True)],
        )

    weights = [_weight_bytes(m) for m in models]
    add(Column("weights", "bytes", "bytes_exact", LOWER, "bytes of the loaded weights, measured"), weights)
    ref_weights = _weight_bytes(reference)
    add(
        Column("weights", f"x {split_precision(group.reference)[1]}", "ratio", NEUTRAL, "weight bytes / reference's"),
        [None if w is None or not ref_weights else w / ref_weights for w in weights],
    )
    with_delta("all", "pass", "accuracy", "rate", "delta_rate", "cases passed / cases")
    with_delta("all", "score", "mean_score", "score", "delta_score", "mean case score")
    suites = sorted({suite for m in models for suite in (m.get("suites") or {})})
    for suite, short in short_names(suites).items():
        with_delta(short, "pass", f"accuracy@{suite}", "rate", "delta_rate", f"{suite}: cases passed / cases")
        add(
            Column(short, "score", "score", HIGHER, f"{suite}: mean case score"),
            [metric_value(m, f"mean_score@{suite}") for m in models],
        )
    for entry in sorted({str(g.get("set")) for g in record.get("golden") or []}):
        for metric in ("CIDEr", "Bleu_4", "METEOR", "ROUGE_L"):
            name = CAPTION_NAMES.get(metric, metric)
            with_delta(entry, name, f"{metric}@{entry}", "caption", "delta_score", f"golden set {entry}: {metric}")
    _speed_columns(models, add, table.notes, cost_per_hour, requests_per_day)
    table.notes.insert(0, f"reference: {group.reference}; d = change vs the reference")
    if all(w is None for w in weights):
        table.notes.append(
            "weights, memory and speed: not measured: every answer came from the answer cache, so no variant was "
            "loaded (--vl-refresh regenerates them)"
        )
    return table


def _weight_bytes(model: Mapping[str, Any] | None) -> float | None:
    value = ((model or {}).get("backend") or {}).get("weight_bytes")
    return None if value is None else float(value)


def _speed_columns(
    models: Sequence[Mapping[str, Any]],
    add: Any,
    notes: list[str],
    cost_per_hour: float | None,
    requests_per_day: float | None,
) -> None:
    add(
        Column("", "peak mem", "bytes", LOWER, "the process's RSS peak (CUDA allocator peak on a GPU)"),
        [metric_value(m, "memory_peak") for m in models],
    )
    benchmarked = any(metric_value(m, "latency_p50") is not None for m in models)
    name = "latency_p50" if benchmarked else "case_seconds_p50"
    add(
        Column("", "p50", "seconds", LOWER, "latency p50" + ("" if benchmarked else " per case in batches")),
        [metric_value(m, name) for m in models],
    )
    add(
        Column("", "tok/s", "tokens", HIGHER, "output tokens per second"),
        [metric_value(m, "tokens_per_s") for m in models],
    )
    per_hour = [None if (v := metric_value(m, "cases_per_s")) is None else v * 3600 for m in models]
    add(Column("", "cases/h", "per_hour", HIGHER, "cases answered per hour of generation (batched)"), per_hour)
    if cost_per_hour is None or requests_per_day is None:
        return
    monthly = [None if not rate else requests_per_day * DAYS_PER_MONTH / rate * cost_per_hour for rate in per_hour]
    add(Column("", "$/month", "usd", LOWER, f"{requests_per_day:,.0f} requests a day at ${cost_per_hour:g}/h"), monthly)
    notes.append(
        f"$/month: {requests_per_day:,.0f} requests a day x {DAYS_PER_MONTH} days / cases per hour x "
        f"${cost_per_hour:g} per hour: the machine-hours that volume needs at the measured (batched) throughput; "
        f"a machine kept on all month costs ${cost_per_hour * 24 * DAYS_PER_MONTH:,.0f}"
    )


@dataclass(frozen=True)
class Flipped:
    variant: str
    case: str  # suite::case_id
    now: str  # "passed" or "failed" in the variant (the reference gave the other)
    reference_answer: str
    answer: str


def _answer(case: Mapping[str, Any]) -> str:
    turns = case.get("turns") or []
    return " / ".join(str(t.get("answer")) for t in turns if t.get("answer") is not None) or "(no answer)"


def flipped_cases(record: Mapping[str, Any], group: PrecisionGroup) -> list[Flipped]:
    """Cases whose verdict differs between the reference variant and another (skipped cases left out)."""
    by_model: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {}
    for case in record.get("cases") or []:
        if case.get("outcome") in ("skipped", "error"):
            continue
        by_model.setdefault(str(case.get("model")), {})[(str(case["suite"]), str(case["case_id"]))] = case
    reference = by_model.get(group.reference, {})
    out = []
    for variant in group.variants[1:]:
        for key, case in sorted(by_model.get(variant, {}).items()):
            before = reference.get(key)
            if before is not None and bool(before.get("passed")) != bool(case.get("passed")):
                now = "passed" if case.get("passed") else "failed"
                out.append(Flipped(variant, f"{key[0]}::{key[1]}", now, _answer(before), _answer(case)))
    return out


def flip_lines(record: Mapping[str, Any], group: PrecisionGroup, limit: int = 20) -> list[str]:
    """The flipped cases as text lines: one per case (at most ``limit`` per variant), or that none flipped."""
    flips = flipped_cases(record, group)
    lines = []
    for variant in group.variants[1:]:
        mine = [f for f in flips if f.variant == variant]
        if not mine:
            lines.append(f"{variant} vs {group.reference}: no case flipped")
            continue
        lost = sum(f.now == "failed" for f in mine)
        lines.append(
            f"{variant} vs {group.reference}: {len(mine)} flipped ({lost} now fail, {len(mine) - lost} now pass)"
        )
        for flip in mine[:limit]:
            lines.append(f"  {flip.now:6s} {flip.case}: {flip.reference_answer!r} -> {flip.answer!r}")
        if len(mine) > limit:
            lines.append(f"  ... and {len(mine) - limit} more (the record's cases list them all)")
    return lines


@dataclass(frozen=True)
class PrecisionView:
    group: PrecisionGroup
    table: ComparisonTable
    flips: list[str]


def precision_views(
    record: Mapping[str, Any], *, cost_per_hour: float | None = None, requests_per_day: float | None = None
) -> list[PrecisionView]:
    """Each model the record ran at several precisions (the run's reference precision applied): its table and
    its flipped cases, as every view (terminal, HTML, the report command) shows them."""
    from pytest_vleval.gate.precision import precision_groups

    reference = (record.get("precisions") or {}).get("reference")
    return [
        PrecisionView(
            group,
            build_precision_table(record, group, cost_per_hour=cost_per_hour, requests_per_day=requests_per_day),
            flip_lines(record, group),
        )
        for group in precision_groups(record, reference)
    ]


def gate_lines(record: Mapping[str, Any]) -> list[str]:
    """The in-run precision gate as text: each variant's rows against its reference, then the verdict (none
    without limits on a precision)."""
    from pytest_vleval.report.comparison import comparison_lines, gate_verdict

    comparison = (record.get("precisions") or {}).get("comparison")
    if not isinstance(comparison, Mapping):
        return []
    lines = [*comparison_lines(comparison, max_flips=0), "", *gate_verdict(comparison)[1]]
    return [line.replace("vleval gate", "vleval precision gate", 1) for line in lines]
