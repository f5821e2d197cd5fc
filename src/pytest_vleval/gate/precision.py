"""The in-run precision gate: ``--vl-compare-fail=accuracy@int4:-5pp`` compares each model's int4 variant with its
reference variant of the same run (``--vl-precision-reference``, else the model's first), under the same rules,
significance tests and flip lists as a comparison with a saved baseline (``compare.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vleval.gate.compare import Comparison, ModelComparison, Row, compare_records
from pytest_vleval.gate.rules import Rule
from pytest_vleval.report.precision import precision_groups, split_variant

__all__ = ["compare_precisions"]


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
            precision = split_variant(variant)[1]
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
    present = {split_variant(v)[1] for g in groups for v in g.variants[1:]}
    for missing in sorted(p for p in named - present if p is not None):
        why = f"no model of this run ran at {missing} besides its reference precision"
        rows = [
            Row(metric=r.name, before=None, after=None, rule=r.text, breached=True, verdict="missing", note=why)
            for r in rules
            if r.precision == missing
        ]
        result.models.append(ModelComparison(label=f"@{missing}", baseline_label="-", rows=rows))
    return result
