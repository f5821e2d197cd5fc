"""The HTML report's plots, drawn with pygal as SVG (text stays text, sharp at any zoom, a few KB each).

Every function takes run records (docs/records.md) and returns one SVG document (bytes) holding its panels side
by side, or None when there is nothing to draw. pygal is imported only here, when a report is written: it costs a
few MiB, where matplotlib (used before) cost ~55 MiB of the run's peak memory. The SVG is shown through an
``<img>`` (a data URI), where it cannot run anything: pygal's tooltip scripts are left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vleval.report.table import short_names

# Metrics followed across saved runs: (metric key, panel title, scale to display units, better).
HISTORY_METRICS = (
    ("accuracy", "pass rate", 1.0, "higher"),
    ("mean_score", "mean score", 1.0, "higher"),
    ("CIDEr", "CIDEr (mean over golden sets)", 1.0, "higher"),
    ("latency_p50", "latency p50 (s, --vl-benchmark)", 1.0, "lower"),
    ("case_seconds_p50", "seconds per case p50 (batched)", 1.0, "lower"),
    ("tokens_per_s", "output tokens / s", 1.0, "higher"),
    ("memory_peak", "peak memory (MiB)", 1 / 2**20, "lower"),
    ("cases_per_s", "cases / hour", 3600.0, "higher"),
)

# matplotlib's tab10, the colours of the earlier PNG plots.
COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
# pygal's comments (they carry the date) and its tooltip script's config (nothing runs in an <img>)
_DROPPED = re.compile(r"<!--.*?-->|<script\b.*?</script>", re.S)


def _chart(kind: str, title: str, width: int, height: int, **config: Any) -> Any:
    """A pygal chart of `kind` ("Bar", "Box", "Line") in the report's style, without scripts."""
    import pygal
    from pygal.style import Style

    style = Style(
        background="white",
        plot_background="white",
        foreground="#333",
        foreground_strong="#222",
        foreground_subtle="#ddd",
        guide_stroke_color="#e6e6e6",
        major_guide_stroke_color="#e6e6e6",
        guide_stroke_dasharray="0",
        major_guide_stroke_dasharray="0",
        font_family="system-ui, 'Segoe UI', 'Noto Sans', 'Noto Sans CJK SC', sans-serif",
        title_font_size=14,
        label_font_size=11,
        major_label_font_size=11,
        legend_font_size=11,
        colors=COLOURS,
        opacity=".75",
        opacity_hover=".9",
    )
    return getattr(pygal, kind)(
        title=title,
        width=width,
        height=height,
        explicit_size=True,
        style=style,
        js=[],
        disable_xml_declaration=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        truncate_legend=40,
        truncate_label=24,
        **config,
    )


def _svg(panels: Sequence[Any], columns: int, name: str) -> bytes:
    """The panels as one SVG document, `columns` to a row (each panel keeps its own size and scoped style)."""
    width = max(p.config.width for p in panels)
    height = max(p.config.height for p in panels)
    rows = (len(panels) + columns - 1) // columns
    parts = []
    for n, panel in enumerate(panels):
        panel.uuid = f"{name}-{n}"  # deterministic ids (pygal draws random ones): the same record, the same bytes
        text = _DROPPED.sub("", panel.render())
        x, y = (n % columns) * width, (n // columns) * height
        parts.append(text.replace("<svg ", f'<svg x="{x}" y="{y}" ', 1))
    total_w, total_h = width * min(columns, len(panels)), height * rows
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
        f'viewBox="0 0 {total_w} {total_h}">'
    )
    return (head + "".join(parts) + "</svg>").encode("utf-8")


def suite_scores(record: Mapping[str, Any]) -> bytes | None:
    """Grouped bars: pass rate and mean score per case file (and overall), one bar per model."""
    models = [m for m in record.get("models", []) if (m.get("eval") or {}).get("cases")]
    suites = sorted({s for m in models for s in (m.get("suites") or {})})
    if not models or not suites:
        return None
    names = short_names(suites)
    groups = ["all", *(names[s] for s in suites)]
    width = min(700, 220 + 34 * len(groups) * max(1, len(models)))
    panels = []
    for key, title in (("accuracy", "pass rate"), ("mean_score", "mean score")):
        chart = _chart("Bar", title, width, 340, range=(0, 1), x_label_rotation=30 if len(groups) > 4 else 0)
        chart.x_labels = groups
        for model in models:
            values = [model["eval"].get(key) or 0.0]
            values += [((model.get("suites") or {}).get(s) or {}).get(key) or 0.0 for s in suites]
            chart.add(str(model["label"]), values)
        panels.append(chart)
    return _svg(panels, 2, "scores")


def latency_distribution(record: Mapping[str, Any]) -> bytes | None:
    """Box plots per model: generation seconds per case (batched) and, with --vl-benchmark, request latency."""
    labels = [str(m["label"]) for m in record.get("models", [])]
    per_case = {
        label: [
            float(c["seconds"])
            for c in record.get("cases", [])
            if c["model"] == label and c.get("seconds") and not c.get("cached")
        ]
        for label in labels
    }
    per_request: dict[str, list[float]] = {label: [] for label in labels}
    for bench in record.get("benchmarks", []):
        if bench.get("model") in per_request:
            per_request[bench["model"]].extend(
                float(v) for v in (bench.get("samples") or {}).get("total_s", []) if v is not None
            )
    panels = []
    for title, data in (
        ("time per case (a batch's time / its size)", per_case),
        ("request latency (--vl-benchmark)", per_request),
    ):
        shown = [label for label in labels if data[label]]
        if not shown:
            continue
        top = max(v for label in shown for v in data[label])
        unit, scale = ("s", 1.0) if top >= 1 else ("ms", 1e3) if top >= 1e-3 else ("µs", 1e6)
        values = [v for label in shown for v in data[label] if v > 0]
        log = bool(values) and max(values) / min(values) > 100
        boxes = {label: [v * scale for v in data[label] if v > 0 or not log] for label in shown}
        if log:
            scale_of: dict[str, Any] = {"logarithmic": True}
        else:
            low, high = _padded([v for box in boxes.values() for v in box])
            scale_of = {"range": (low, high), "zero": low}  # pygal's boxes start at 0 otherwise
        chart = _chart("Box", f"{title} ({unit})", 520, 340, box_mode="tukey", **scale_of)
        for label, box in boxes.items():
            chart.add(label, box)
        panels.append(chart)
    return _svg(panels, 2, "latency") if panels else None


def history(points: Sequence[tuple[str, Mapping[str, Any]]]) -> bytes | None:
    """One panel per metric measured in at least two runs: its value per model across runs, oldest first.
    A model whose weights changed (another fingerprint) since its previous point is marked with a ring."""
    if len(points) < 2:
        return None
    labels: list[str] = []
    for _, record in points:
        for model in record.get("models", []):
            if model["label"] not in labels:
                labels.append(str(model["label"]))
    panels = []
    ticks = [name if len(name) <= 14 else name[:13] + "…" for name, _ in points]
    rings = {label: set(_new_weights(points, label)) for label in labels}  # the same for every metric
    for key, title, scale, _ in HISTORY_METRICS:
        series = _series(points, labels, key, scale)
        counted = sum(1 for i in range(len(points)) if any(ys[i] is not None for ys in series.values()))
        if counted < 2:
            continue
        bounds = _padded([y for ys in series.values() for y in ys if y is not None])
        chart = _chart("Line", title, 520, 300, x_label_rotation=30, dots_size=3, range=bounds)
        chart.x_labels = ticks
        for label, ys in series.items():
            chart.add(label, [_ring(y) if i in rings[label] and y is not None else y for i, y in enumerate(ys)])
        panels.append(chart)
    return _svg(panels, 2, "history") if panels else None


def _series(
    points: Sequence[tuple[str, Mapping[str, Any]]], labels: Sequence[str], key: str, scale: float
) -> dict[str, list[float | None]]:
    """Each model's value of metric `key` per run (None where not measured); models never measured left out."""
    series = {}
    for label in labels:
        ys: list[float | None] = []
        for _, record in points:
            model = next((m for m in record.get("models", []) if m["label"] == label), None)
            value = None if model is None else (model.get("metrics") or {}).get(key)
            ys.append(None if value is None else float(value) * scale)
        if any(y is not None for y in ys):
            series[label] = ys
    return series


def _padded(values: Sequence[float]) -> tuple[float, float]:
    """The y range: the values and 8% of their spread either side (points and whiskers off the frame)."""
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or abs(high) * 0.08 or 1.0
    return low - pad, high + pad


def _ring(value: float) -> dict[str, Any]:
    return {"value": value, "node": {"r": 7}, "style": "fill: none; stroke-width: 2"}


def _new_weights(points: Sequence[tuple[str, Mapping[str, Any]]], label: str) -> list[int]:
    changed, previous = [], None
    for i, (_, record) in enumerate(points):
        model = next((m for m in record.get("models", []) if m["label"] == label), None)
        fingerprint = None if model is None else model.get("fingerprint")
        if fingerprint and previous and fingerprint != previous:
            changed.append(i)
        previous = fingerprint or previous
    return changed
