"""The gate's comparison as text: read from ``record["comparison"]`` (``gate/compare.py`` made it), shared by the
terminal summary and the Markdown summary."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_vleval.gate.units import change_text, format_value, metric_kind

__all__ = ["comparison_lines", "flip_parts", "flip_text", "gate_verdict", "metric_rows", "shorten"]

HEADER = ("metric", "baseline", "current", "change", "limit", "result")


def shorten(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _p_text(row: Mapping[str, Any], alpha: float | None) -> str:
    if row.get("p_value") is None:
        return ""
    text = f"p={row['p_value']:.3g}"
    if alpha is not None:
        text += " < " if row["p_value"] < alpha else " >= "
        text += f"{alpha:g}"
    return f"{text} ({row.get('test')})"


def metric_rows(model: Mapping[str, Any], alpha: float | None) -> list[tuple[str, str, str, str, str, str]]:
    """One model's before/after table: metric, baseline, current, change, limit, result."""
    rows = []
    for row in model.get("rows", []):
        kind = metric_kind(str(row["metric"]))
        result = str(row.get("verdict") or "")
        p = _p_text(row, alpha)
        if result == "missing":
            result = f"MISSING: {row.get('note')}"
        elif p:
            result = f"{result} {p}".strip()
        rule = row.get("rule")
        rows.append(
            (
                str(row["metric"]),
                format_value(kind, row.get("before")),
                format_value(kind, row.get("after")),
                change_text(kind, row.get("before"), row.get("after")),
                rule.split(":", 1)[1] if rule else "",
                result,
            )
        )
    return rows


def flip_parts(flip: Mapping[str, Any], quote: Callable[[str], str] = str) -> dict[str, str]:
    """A flipped case's texts, shortened and made safe where they are shown by `quote` (Markdown escapes them)."""
    return {
        "case": f"{quote(str(flip['suite']))}::{quote(str(flip['case_id']))}",
        "expected": quote(shorten(str(flip["expected"]), 40)),
        "before": f"{quote(shorten(str(flip['before'])))} ({float(flip['before_score']):.2f})",
        "after": f"{quote(shorten(str(flip['after'])))} ({float(flip['after_score']):.2f})",
    }


def flip_text(flip: Mapping[str, Any]) -> str:
    parts = flip_parts(flip)
    return f"{parts['case']}  expected {parts['expected']}  before {parts['before']}  now {parts['after']}"


def baseline_line(comparison: Mapping[str, Any]) -> str:
    run = comparison.get("baseline_run") or {}
    commit = (run.get("commit") or {}).get("id") if isinstance(run.get("commit"), Mapping) else None
    details = ", ".join(
        str(x) for x in (run.get("started"), f"commit {commit[:8]}" if commit else None, run.get("machine_id")) if x
    )
    return f"baseline: {comparison.get('baseline')}" + (f" ({details})" if details else "")


def comparison_lines(comparison: Mapping[str, Any], *, max_flips: int | None = 20) -> list[str]:
    """Per model, a before/after table and the flipped cases."""
    lines = [baseline_line(comparison)]
    for model in comparison.get("models", []):
        lines.append("")
        same = model["label"] == model["baseline_label"]
        lines.append(f"model {model['label']}" + ("" if same else f" vs baseline model {model['baseline_label']}"))
        table = [HEADER, *metric_rows(model, comparison.get("significance"))]
        widths = [max(len(r[i]) for r in table) for i in range(5)]
        for r in table:
            cells = [r[0].ljust(widths[0]), *(r[i].rjust(widths[i]) for i in (1, 2, 3)), r[4].ljust(widths[4]), r[5]]
            lines.append(("  " + "  ".join(cells)).rstrip())
        lines.extend(_flip_lines(model, max_flips))
    if comparison.get("unmatched"):
        lines.append(f"not compared (no model with that label in the baseline): {', '.join(comparison['unmatched'])}")
    lines.extend(f"note: {note}" for note in comparison.get("notes", []))
    return lines


def _flip_lines(model: Mapping[str, Any], max_flips: int | None) -> list[str]:
    lines = []
    for title, key in (("passed before, failed now", "worse"), ("failed before, passed now", "better")):
        flips: Sequence[Mapping[str, Any]] = model.get(key, [])
        lines.append(f"  {title}: {len(flips)}")
        shown = flips if max_flips is None else flips[:max_flips]
        lines.extend(f"    {flip_text(flip)}" for flip in shown)
        if len(shown) < len(flips):
            lines.append(f"    ... and {len(flips) - len(shown)} more (-v lists them all; the record has them)")
    if model.get("new_cases") or model.get("dropped_cases"):
        lines.append(
            f"  cases only in this run: {model.get('new_cases', 0)}, only in the baseline: "
            f"{model.get('dropped_cases', 0)} (accuracy counts each run's own cases; the McNemar test only the "
            "paired ones)"
        )
    return lines


def gate_verdict(comparison: Mapping[str, Any]) -> tuple[str, list[str]]:
    """("failed" | "passed" | "no limits", the lines that say so)."""
    if not comparison.get("limits"):
        return "no limits", ["vleval gate: no limits set (--vl-compare-fail): comparison only"]
    if comparison.get("failed"):
        return "failed", ["vleval gate FAILED:", *(f"  {failure}" for failure in comparison.get("failures", []))]
    return "passed", [f"vleval gate passed ({','.join(comparison['limits'])})"]
