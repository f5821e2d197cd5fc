"""The HTML report (``--vl-report=PATH.html``, ``python -m pytest_vleval report``): one self-contained file.

Built from a run record (docs/records.md) alone, so a saved record renders the same report later. It holds the
comparison table (``table.py``), plots (``plots.py``, PNG as data URIs), the baseline comparison when the run was
compared, then every case with its image thumbnails (PIL, data URIs), turns, expected answers and each model's
answer, score and verdict, filterable by case file, status and model; golden caption sets follow.

Everything that comes from a case file, a model or a record is untrusted: it is HTML-escaped on the way in, JSON
in a ``<script>`` block has ``<``, ``>`` and ``&`` escaped, and a Content-Security-Policy allows the page's own
script (by hash), inline styles and ``data:`` images only, so nothing is fetched from anywhere.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vleval.table import BEST_MARK, ComparisonTable, build_table, format_cell, short_names

THUMBNAIL_SIZE = 160  # pixels, the longer side
MAX_DIFF_CHARS = 4000
HISTORY_RUNS = 30  # saved runs shown in the history plots, newest last


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def json_for_script(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``</script>``, ``<!--`` or entity can form."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class ReportInputs:
    """What a report is made of besides the record."""

    baseline: Mapping[str, Any] | None = None  # the compared run's record, for per-case diffs
    history: Sequence[tuple[str, Mapping[str, Any]]] = ()  # (run name, record), oldest first
    history_note: str = ""  # where the history came from, or why there is none
    cost_per_hour: float | None = None
    roots: Sequence[Path] = ()  # folders relative image paths are looked up in
    sources: Sequence[str] = ()  # the record files a CLI report was built from
    title: str = "pytest-vleval report"
    plots: bool = True  # False: no matplotlib at all (faster for very large records)


@dataclass
class _Thumbnails:
    roots: Sequence[Path]
    cache: dict[str, str | None] = field(default_factory=dict)

    def resolve(self, path: str) -> Path | None:
        candidate = Path(path)
        if candidate.is_absolute():
            return candidate if candidate.is_file() else None
        for root in self.roots:
            if (Path(root) / candidate).is_file():
                return Path(root) / candidate
        return None

    def uri(self, path: str) -> str | None:
        if path not in self.cache:
            found = self.resolve(path)
            self.cache[path] = None if found is None else thumbnail_uri(found)
        return self.cache[path]

    def img(self, path: str, css: str = "thumb") -> str:
        uri = self.uri(path)
        if uri is None:
            return f'<span class="{css} missing" title="{esc(path)}">image not found:<br>{esc(path)}</span>'
        return f'<img class="{esc(css)}" src="{uri}" alt="{esc(path)}" title="{esc(path)}">'


def thumbnail_uri(path: Path, size: int = THUMBNAIL_SIZE) -> str | None:
    """A small JPEG (PNG where the image has transparency) of the image as a ``data:`` URI, or None."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            small = ImageOps.exif_transpose(image)
            small.thumbnail((size, size))
            buffer = io.BytesIO()
            if small.mode in ("RGBA", "LA", "P") and ("transparency" in small.info or small.mode != "P"):
                small.convert("RGBA").save(buffer, format="PNG", optimize=True)
                mime = "image/png"
            else:
                small.convert("RGB").save(buffer, format="JPEG", quality=82, optimize=True)
                mime = "image/jpeg"
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_report(record: Mapping[str, Any], inputs: ReportInputs | None = None) -> str:
    """The whole report as one HTML document."""
    inputs = inputs or ReportInputs()
    thumbs = _Thumbnails(inputs.roots)
    table = build_table(record, cost_per_hour=inputs.cost_per_hour)
    models = [str(m["label"]) for m in record.get("models", [])]
    suites = sorted({str(c["suite"]) for c in record.get("cases", [])})
    body = [
        f"<header><h1>{esc(inputs.title)}</h1>{_run_info(record, inputs)}</header>",
        "<main>",
        '<section id="summary"><h2>Models compared</h2>',
        table_html(table),
        _models_html(record),
        "</section>",
        _comparison_html(record),
        _plots_html(record, inputs),
        _cases_html(record, inputs, thumbs, models, suites),
        _golden_html(record, thumbs),
        "</main>",
        f'<script type="application/json" id="vl-summary">{json_for_script(_summary_data(table))}</script>',
        f"<script>{_SCRIPT}</script>",
    ]
    return _page(inputs.title, "\n".join(part for part in body if part))


def write_report(path: Path, record: Mapping[str, Any], inputs: ReportInputs | None = None) -> Path:
    """Write the report atomically (a half-written report never replaces a good one)."""
    text = render_report(record, inputs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _page(title: str, body: str) -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    policy = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _summary_data(table: ComparisonTable) -> dict[str, Any]:
    return {
        "models": table.models,
        "columns": [{"group": c.group, "name": c.name, "kind": c.kind, "better": c.better} for c in table.columns],
        "values": table.values,
    }


def _run_info(record: Mapping[str, Any], inputs: ReportInputs) -> str:
    run = record.get("run") or {}
    machine = run.get("machine") or {}
    commit = run.get("commit") or {}
    versions = run.get("versions") or {}
    gpus = ", ".join(str(g.get("name")) for g in machine.get("gpus") or [] if isinstance(g, Mapping))
    facts = [
        ("run", run.get("name")),
        ("started", run.get("started")),
        ("duration", f"{float(run['duration_s']):.1f} s" if run.get("duration_s") is not None else None),
        ("machine", " · ".join(str(x) for x in (machine.get("cpu"), gpus or None, run.get("machine_id")) if x)),
        ("commit", _commit_text(commit)),
        (
            "versions",
            " · ".join(f"{k} {v}" for k in ("pytest-vleval", "torch", "transformers") if (v := versions.get(k))),
        ),
        ("command", " ".join(["pytest", *map(str, run.get("args") or [])]) if run.get("args") else None),
        ("exit status", run.get("exitstatus")),
        ("records", ", ".join(inputs.sources) or None),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    return f'<dl class="facts">{items}</dl>'


def _commit_text(commit: Mapping[str, Any]) -> str | None:
    if not commit.get("id"):
        return None
    dirty = " + uncommitted changes" if commit.get("dirty") else ""
    return f"{str(commit['id'])[:10]} ({commit.get('branch')}){dirty}"


def table_html(table: ComparisonTable) -> str:
    """The comparison table; the best cell of each column is bold green and marked with ``*``."""
    if not table.models or not table.columns:
        return '<p class="note">No model results in this record.</p>'
    groups: list[tuple[str, int]] = []
    for column in table.columns:
        if groups and groups[-1][0] == column.group:
            groups[-1] = (column.group, groups[-1][1] + 1)
        else:
            groups.append((column.group, 1))
    top = "".join(f'<th colspan="{n}" class="group">{esc(g)}</th>' for g, n in groups)
    sub = "".join(f'<th title="{esc(c.title)}">{esc(c.name)}</th>' for c in table.columns)
    best = [table.best(i) for i in range(len(table.columns))]
    rows = []
    for r, model in enumerate(table.models):
        cells = []
        for i, column in enumerate(table.columns):
            text = esc(format_cell(column.kind, table.values[r][i]))
            if r in best[i]:
                cells.append(f'<td class="num best">{text}{BEST_MARK}</td>')
            else:
                cells.append(f'<td class="num">{text}</td>')
        rows.append(f'<tr data-model="{esc(model)}"><th class="model">{esc(model)}</th>{"".join(cells)}</tr>')
    notes = "".join(f"<li>{esc(note)}</li>" for note in table.notes)
    return (
        '<div class="scroll"><table class="compare"><thead>'
        f'<tr><th rowspan="2" class="model">model</th>{top}</tr><tr>{sub}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div><ul class="notes">{notes}</ul>'
    )


def _models_html(record: Mapping[str, Any]) -> str:
    rows = []
    for model in record.get("models", []):
        backend = model.get("backend") or {}
        load = model.get("load") or {}
        parameters = backend.get("parameters")
        size = f"{float(parameters) / 1e6:.1f} M" if isinstance(parameters, (int, float)) else ""
        seconds = f"{float(load['seconds']):.1f} s" if load.get("seconds") is not None else ""
        rows.append(
            "<tr>"
            f"<th>{esc(model.get('label'))}</th><td>{esc(model.get('source'))}</td>"
            f"<td>{esc(backend.get('architecture', ''))}</td>"
            f"<td>{esc(size)}</td>"
            f"<td>{esc(backend.get('device', ''))}</td>"
            f"<td>{esc(backend.get('precision', backend.get('dtype', '')))}</td>"
            f"<td>{esc(str(model.get('fingerprint') or '')[:12])}</td>"
            f"<td class=num>{esc(seconds)}</td>"
            f"<td class=bad>{esc(load.get('error') or '')}</td></tr>"
        )
    if not rows:
        return ""
    return (
        '<details class="models"><summary>Model details</summary><div class="scroll"><table class="plain">'
        "<tr><th>model</th><th>source</th><th>architecture</th><th>parameters</th><th>device</th><th>dtype</th>"
        f"<th>fingerprint</th><th>load</th><th></th></tr>{''.join(rows)}</table></div></details>"
    )


def _comparison_html(record: Mapping[str, Any]) -> str:
    from pytest_vleval.gate import METRICS, format_value

    comparison = record.get("comparison")
    if not isinstance(comparison, Mapping):
        return ""
    parts = [f'<section id="baseline"><h2>Compared with {esc(comparison.get("baseline"))}</h2>']
    if comparison.get("failures"):
        parts.append('<p class="bad">Gate failed:</p><ul>')
        parts.extend(f'<li class="bad">{esc(f)}</li>' for f in comparison["failures"])
        parts.append("</ul>")
    elif comparison.get("limits"):
        parts.append(f'<p class="good">Gate passed ({esc(", ".join(comparison["limits"]))})</p>')
    for model in comparison.get("models", []):
        rows = []
        for row in model.get("rows", []):
            kind = METRICS.get(str(row["metric"]).split("@", 1)[0], ("", "score"))[1]
            change = ""
            if row.get("before") is not None and row.get("after") is not None:
                change = _change_text(kind, float(row["before"]), float(row["after"]))
            verdict = str(row.get("verdict") or "")
            css = "bad" if row.get("breached") else "good" if verdict == "ok" else ""
            rows.append(
                f"<tr><td>{esc(row['metric'])}</td><td class=num>{esc(format_value(kind, row.get('before')))}</td>"
                f"<td class=num>{esc(format_value(kind, row.get('after')))}</td><td class=num>{esc(change)}</td>"
                f'<td>{esc((row.get("rule") or ":").split(":", 1)[1])}</td><td class="{css}">{esc(verdict)} '
                f"{esc(row.get('note') or '')}</td></tr>"
            )
        label = model.get("label")
        versus = "" if model.get("baseline_label") == label else f" (baseline model {esc(model.get('baseline_label'))})"
        parts.append(
            f"<h3>{esc(label)}{versus}: {len(model.get('worse', []))} regressed, "
            f"{len(model.get('better', []))} fixed</h3>"
            '<div class="scroll"><table class="plain"><tr><th>metric</th><th>baseline</th><th>current</th>'
            f"<th>change</th><th>limit</th><th>result</th></tr>{''.join(rows)}</table></div>"
        )
    parts.extend(f'<p class="note">{esc(n)}</p>' for n in comparison.get("notes", []))
    parts.append('<p class="note">Per-case differences are marked below; filter by status "regressed" or "fixed".</p>')
    parts.append("</section>")
    return "".join(parts)


def _change_text(kind: str, before: float, after: float) -> str:
    from pytest_vleval.gate import format_value

    diff = after - before
    sign = "+" if diff >= 0 else "-"
    if kind in ("rate", "score"):
        text = f"{diff:+.3f}"
    elif kind in ("seconds", "bytes"):
        text = sign + format_value(kind, abs(diff))
    else:
        text = f"{diff:+.1f}/s"
    return text + (f" ({diff / abs(before):+.1%})" if before else "")


def _plots_html(record: Mapping[str, Any], inputs: ReportInputs) -> str:
    if not inputs.plots:
        return ""
    from pytest_vleval import plots

    try:
        import matplotlib  # noqa: F401
    except ImportError:  # a report without plots beats no report
        return '<section id="plots"><h2>Plots</h2><p class="note">matplotlib is not installed: no plots.</p></section>'
    figures = [
        ("Score per case file and model", plots.suite_scores(record)),
        ("Latency distribution", plots.latency_distribution(record)),
    ]
    history = list(inputs.history)[-HISTORY_RUNS:]
    history_png = plots.history(history)
    parts = ['<section id="plots"><h2>Plots</h2>']
    for title, data in figures:
        if data:
            parts.append(
                f'<figure><img class="plot" src="{png_uri(data)}" alt="{esc(title)}">'
                f"<figcaption>{esc(title)}</figcaption></figure>"
            )
    parts.append("<h3>History across runs</h3>")
    if history_png:
        parts.append(
            f'<figure><img class="plot" src="{png_uri(history_png)}" alt="metric history">'
            f"<figcaption>Each metric across saved runs, oldest first (a ring: the model's weights changed)"
            f"{': ' + esc(inputs.history_note) if inputs.history_note else ''}</figcaption></figure>"
        )
        parts.append(_history_table(history))
    else:
        note = inputs.history_note or "no saved runs"
        parts.append(
            f'<p class="note">Fewer than two runs to follow ({esc(note)}); '
            "save runs with --vl-save or --vl-autosave.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _history_table(points: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    rows = []
    for name, record in points:
        run = record.get("run") or {}
        commit = (run.get("commit") or {}).get("id") or ""
        labels = ", ".join(
            f"{m['label']}" + (f" [{str(m['fingerprint'])[:8]}]" if m.get("fingerprint") else "")
            for m in record.get("models", [])
        )
        rows.append(
            f"<tr><td>{esc(name)}</td><td>{esc(run.get('started'))}</td><td>{esc(str(commit)[:10])}</td><td>{esc(labels)}</td></tr>"
        )
    return (
        '<details><summary>Runs in the history</summary><table class="plain"><tr><th>run</th><th>started</th>'
        f"<th>commit</th><th>models [weights]</th></tr>{''.join(rows)}</table></details>"
    )


def _answers(case: Mapping[str, Any]) -> str:
    return " / ".join(str(t.get("answer", "")) for t in case.get("turns", []))


def word_diff(old: str, new: str) -> str:
    """``new`` against ``old`` word by word, escaped, with ``<del>``/``<ins>`` around the changes."""
    old, new = old[:MAX_DIFF_CHARS], new[:MAX_DIFF_CHARS]
    a, b = re.split(r"(\s+)", old), re.split(r"(\s+)", new)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(esc("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{esc(''.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{esc(''.join(b[j1:j2]))}</ins>")
    return "".join(out)


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
        from pytest_vleval.gate import match_models

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


def _cases_html(
    record: Mapping[str, Any], inputs: ReportInputs, thumbs: _Thumbnails, models: list[str], suites: list[str]
) -> str:
    cases = record.get("cases", [])
    if not cases:
        return ""
    cards: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    lines: dict[tuple[str, str], int] = {}
    for case in cases:
        key = (str(case["suite"]), str(case["case_id"]))
        cards.setdefault(key, {})[str(case["model"])] = case
        lines.setdefault(key, int(case.get("line") or 0))
    index = _baseline_index(record, inputs)
    exact = inputs.baseline is not None
    compared = exact or isinstance(record.get("comparison"), Mapping)
    short = short_names(suites)
    statuses = [("", "any status"), ("passed", "passed"), ("failed", "failed (or error)"), ("error", "error")]
    if compared:
        statuses += [("regressed", "regressed vs baseline"), ("fixed", "fixed vs baseline")]
        if exact:
            statuses += [("changed", "answer changed"), ("new", "not in baseline")]
    options = {
        "suite": [("", "all case files")] + [(s, short[s]) for s in suites],
        "status": statuses,
        "model": [("", "all models")] + [(m, m) for m in models],
    }
    selects = "".join(
        f'<label>{name} <select id="f-{name}" data-filter="{name}">'
        + "".join(f'<option value="{esc(v)}">{esc(t)}</option>' for v, t in values)
        + "</select></label>"
        for name, values in options.items()
    )
    parts = [
        '<section id="cases"><h2>Cases</h2>',
        f'<div class="filters">{selects}<label>search '
        '<input id="f-text" type="search" placeholder="case id, question, answer"></label>'
        f'<span id="f-count" class="note">{len(cards)} cases</span></div>',
    ]
    for n, (key, per_model) in enumerate(sorted(cards.items(), key=lambda kv: (kv[0][0], lines[kv[0]], kv[0][1]))):
        suite, case_id = key
        first = next(iter(per_model.values()))
        images = "".join(thumbs.img(str(p)) for p in first.get("images", []))
        turns = "".join(
            f"<tr><td class=num>{i + 1}</td><td class=text>{esc(t.get('question'))}</td>"
            f"<td class=text>{esc(t.get('expected'))}</td>"
            f"<td>{esc(t.get('scorer'))} ≥ {float(t.get('threshold', 0)):g}</td></tr>"
            for i, t in enumerate(first.get("turns", []))
        )
        answer_rows = []
        for model in models:
            case = per_model.get(model)
            if case is None:
                continue
            answer_rows.append(_answer_row(model, case, index.get((model, suite, case_id)), exact, compared))
        head = "<th>model</th><th>answer</th><th>score</th><th>result</th>" + (
            "<th>vs baseline</th>" if compared else ""
        )
        line = f" <span class=note>line {lines[key]}</span>" if lines[key] else ""
        parts.append(
            f'<article class="case" id="case-{n}" data-suite="{esc(suite)}">'
            f'<h3><span class="suite">{esc(suite)}</span> :: {esc(case_id)}{line}</h3>'
            f'<div class="case-body"><div class="images">{images}</div><div class="detail">'
            f'<table class="turns"><tr><th>#</th><th>question</th><th>expected</th><th>scorer</th></tr>{turns}</table>'
            f'<table class="answers"><tr>{head}</tr>{"".join(answer_rows)}</table></div></div></article>'
        )
    parts.append("</section>")
    return "".join(parts)


def _answer_row(model: str, case: Mapping[str, Any], before: _Before | None, exact: bool, compared: bool) -> str:
    turns = case.get("turns", [])
    if case.get("error") and not turns:
        answer = f'<span class="bad">error: {esc(case["error"])}</span>'
    elif len(turns) == 1:
        answer = _turn_answer(turns[0])
    else:
        answer = "<ol>" + "".join(f"<li>{_turn_answer(t)}</li>" for t in turns) + "</ol>"
        if case.get("error"):
            answer += f'<div class="bad">error: {esc(case["error"])}</div>'
    status = "passed" if case["passed"] else "error" if case.get("error") else "failed"
    outcome = str(case.get("outcome") or status)
    verdict = {"passed": "PASS", "failed": "FAIL", "error": "ERROR"}[status]
    if outcome in ("xfailed", "xpassed"):
        verdict += f" ({outcome})"
    kind = _diff_kind(case, before, exact)
    diff_cell = ""
    if compared:
        if before is None:
            diff_cell = "<td class=note>not in baseline</td>" if exact else "<td></td>"
        else:
            shown = word_diff(before.answer, _answers(case)) if exact else esc(before.answer)
            mark = {"regressed": "bad", "fixed": "good"}.get(kind, "")
            label = {"regressed": "regressed", "fixed": "fixed", "changed": "answer changed", "same": "same"}[kind]
            diff_cell = (
                f'<td class="diff"><span class="badge {mark}">{esc(label)}</span> '
                f'<span class="note">was {before.score:.3f} {"PASS" if before.passed else "FAIL"}</span>'
                f'<div class="text">{shown}</div></td>'
            )
    return (
        f'<tr data-model="{esc(model)}" data-status="{status}" data-diff="{esc(kind)}">'
        f'<th class="model">{esc(model)}</th><td class="text">{answer}</td>'
        f"<td class=num>{float(case['score']):.3f}</td>"
        f'<td class="{"good" if status == "passed" else "bad"}">{esc(verdict)}</td>'
        f"{diff_cell}</tr>"
    )


def _turn_answer(turn: Mapping[str, Any]) -> str:
    detail = f' <span class="note">{esc(turn["detail"])}</span>' if turn.get("detail") else ""
    mark = "good" if turn.get("passed") else "bad"
    return (
        f'<span class="answer">{esc(turn.get("answer"))}</span> '
        f'<span class="{mark} small">{float(turn.get("score", 0)):.2f}</span>{detail}'
    )


def _golden_html(record: Mapping[str, Any], thumbs: _Thumbnails) -> str:
    golden = record.get("golden") or []
    if not golden:
        return ""
    by_set: dict[str, list[Mapping[str, Any]]] = {}
    for entry in golden:
        by_set.setdefault(str(entry["set"]), []).append(entry)
    parts = ['<section id="golden"><h2>Golden caption sets</h2>']
    for name, entries in sorted(by_set.items()):
        metrics = [
            m
            for m in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
            if any(m in (e.get("corpus") or {}) for e in entries)
        ]
        head = "".join(f"<th>{esc(m)}</th>" for m in metrics)
        rows = []
        for entry in entries:
            cells = []
            for metric in metrics:
                value = (entry.get("corpus") or {}).get(metric)
                gate = (entry.get("gated") or {}).get(metric)
                css = "" if not gate else "good" if gate.get("passed") else "bad"
                limit = f" (≥ {float(gate['threshold']):g})" if gate else ""
                cells.append(
                    f'<td class="num {css}">{esc("-" if value is None else f"{float(value):.3f}")}{esc(limit)}</td>'
                )
            model = esc(entry["model"])
            rows.append(f'<tr data-model="{model}"><th class=model>{model}</th>{"".join(cells)}</tr>')
        first = entries[0]
        images = first.get("images") or {}
        prompt = first.get("prompt")
        parts.append(
            f'<article class="golden" data-suite="{esc("golden:" + name)}"><h3>{esc(name)} '
            f"<span class=note>{esc(first.get('manifest'))}</span></h3>"
            + (f"<p>prompt: <q>{esc(prompt)}</q></p>" if prompt else "")
            + f'<div class="scroll"><table class="plain"><tr><th>model</th>{head}</tr>{"".join(rows)}</table></div>'
        )
        keys = list(dict.fromkeys(k for e in entries for k in (e.get("captions") or {})))
        cards = []
        for key in keys:
            info = images.get(key) or {}
            refs = [str(r) for r in info.get("references") or []]
            ref_html = (
                "<details><summary>"
                + esc(refs[0])
                + (f" (+{len(refs) - 1} more)" if len(refs) > 1 else "")
                + "</summary><ul>"
                + "".join(f"<li>{esc(r)}</li>" for r in refs[1:])
                + "</ul></details>"
                if refs
                else '<span class="note">references not in the record</span>'
            )
            picture = (
                thumbs.img(str(info["path"]))
                if info.get("path")
                else '<span class="thumb missing">no image path in the record</span>'
            )
            model_rows = []
            for entry in entries:
                caption = (entry.get("captions") or {}).get(key)
                error = (entry.get("errors") or {}).get(key)
                score = ((entry.get("per_image") or {}).get(key) or {}).get("CIDEr")
                text = (
                    f'<span class="bad">error: {esc(error)}</span>'
                    if error
                    else f'<span class="answer">{esc(caption)}</span>'
                )
                model = esc(entry["model"])
                cider = "" if score is None else f"CIDEr {float(score):.3f}"
                model_rows.append(
                    f'<tr data-model="{model}" data-status="" data-diff=""><th class=model>{model}</th>'
                    f"<td class=text>{text}</td><td class=num>{esc(cider)}</td></tr>"
                )
            cards.append(
                f'<div class="golden-image"><div class="images">{picture}</div><div class="detail">'
                f'<div class="refs"><span class="note">image {esc(key)} · references:</span> {ref_html}</div>'
                f'<table class="answers">{"".join(model_rows)}</table></div></div>'
            )
        parts.append("".join(cards) + "</article>")
    parts.append("</section>")
    return "".join(parts)


_CSS = """
:root{--good:#11703a;--bad:#b3261e;--line:#d8dbe0;--muted:#5f6670;--best:#e3f5e9}
*{box-sizing:border-box}
body{
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2126;
  background:#f6f7f9}
header{background:#1f2937;color:#f3f4f6;padding:14px 24px}
header h1{margin:0 0 6px;font-size:20px}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0;font-size:12.5px}
.facts dt{color:#9ca3af}.facts dd{margin:0;word-break:break-all}
main{padding:8px 24px 40px}
section{margin:18px 0}
h2{font-size:17px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:14.5px;margin:10px 0 6px}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid var(--line);padding:3px 7px;vertical-align:top;text-align:left}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.compare th{background:#eef0f3;text-align:center;white-space:nowrap}
table.compare th.model,table.compare tbody th{text-align:left}
table.compare th.group{background:#e2e6ec}
td.best{background:var(--best);color:var(--good);font-weight:700}
.scroll{overflow-x:auto;max-width:100%}
.notes,.note{color:var(--muted);font-size:12.5px}
.notes{margin:6px 0;padding-left:18px}
.good{color:var(--good)}.bad{color:var(--bad)}
.small{font-size:12px}
figure{margin:10px 0;display:inline-block;background:#fff;border:1px solid var(--line);padding:6px}
figcaption{color:var(--muted);font-size:12.5px}
img.plot{max-width:100%;height:auto;display:block}
.filters{
  position:sticky;top:0;z-index:2;background:#f6f7f9;padding:8px 0;display:flex;gap:14px;flex-wrap:wrap;
  align-items:center;border-bottom:1px solid var(--line)}
.filters select,.filters input{font:inherit;padding:2px 4px}
article.case,article.golden{
  background:#fff;border:1px solid var(--line);border-radius:6px;padding:6px 12px 10px;margin:10px 0}
article.case h3 .suite{color:var(--muted);font-weight:400}
.case-body,.golden-image{display:flex;gap:14px;align-items:flex-start}
.golden-image{border-top:1px solid var(--line);padding-top:8px;margin-top:8px}
.images{display:flex;gap:6px;flex-wrap:wrap;flex:0 0 auto;max-width:340px}
img.thumb{max-width:160px;max-height:160px;border:1px solid var(--line);border-radius:3px;background:#fafafa}
.thumb.missing{
  display:inline-block;width:160px;padding:8px;font-size:11.5px;color:var(--muted);
  border:1px dashed var(--line);word-break:break-all}
.detail{flex:1 1 auto;min-width:0}
.detail table{width:100%;margin-bottom:6px}
td.text,.text{white-space:pre-wrap;word-break:break-word}
table.answers th.model{width:11em;font-weight:600;background:#fafbfc}
table.turns th,table.answers th{background:#f1f3f5}
.answer{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
ol{margin:0;padding-left:20px}
.badge{display:inline-block;border:1px solid currentColor;border-radius:9px;padding:0 7px;font-size:11.5px}
del{background:#fde2e1;color:var(--bad)}ins{background:#dcf3e3;color:var(--good);text-decoration:none}
details summary{cursor:pointer;color:#374151}
table.plain{margin:4px 0}
[hidden]{display:none!important}
"""

# Kept free of anything report-specific: its hash is in the Content-Security-Policy.
_SCRIPT = """
(function () {
  "use strict";
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var search = document.getElementById("f-text");
  var count = document.getElementById("f-count");
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.case, article.golden"));
  function value(name) {
    var el = document.getElementById("f-" + name);
    return el ? el.value : "";
  }
  function statusMatches(row, status) {
    if (!status) { return true; }
    if (status === "passed" || status === "error") { return row.dataset.status === status; }
    if (status === "failed") { return row.dataset.status === "failed" || row.dataset.status === "error"; }
    return row.dataset.diff === status;
  }
  function apply() {
    var suite = value("suite"), status = value("status"), model = value("model");
    var text = search ? search.value.trim().toLowerCase() : "";
    var shown = 0, total = 0;
    cards.forEach(function (card) {
      var isCase = card.classList.contains("case");
      var any = false;
      card.querySelectorAll("tr[data-model]").forEach(function (row) {
        var ok = (!model || row.dataset.model === model) && (!isCase || statusMatches(row, status));
        row.hidden = !ok;
        if (ok) { any = true; }
      });
      var visible = any && (!suite || card.dataset.suite === suite) && (isCase || !status)
        && (!text || card.textContent.toLowerCase().indexOf(text) >= 0);
      card.hidden = !visible;
      if (isCase) { total += 1; if (visible) { shown += 1; } }
    });
    if (count) { count.textContent = shown + " of " + total + " cases shown"; }
  }
  selects.forEach(function (el) { el.addEventListener("change", apply); });
  if (search) { search.addEventListener("input", apply); }
  apply();
})();
"""
