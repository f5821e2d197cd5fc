"""A Markdown summary of a run record, for CI job pages (``$GITHUB_STEP_SUMMARY``) and pull-request comments:
the gate's verdict, each model's results, the model comparison table and, when the run was compared, the
before/after table and the flipped cases. Every text from a case file, a model or a record is escaped: an answer
cannot add markup, links or HTML to the page."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vleval.report.comparison import HEADER, baseline_line, flip_parts, gate_verdict, metric_rows
from pytest_vleval.report.table import BEST_MARK, build_table, format_cell

__all__ = ["MAX_FLIPS", "escape", "render_markdown"]

MAX_FLIPS = 50  # flipped cases listed per model and direction; the record has them all
# Inside a table cell or after a list marker only these can start markup ("[" escaped: no link can form).
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape(text: object) -> str:
    """Text safe inside a Markdown paragraph or table cell: HTML and Markdown syntax shown as characters."""
    value = " ".join(str(text).split())  # newlines would end a table row
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def render_markdown(record: Mapping[str, Any]) -> str:
    comparison = record.get("comparison")
    verdict = gate_verdict(comparison)[0] if isinstance(comparison, Mapping) else "not compared"
    title = {"failed": "gate FAILED", "passed": "gate passed", "no limits": "compared (no limits)"}.get(
        verdict, "not compared"
    )
    lines = [f"## pytest-vleval: {title}", ""]
    if isinstance(comparison, Mapping) and comparison.get("failures"):
        lines.extend(f"- **{escape(failure)}**" for failure in comparison["failures"])
        lines.append("")
    lines.extend(_models(record))
    if len(record.get("models", [])) >= 2:
        lines.extend(_comparison_table(record))
    if isinstance(comparison, Mapping):
        lines.extend(_baseline(comparison))
    return "\n".join(lines).rstrip() + "\n"


def _models(record: Mapping[str, Any]) -> list[str]:
    rows = []
    for model in record.get("models", []):
        evaluation = model.get("eval") or {}
        golden = ", ".join(
            f"{escape(name)} CIDEr {float(scores['CIDEr']):.3f}"
            for name, scores in (model.get("golden") or {}).items()
            if "CIDEr" in scores
        )
        rows.append(
            [
                escape(model["label"]),
                str(evaluation.get("cases", 0)),
                str(evaluation.get("passed", 0)),
                format_cell("rate", evaluation.get("accuracy")),
                format_cell("score", evaluation.get("mean_score")),
                golden or "-",
                escape((model.get("load") or {}).get("error") or ""),
            ]
        )
    if not rows:
        return ["No model ran.", ""]
    header = ["model", "cases", "passed", "pass rate", "mean score", "golden sets", "load error"]
    return [*_table(header, rows, right=(1, 2, 3, 4)), ""]


def _comparison_table(record: Mapping[str, Any]) -> list[str]:
    cost = ((record.get("run") or {}).get("options") or {}).get("gpu_cost_per_hour")
    table = build_table(record, cost_per_hour=cost)
    if not table.columns:
        return []
    best = [table.best(i) for i in range(len(table.columns))]
    header = ["model", *(escape(f"{c.group} {c.name}".strip()) for c in table.columns)]
    rows = []
    for r, model in enumerate(table.models):
        cells = [escape(model)]
        for i, column in enumerate(table.columns):
            text = escape(format_cell(column.kind, table.values[r][i]))
            cells.append(f"**{text}{escape(BEST_MARK)}**" if r in best[i] else text)
        rows.append(cells)
    notes = [f"- {escape(note)}" for note in table.notes]
    return ["### Models compared", "", *_table(header, rows, right=range(1, len(header))), "", *notes, ""]


def _baseline(comparison: Mapping[str, Any]) -> list[str]:
    lines = [f"### Compared with {escape(baseline_line(comparison).removeprefix('baseline: '))}", ""]
    for model in comparison.get("models", []):
        same = model["label"] == model["baseline_label"]
        versus = "" if same else f" (baseline model {escape(model['baseline_label'])})"
        lines.append(f"#### {escape(model['label'])}{versus}")
        lines.append("")
        rows = [[escape(cell) for cell in row] for row in metric_rows(model, comparison.get("significance"))]
        lines.extend(_table([*HEADER], rows, right=(1, 2, 3)))
        lines.append("")
        for title, key in (("Passed before, failed now", "worse"), ("Failed before, passed now", "better")):
            flips = model.get(key, [])
            lines.append(f"{title}: {len(flips)}")
            lines.append("")
            lines.extend(_flip(flip) for flip in flips[:MAX_FLIPS])
            if len(flips) > MAX_FLIPS:
                lines.append(f"- ... and {len(flips) - MAX_FLIPS} more (the run record lists them all)")
            if flips:
                lines.append("")
    for note in comparison.get("notes", []):
        lines.append(f"> note: {escape(note)}")
    return lines


def _flip(flip: Mapping[str, Any]) -> str:
    parts = flip_parts(flip, escape)
    return f"- {parts['case']}: expected {parts['expected']}; before {parts['before']}, now {parts['after']}"
