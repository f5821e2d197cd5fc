"""What the HTML report shows, as plain data for its template (``templates/report.html.j2``): every value
comes from the record (or the inputs a report is made with), and the template escapes all of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_vleval.gate.units import change_text, format_value, metric_kind
from pytest_vleval.records.schema import CAPTION_METRICS
from pytest_vleval.report.table import ComparisonTable, format_cell, short_names
from pytest_vleval.report.terminal import dialogue_line, judge_line

if TYPE_CHECKING:
    from pytest_vleval.report.html import ReportInputs, Thumbnails

__all__ = ["cases_context", "comparison_context", "facts", "golden_context", "models_context", "table_context"]


def facts(record: Mapping[str, Any], inputs: ReportInputs) -> list[tuple[str, Any]]:
    run = record.get("run") or {}
    machine = run.get("machine") or {}
    versions = run.get("versions") or {}
    gpus = ", ".join(str(g.get("name")) for g in machine.get("gpus") or [] if isinstance(g, Mapping))
    items = [
        ("run", run.get("name")),
        ("started", run.get("started")),
        ("duration", f"{float(run['duration_s']):.1f} s" if run.get("duration_s") is not None else None),
        ("machine", " · ".join(str(x) for x in (machine.get("cpu"), gpus or None, run.get("machine_id")) if x)),
        ("commit", _commit_text(run.get("commit") or {})),
        (
            "versions",
            " · ".join(f"{k} {v}" for k in ("pytest-vleval", "torch", "transformers") if (v := versions.get(k))),
        ),
        ("command", " ".join(["pytest", *map(str, run.get("args") or [])]) if run.get("args") else None),
        ("exit status", run.get("exitstatus")),
        ("records", ", ".join(inputs.sources) or None),
    ]
    return [(name, value) for name, value in items if value not in (None, "")]


def _commit_text(commit: Mapping[str, Any]) -> str | None:
    if not commit.get("id"):
        return None
    dirty = " + uncommitted changes" if commit.get("dirty") else ""
    return f"{str(commit['id'])[:10]} ({commit.get('branch')}){dirty}"


def table_context(table: ComparisonTable) -> dict[str, Any]:
    """The comparison table; the best cell of each column is bold green and marked with ``*``."""
    if not table.models or not table.columns:
        return {"columns": []}
    groups: list[list[Any]] = []
    for column in table.columns:
        if groups and groups[-1][0] == column.group:
            groups[-1][1] += 1
        else:
            groups.append([column.group, 1])
    best = [table.best(i) for i in range(len(table.columns))]
    rows = [
        {
            "model": model,
            "cells": [
                {"text": format_cell(column.kind, table.values[r][i]), "best": r in best[i]}
                for i, column in enumerate(table.columns)
            ],
        }
        for r, model in enumerate(table.models)
    ]
    return {"groups": groups, "columns": table.columns, "rows": rows, "notes": table.notes}


def precisions_context(
    record: Mapping[str, Any], cost_per_hour: float | None, requests_per_day: float | None
) -> list[dict[str, Any]]:
    """Each model run at several precisions: its precision table and flipped cases."""
    from pytest_vleval.report.precision import precision_views

    views = precision_views(record, cost_per_hour=cost_per_hour, requests_per_day=requests_per_day)
    return [{**vars(view.group), "table": table_context(view.table), "flips": view.flips} for view in views]


def models_context(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for model in record.get("models", []):
        backend = model.get("backend") or {}
        load = model.get("load") or {}
        parameters = backend.get("parameters")
        rows.append(
            {
                "label": model.get("label"),
                "source": model.get("source"),
                "architecture": backend.get("architecture", ""),
                "size": f"{float(parameters) / 1e6:.1f} M" if isinstance(parameters, (int, float)) else "",
                "device": backend.get("device", ""),
                "dtype": backend.get("precision", backend.get("dtype", "")),
                "fingerprint": str(model.get("fingerprint") or "")[:12],
                "seconds": f"{float(load['seconds']):.1f} s" if load.get("seconds") is not None else "",
                "error": load.get("error") or "",
                # dialogue depth (mean and distribution) and who judged, as the terminal summary says them
                "notes": [
                    line.strip()
                    for line in (dialogue_line(model.get("dialogue")), judge_line(model.get("judge")))
                    if line
                ],
            }
        )
    return rows


def comparison_context(record: Mapping[str, Any]) -> dict[str, Any] | None:
    comparison = record.get("comparison")
    if not isinstance(comparison, Mapping):
        return None
    models = []
    for model in comparison.get("models", []):
        rows = []
        for row in model.get("rows", []):
            kind = metric_kind(str(row["metric"]))
            verdict = str(row.get("verdict") or "")
            rows.append(
                {
                    "metric": row["metric"],
                    "before": format_value(kind, row.get("before")),
                    "after": format_value(kind, row.get("after")),
                    "change": change_text(kind, row.get("before"), row.get("after")),
                    "limit": (row.get("rule") or ":").split(":", 1)[1],
                    "css": "bad" if row.get("breached") else "good" if verdict == "ok" else "",
                    "verdict": verdict,
                    "note": row.get("note") or "",
                }
            )
        same = model.get("baseline_label") == model.get("label")
        models.append(
            {
                "label": model.get("label"),
                "baseline_label": None if same else model.get("baseline_label"),
                "worse": len(model.get("worse", [])),
                "better": len(model.get("better", [])),
                "rows": rows,
            }
        )
    return {
        "baseline": comparison.get("baseline"),
        "failures": comparison.get("failures") or [],
        "limits": ", ".join(comparison.get("limits") or []),
        "models": models,
        "notes": comparison.get("notes", []),
    }


def _answers(case: Mapping[str, Any]) -> str:
    return " / ".join(str(t.get("answer", "")) for t in case.get("turns", []))


@dataclass
class _Before:
    """A case in the compared run: the whole case when the baseline record is at hand, else the gate's flip."""

    answer: str
    score: float
    passed: bool
    error: str | None = None


def _baseline_index(record: Mapping[str, Any], inputs: ReportInputs) -> dict[tuple[str, str, str], _Before]:
    index: dict[tuple[str, str, str], _Before] = {}
    if inputs.baseline is not None:
        from pytest_vleval.gate.compare import match_models

        pairs, _ = match_models(inputs.baseline.get("models", []), record.get("models", []))
        for current, base in pairs:
            for case in inputs.baseline.get("cases", []):
                if case["model"] == base["label"]:
                    index[(str(current["label"]), str(case["suite"]), str(case["case_id"]))] = _Before(
                        answer=_answers(case),
                        score=float(case["score"]),
                        passed=bool(case["passed"]),
                        error=case.get("error"),
                    )
        return index
    comparison = record.get("comparison")
    if isinstance(comparison, Mapping):
        for model in comparison.get("models", []):
            for kind, passed in (("worse", True), ("better", False)):
                for flip in model.get(kind, []):
                    index[(str(model["label"]), str(flip["suite"]), str(flip["case_id"]))] = _Before(
                        answer=str(flip.get("before", "")),
                        score=float(flip.get("before_score", 0.0)),
                        passed=passed,
                        error=flip.get("before_error"),
                    )
    return index


def _diff_kind(case: Mapping[str, Any], before: _Before | None, exact: bool) -> str:
    if before is None:
        return "new" if exact else ""
    if before.passed and not case["passed"]:
        return "regressed"
    if case["passed"] and not before.passed:
        return "fixed"
    if exact and before.answer != _answers(case):
        return "changed"
    return "same"


CASES_PER_PAGE = 100  # the report's script shows the cases a page at a time


def cases_context(record: Mapping[str, Any], inputs: ReportInputs, thumbs: Thumbnails) -> dict[str, Any] | None:
    """Every case with its images, turns and each model's answer, filterable by case file, status and model:
    the filters for the template, the cases as ``data`` (one JSON block the page's script shows a page at a
    time; each image's thumbnail once, in ``data["images"]``, named by index). ``data["cards"]`` is a generator,
    made as the block is written: consume it before reading ``data["images"]``."""
    from pytest_vleval.report.html import diff_segments

    cases = record.get("cases", [])
    if not cases:
        return None
    models = [str(m["label"]) for m in record.get("models", [])]
    suites = sorted({str(c["suite"]) for c in cases})
    cards: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    lines: dict[tuple[str, str], int] = {}
    for case in cases:
        key = (str(case["suite"]), str(case["case_id"]))
        cards.setdefault(key, {})[str(case["model"])] = case
        lines.setdefault(key, int(case.get("line") or 0))
    index = _baseline_index(record, inputs)
    exact = inputs.baseline is not None
    compared = exact or isinstance(record.get("comparison"), Mapping)
    images: dict[str, int] = {}
    table: list[dict[str, str | None]] = []

    def image(path: str) -> int:
        if path not in images:
            images[path] = len(table)
            table.append(thumbs.image(path))
        return images[path]

    def card(suite: str, case_id: str) -> dict[str, Any]:
        per_model = cards[(suite, case_id)]
        first = next(iter(per_model.values()))
        rows = [
            _answer_row(model, per_model[model], index.get((model, suite, case_id)), exact, diff_segments)
            for model in models
            if model in per_model
        ]
        turns = [
            [t.get("question"), t.get("expected"), t.get("scorer"), f"{float(t.get('threshold', 0)):g}"]
            for t in first.get("turns", [])
        ]
        return {
            "suite": suite,
            "case_id": case_id,
            "line": lines[(suite, case_id)],
            "images": [image(str(p)) for p in first.get("images", [])],
            "turns": turns,
            "rows": rows,
        }

    order = sorted(cards, key=lambda key: (key[0], lines[key], key[1]))
    # The cards are made as they are written (html.report_pieces), each image's thumbnail into `table` meanwhile.
    data = {
        "cards": (card(suite, case_id) for suite, case_id in order),
        "images": table,
        "compared": compared,
        "exact": exact,
        "per_page": CASES_PER_PAGE,
    }
    return {"filters": _filters(suites, models, compared, exact), "count": len(order), "data": data}


def _filters(suites: Sequence[str], models: Sequence[str], compared: bool, exact: bool) -> list[dict[str, Any]]:
    short = short_names(suites)
    statuses = [("", "any status"), ("passed", "passed"), ("failed", "failed (or error)"), ("error", "error")]
    if compared:
        statuses += [("regressed", "regressed vs baseline"), ("fixed", "fixed vs baseline")]
        if exact:
            statuses += [("changed", "answer changed"), ("new", "not in baseline")]
    return [
        {"name": "suite", "options": [("", "all case files")] + [(s, short[s]) for s in suites]},
        {"name": "status", "options": statuses},
        {"name": "model", "options": [("", "all models")] + [(m, m) for m in models]},
    ]


def _answer_row(model: str, case: Mapping[str, Any], before: _Before | None, exact: bool, diff: Any) -> dict[str, Any]:
    status = "passed" if case["passed"] else "error" if case.get("error") else "failed"
    outcome = str(case.get("outcome") or status)
    verdict = {"passed": "PASS", "failed": "FAIL", "error": "ERROR"}[status]
    if outcome in ("xfailed", "xpassed"):
        verdict += f" ({outcome})"
    kind = _diff_kind(case, before, exact)
    shown_before = None
    if before is not None:
        shown_before = {
            "mark": {"regressed": "bad", "fixed": "good"}.get(kind, ""),
            "label": {"regressed": "regressed", "fixed": "fixed", "changed": "answer changed", "same": "same"}[kind],
            "score": before.score,
            "passed": before.passed,
            "shown": diff(before.answer, _answers(case)) if exact else before.answer,
        }
    return {
        "model": model,
        "status": status,
        "diff": kind,
        "error": case.get("error"),
        "turns": [
            {
                "answer": t.get("answer"),
                "passed": t.get("passed"),
                "score": float(t.get("score", 0)),
                "detail": t.get("detail"),
                # What the scorer compared, when extraction changed it; the text sent, when it was not the
                # question as written (a format instruction, a family's grounding words); a format diagnosis.
                "extracted": t["extracted"] if t.get("extracted") not in (None, t.get("answer")) else None,
                "sent": t["prompt"] if t.get("prompt") not in (None, t.get("question")) else None,
                "format_issue": t.get("format_issue"),
                "judge_reply": (t.get("judge") or {}).get("raw"),  # a verdict that could not be read
            }
            for t in case.get("turns", [])
        ],
        "score": float(case["score"]),
        "verdict": verdict,
        "before": shown_before,
    }


def golden_context(record: Mapping[str, Any], thumbs: Thumbnails) -> list[dict[str, Any]]:
    by_set: dict[str, list[Mapping[str, Any]]] = {}
    for entry in record.get("golden") or []:
        by_set.setdefault(str(entry["set"]), []).append(entry)
    return [_golden_set(name, entries, thumbs) for name, entries in sorted(by_set.items())]


def _golden_set(name: str, entries: Sequence[Mapping[str, Any]], thumbs: Thumbnails) -> dict[str, Any]:
    metrics = [m for m in CAPTION_METRICS if any(m in (e.get("corpus") or {}) for e in entries)]
    rows = []
    for entry in entries:
        cells = []
        for metric in metrics:
            value = (entry.get("corpus") or {}).get(metric)
            gate = (entry.get("gated") or {}).get(metric)
            cells.append(
                {
                    "text": "-" if value is None else f"{float(value):.3f}",
                    "css": "" if not gate else "good" if gate.get("passed") else "bad",
                    "limit": f" (≥ {float(gate['threshold']):g})" if gate else "",
                }
            )
        rows.append({"model": entry["model"], "cells": cells})
    first = entries[0]
    images = first.get("images") or {}
    keys = list(dict.fromkeys(k for e in entries for k in (e.get("captions") or {})))
    pictures = []
    for key in keys:
        info = images.get(key) or {}
        model_rows = []
        for entry in entries:
            score = ((entry.get("per_image") or {}).get(key) or {}).get("CIDEr")
            model_rows.append(
                {
                    "model": entry["model"],
                    "error": (entry.get("errors") or {}).get(key),
                    "caption": (entry.get("captions") or {}).get(key),
                    "cider": "" if score is None else f"CIDEr {float(score):.3f}",
                }
            )
        pictures.append(
            {
                "key": key,
                "picture": thumbs.image(str(info["path"])) if info.get("path") else None,
                "references": [str(r) for r in info.get("references") or []],
                "rows": model_rows,
            }
        )
    return {
        "name": name,
        "manifest": first.get("manifest"),
        "prompt": first.get("prompt"),
        "metrics": metrics,
        "rows": rows,
        "images": pictures,
    }
