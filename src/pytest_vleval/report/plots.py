"""The HTML report's plots, drawn with matplotlib into PNG bytes (no pyplot: no global state, no display).

Every function takes run records (docs/records.md) and returns PNG bytes, or None when there is nothing to draw.
matplotlib is imported only here, when a report is written.
"""

from __future__ import annotations

import io
import warnings
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


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a layout that cannot fit long labels is still worth drawing
        warnings.simplefilter("ignore", UserWarning)
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _clip(label: str, width: int = 24) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def suite_scores(record: Mapping[str, Any]) -> bytes | None:
    """Grouped bars: pass rate and mean score per case file (and overall), one bar per model."""
    models = [m for m in record.get("models", []) if (m.get("eval") or {}).get("cases")]
    suites = sorted({s for m in models for s in (m.get("suites") or {})})
    if not models or not suites:
        return None
    names = short_names(suites)
    groups = ["all", *(_clip(names[s]) for s in suites)]
    width = min(14.0, 3.0 + 0.55 * len(groups) * max(1, len(models)) / 2 + 0.6 * len(groups))
    figure = _figure(width, 3.4)
    axes = figure.subplots(1, 2, sharey=True)
    bar = 0.8 / len(models)
    for ax, (key, title) in zip(axes, (("accuracy", "pass rate"), ("mean_score", "mean score")), strict=True):
        for n, (model, colour) in enumerate(zip(models, _colours(len(models)), strict=True)):
            values = [model["eval"].get(key) or 0.0]
            values += [((model.get("suites") or {}).get(s) or {}).get(key) or 0.0 for s in suites]
            xs = [i + (n - (len(models) - 1) / 2) * bar for i in range(len(groups))]
            ax.bar(xs, values, bar, label=_clip(str(model["label"]), 40), color=colour)
        ax.set_title(title)
        ax.set_xticks(
            range(len(groups)),
            groups,
            rotation=30 if len(groups) > 4 else 0,
            ha="right" if len(groups) > 4 else "center",
        )
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize="small", loc="lower right")
    return _png(figure)


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
    panels = [
        (title, data)
        for title, data in (
            ("time per case (a batch's time / its size)", per_case),
            ("request latency (--vl-benchmark)", per_request),
        )
        if any(data.values())
    ]
    if not panels:
        return None
    figure = _figure(6.5 * len(panels), 0.9 + 0.45 * max(2, len(labels)))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, data) in zip(axes, panels, strict=True):
        shown = [label for label in labels if data[label]]
        top = max(v for label in shown for v in data[label])
        unit, scale = ("s", 1.0) if top >= 1 else ("ms", 1e3) if top >= 1e-3 else ("µs", 1e6)
        title = f"{title} ({unit})"
        parts = ax.boxplot(
            [[v * scale for v in data[label]] for label in shown],
            orientation="horizontal",
            patch_artist=True,
            widths=0.6,
        )
        for patch, colour in zip(parts["boxes"], _colours(len(shown)), strict=True):
            patch.set_facecolor(colour)
            patch.set_alpha(0.6)
        ax.set_yticks(range(1, len(shown) + 1), [_clip(label) for label in shown])
        values = [v for label in shown for v in data[label] if v > 0]
        if values and max(values) / min(values) > 100:
            ax.set_xscale("log")
        ax.set_title(title, fontsize="medium")
        ax.grid(axis="x", alpha=0.3)
    return _png(figure)


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
    for key, title, scale, _ in HISTORY_METRICS:
        series = {}
        for label in labels:
            ys = []
            for _, record in points:
                model = next((m for m in record.get("models", []) if m["label"] == label), None)
                value = None if model is None else (model.get("metrics") or {}).get(key)
                ys.append(None if value is None else float(value) * scale)
            if sum(y is not None for y in ys) >= 1:
                series[label] = ys
        counted = sum(1 for i in range(len(points)) if any(ys[i] is not None for ys in series.values()))
        if counted >= 2:
            panels.append((key, title, series))
    if not panels:
        return None
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + columns - 1) // columns
    figure = _figure(6.0 * columns, 2.6 * rows + 0.3)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    ticks = [name if len(name) <= 14 else name[:13] + "…" for name, _ in points]
    colours = dict(zip(labels, _colours(len(labels)), strict=True))
    for ax, (_key, title, series) in zip(axes, panels, strict=False):
        for label, ys in series.items():
            xs = [i for i, y in enumerate(ys) if y is not None]
            ax.plot(xs, [ys[i] for i in xs], marker="o", markersize=4, label=_clip(label, 40), color=colours[label])
            for i in _new_weights(points, label):
                if ys[i] is not None:
                    ax.plot([i], [ys[i]], marker="o", markersize=10, fillstyle="none", color=colours[label])
        ax.set_title(title, fontsize="medium")
        ax.set_xticks(range(len(points)), ticks, rotation=30, ha="right", fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small")
    return _png(figure)


def _new_weights(points: Sequence[tuple[str, Mapping[str, Any]]], label: str) -> list[int]:
    changed, previous = [], None
    for i, (_, record) in enumerate(points):
        model = next((m for m in record.get("models", []) if m["label"] == label), None)
        fingerprint = None if model is None else model.get("fingerprint")
        if fingerprint and previous and fingerprint != previous:
            changed.append(i)
        previous = fingerprint or previous
    return changed
