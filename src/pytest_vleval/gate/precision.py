"""The precision variants of a run (``precision_groups``) and the in-run precision gate:
``--vl-compare-fail=accuracy@int4:-5pp`` compares each model's int4 variant with its reference variant of the same
run (``--vl-precision-reference``, else the model's first), under the same rules,
significance tests and flip lists as a comparison with a saved baseline (``compare.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_vleval.backends.precision import split_precision
from pytest_vleval.gate.compare import Comparison, ModelComparison, Row, compare_records
from pytest_vleval.gate.rules import Rule

__all__ = ["PrecisionGroup", "compare_precisions", "precision_groups"]


@dataclass
class PrecisionGroup:
    model: str  # the model's label without its precision
    reference: str  # the reference variant's label
    variants: list[str] = field(default_factory=list)  # every variant's label, the reference first


def precision_groups(record: Mapping[str, Any], reference: str | None = None) -> list[PrecisionGroup]:
    """The models of a record that ran at two or more precisions, in run order. ``reference`` is a precision
    name (``fp32``); a model without that variant is compared with its first."""
    groups: dict[str, PrecisionGroup] = {}
    for model in record.get("models") or []:
        label = str(model.get("label", ""))
        base, precision = split_precision(label)
        if precision is None:
            continue
        group = groups.setdefault(base, PrecisionGroup(model=base, reference=label))
        group.variants.append(label)
        if precision == reference:
            group.reference = label
    out = []
    for group in groups.values():
        if len(group.variants) < 2:
            continue
        group.variants.remove(group.reference)
        group.variants.insert(0, group.reference)
        out.append(group)
    return out


def _as(record: Mapping[str, Any], label: str, renamed: str) -> dict[str, Any]:
    """The part of ``record`` that belongs to model ``label``, relabelled ``renamed`` (so two variants pair)."""
    return {
        "run": record.get("run", {}),
        "models": [{**m, "label": renamed} for m in record.get("models") or [] if m.get("label") == label],
        "cases": [{**c, "model": renamed} for c in record.get("cases") or [] if c.get("model") == label],
        "golden": [{**g, "model": renamed} for g in record.get("golden") or [] if g.get("model") == label],
        "benchmarks": [{**b, "model": renamed} for b in record.get("benchmarks") or [] if b.get("model") == label],
    }


def compare_precisions(
    record: Mapping[str, Any], rules: Sequence[Rule], *, reference: str | None = None, alpha: float | None = None
) -> Comparison:
    """Every variant a rule names against its model's reference variant; one :class:`Comparison` for the run."""
    result = Comparison(baseline="the reference precision (same run)", rules=tuple(rules), alpha=alpha)
    groups = precision_groups(record, reference)
    for group in groups:
        for variant in group.variants[1:]:
            precision = split_precision(variant)[1]
            mine = [dataclasses.replace(rule, where=None) for rule in rules if rule.precision == precision]
            if not mine:
                continue
            part = compare_records(
                _as(record, group.reference, variant), _as(record, variant, variant), mine, alpha=alpha
            )
            for model in part.models:
                model.baseline_label = group.reference
                result.models.append(model)
            result.notes.extend(n for n in part.notes if n not in result.notes)
    named = {rule.precision for rule in rules}
    present = {split_precision(v)[1] for g in groups for v in g.variants[1:]}
    for missing in sorted(p for p in named - present if p is not None):
        why = f"no model of this run ran at {missing} besides its reference precision"
        rows = [
            Row(metric=r.name, before=None, after=None, rule=r.text, breached=True, verdict="missing", note=why)
            for r in rules
            if r.precision == missing
        ]
        result.models.append(ModelComparison(label=f"@{missing}", baseline_label="-", rows=rows))
    return result
