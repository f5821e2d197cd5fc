"""The HTML report (``--vl-report=PATH.html``, ``python -m pytest_vleval report``): one self-contained file.

Built from a run record (docs/records.md) alone, so a saved record renders the same report later. It holds the
comparison table (``table.py``), plots (``plots.py``, PNG as data URIs), the baseline comparison when the run was
compared, then every case with its image thumbnails (PIL, data URIs, each image once), turns, expected answers
and each model's answer, score and verdict, filterable by case file, status, model and text; golden caption sets
follow. The cases travel as one JSON block and the page's script shows them a page at a time (100 cases), so a
report of 200,000 cases opens as fast as one of 100 and its filters answer at once.

Everything that comes from a case file, a model or a record is untrusted. The page is a Jinja2 template
(``templates/report.html.j2``) with autoescaping on, so every value is escaped unless marked safe here (the
page's own stylesheet and script, the JSON block, whose ``<``, ``>`` and ``&`` are escaped, and the word diff,
built from escaped pieces). A Content-Security-Policy allows the page's own script (by hash), inline styles and
``data:`` images only, so nothing is fetched from anywhere.
"""

from __future__ import annotations

import base64
import difflib
import functools
import hashlib
import io
import json
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from pytest_vleval.report import html_data
from pytest_vleval.report.precision import gate_lines
from pytest_vleval.report.table import BEST_MARK, ComparisonTable, build_table

__all__ = [
    "HISTORY_RUNS",
    "ReportInputs",
    "diff_segments",
    "json_for_script",
    "render_report",
    "report_pieces",
    "word_diff",
    "write_report",
]

THUMBNAIL_SIZE = 160  # pixels, the longer side
MAX_DIFF_CHARS = 4000
HISTORY_RUNS = 30  # saved runs shown in the history plots, newest last


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
    requests_per_day: float | None = None  # with cost_per_hour: the precision table's monthly cost
    roots: Sequence[Path] = ()  # folders relative image paths are looked up in
    sources: Sequence[str] = ()  # the record files a CLI report was built from
    title: str = "pytest-vleval report"
    plots: bool = True  # False: no plots at all


@dataclass
class Thumbnails:
    """Image thumbnails as data URIs, each made once per report."""

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

    def image(self, path: str) -> dict[str, str | None]:
        """``{path, uri}``: the template shows the thumbnail, or says the image was not found."""
        if path not in self.cache:
            found = self.resolve(path)
            self.cache[path] = None if found is None else thumbnail_uri(found)
        return {"path": path, "uri": self.cache[path]}


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


def svg_uri(data: bytes) -> str:
    """An SVG document as an ``<img>`` source: shown as a picture, nothing in it runs."""
    return "data:image/svg+xml;base64," + base64.b64encode(data).decode("ascii")


def diff_segments(old: str, new: str) -> list[list[str]]:
    """``new`` against ``old`` word by word: ``[op, text]`` pieces, op ``=`` (same), ``-`` (gone), ``+`` (new);
    the report's script shows them as text, ``<del>`` and ``<ins>``."""
    old, new = old[:MAX_DIFF_CHARS], new[:MAX_DIFF_CHARS]
    a, b = re.split(r"(\s+)", old), re.split(r"(\s+)", new)
    out: list[list[str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(["=", "".join(a[i1:i2])])
            continue
        if i2 > i1:
            out.append(["-", "".join(a[i1:i2])])
        if j2 > j1:
            out.append(["+", "".join(b[j1:j2])])
    return [piece for piece in out if piece[1]]


def word_diff(old: str, new: str) -> Markup:
    """:func:`diff_segments` as escaped HTML, with ``<del>``/``<ins>`` around the changes."""
    tags = {"-": Markup("<del>{}</del>"), "+": Markup("<ins>{}</ins>")}
    out = Markup("")
    for op, text in diff_segments(old, new):
        out += escape(text) if op == "=" else tags[op].format(text)
    return out


@functools.cache
def _template() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    environment = Environment(
        loader=PackageLoader("pytest_vleval.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template("report.html.j2")


def _asset(name: str) -> str:
    return resources.files("pytest_vleval.report").joinpath("templates", name).read_text(encoding="utf-8")


def render_report(record: Mapping[str, Any], inputs: ReportInputs | None = None) -> str:
    """The whole report as one HTML document."""
    return "".join(report_pieces(record, inputs))


def report_pieces(record: Mapping[str, Any], inputs: ReportInputs | None = None) -> Iterator[str]:
    """The report in pieces, the cases' JSON block a case at a time: a 200,000-case report is never built whole
    in memory (its cards, their JSON and the page were three copies of it)."""
    inputs = inputs or ReportInputs()
    thumbs = Thumbnails(inputs.roots)
    table = build_table(record, cost_per_hour=inputs.cost_per_hour)
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    cases = html_data.cases_context(record, inputs, thumbs)
    mark = f"vl-cases-{secrets.token_hex(16)}"  # where the cases' JSON goes; no other text of the page is this
    text: str = _template().render(
        title=inputs.title,
        policy=policy,
        css=Markup(_asset("report.css")),
        script=Markup(script),
        facts=html_data.facts(record, inputs),
        table=html_data.table_context(table),
        best_mark=BEST_MARK,
        models=html_data.models_context(record),
        comparison=html_data.comparison_context(record),
        precisions=html_data.precisions_context(record, inputs.cost_per_hour, inputs.requests_per_day),
        precision_gate=gate_lines(record),
        plots=_plots(record, inputs),
        cases=cases,
        cases_json=Markup(mark) if cases else None,
        golden=html_data.golden_context(record, thumbs),
        summary_json=Markup(json_for_script(_summary_data(table))),
    )
    if not cases:
        yield text
        return
    assert text.count(mark) == 1
    before, after = text.split(mark)
    del text
    yield before
    yield from _cases_json(cases["data"])
    yield after


def _cases_json(data: Mapping[str, Any]) -> Iterator[str]:
    """``json_for_script(data)`` in pieces, a card at a time; ``data["cards"]`` is consumed first (it fills
    ``data["images"]``, the thumbnails the cards name by index)."""
    yield '{"cards": ['
    for n, card in enumerate(data["cards"]):
        yield json_for_script(card) if n == 0 else ", " + json_for_script(card)
    rest = json_for_script({key: value for key, value in data.items() if key != "cards"})
    yield "], " + rest[1:]  # the rest of the object, without its opening brace


def write_report(path: Path, record: Mapping[str, Any], inputs: ReportInputs | None = None) -> Path:
    """Write the report atomically (a half-written report never replaces a good one), a piece at a time."""
    from pytest_vleval.records.storage import write_text

    return write_text(path, report_pieces(record, inputs))


def _summary_data(table: ComparisonTable) -> dict[str, Any]:
    return {
        "models": table.models,
        "columns": [{"group": c.group, "name": c.name, "kind": c.kind, "better": c.better} for c in table.columns],
        "values": table.values,
    }


def _plots(record: Mapping[str, Any], inputs: ReportInputs) -> dict[str, Any] | None:
    if not inputs.plots:
        return None
    try:
        import pygal  # noqa: F401
    except ImportError:  # a report without plots beats no report
        return {"missing": True}
    from pytest_vleval.report import plots

    figures = [
        ("Score per case file and model", plots.suite_scores(record)),
        ("Latency distribution", plots.latency_distribution(record)),
    ]
    history = list(inputs.history)[-HISTORY_RUNS:]
    history_svg = plots.history(history)
    return {
        "missing": False,
        "figures": [{"title": title, "uri": svg_uri(data)} for title, data in figures if data],
        "history_uri": svg_uri(history_svg) if history_svg else None,
        "history_note": inputs.history_note,
        "history": [_history_row(name, run) for name, run in history],
    }


def _history_row(name: str, record: Mapping[str, Any]) -> dict[str, str]:
    run = record.get("run") or {}
    commit = (run.get("commit") or {}).get("id") or ""
    labels = ", ".join(
        f"{m['label']}" + (f" [{str(m['fingerprint'])[:8]}]" if m.get("fingerprint") else "")
        for m in record.get("models", [])
    )
    return {"name": name, "started": str(run.get("started") or ""), "commit": str(commit)[:10], "models": labels}
