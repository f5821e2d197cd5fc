"""The model comparison table: one row per model, built from a run record (docs/records.md).

The same table ends the terminal summary of a run with several models, heads the HTML report and is printed by
``python -m pytest_vleval report``. Columns: pass rate and mean score overall and per case file, caption metrics
per golden set, latency p50/p95, tokens per second, peak memory, throughput (cases per hour) and, given a GPU
price per hour, the estimated cost of 1,000 requests. The best value of each column is marked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

HIGHER, LOWER = "higher", "lower"
# Caption metrics shown per golden set (in this order), besides the set's gated ones.
CAPTION_COLUMNS = ("CIDEr", "Bleu_4", "METEOR", "ROUGE_L", "SPICE")
CAPTION_NAMES = {"Bleu_4": "BLEU-4", "ROUGE_L": "ROUGE-L"}
BEST_MARK = "*"
Segment = tuple[str, dict[str, bool]]


@dataclass(frozen=True)
class Column:
    group: str  # "all", a case file's short name, a golden set, "latency", "" for ungrouped
    name: str  # "pass", "score", "CIDEr", "p50", ...
    kind: str  # rate, score, caption, seconds, bytes, bytes_exact, tokens, per_hour, usd, ratio, delta_rate, ...
    better: str  # HIGHER or LOWER; "" for a column without a best value (a delta, a ratio)
    title: str = ""  # what the column means (HTML tooltip)


@dataclass
class ComparisonTable:
    models: list[str]
    columns: list[Column] = field(default_factory=list)
    values: list[list[float | None]] = field(default_factory=list)  # values[row][column]
    notes: list[str] = field(default_factory=list)

    def best(self, column: int) -> set[int]:
        """Rows holding the best value of a column, as displayed: none when fewer than two rows have a value or
        every value reads the same."""
        kind, better = self.columns[column].kind, self.columns[column].better
        if better not in (HIGHER, LOWER):  # a delta or a ratio: no best
            return set()
        present = {row: value for row, values in enumerate(self.values) if (value := values[column]) is not None}
        shown = {row: format_cell(kind, value) for row, value in present.items()}
        if len(present) < 2 or len(set(shown.values())) == 1:
            return set()
        pick = max if better == HIGHER else min
        target = shown[pick(present, key=lambda row: present[row])]
        return {row for row, text in shown.items() if text == target}


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """Case files by a short name: ``test_cases/test_colour.yaml`` -> ``colour`` (the path where names clash)."""
    shorts = {}
    for path in paths:
        stem = PurePosixPath(path).stem
        shorts[path] = stem[5:] if stem.startswith("test_") and len(stem) > 5 else stem
    counts: dict[str, int] = {}
    for short in shorts.values():
        counts[short] = counts.get(short, 0) + 1
    return {path: short if counts[short] == 1 else path for path, short in shorts.items()}


def metric_value(model: Mapping[str, Any], name: str) -> float | None:
    value = (model.get("metrics") or {}).get(name)
    return None if value is None else float(value)


Add = Callable[[Column, Sequence[float | None]], None]


def column_adder(table: ComparisonTable) -> Add:
    """A function that adds a column (its values, one per model) to ``table``; a column without any value is left
    out."""
    table.values = [[] for _ in table.models]

    def add(column: Column, values: Sequence[float | None]) -> None:
        if all(v is None for v in values):
            return
        table.columns.append(column)
        for row, value in zip(table.values, values, strict=True):
            row.append(value)

    return add


def build_table(record: Mapping[str, Any], *, cost_per_hour: float | None = None) -> ComparisonTable:
    """The comparison table of a record's models. ``cost_per_hour`` (USD per GPU hour) adds the cost column."""
    models = [m for m in record.get("models", []) if isinstance(m, Mapping)]
    table = ComparisonTable(models=[str(m["label"]) for m in models])
    add = column_adder(table)
    _score_columns(models, add)
    _caption_columns(record, models, add)
    _speed_columns(models, add, table.notes, cost_per_hour)
    if any(table.best(i) for i in range(len(table.columns))):
        table.notes.insert(0, f"{BEST_MARK} best of the column")
    return table


def _score_columns(models: Sequence[Mapping[str, Any]], add: Add) -> None:
    if any((m.get("eval") or {}).get("cases") for m in models):
        add(
            Column("all", "pass", "rate", HIGHER, "cases passed / cases"), [metric_value(m, "accuracy") for m in models]
        )
        add(Column("all", "score", "score", HIGHER, "mean case score"), [metric_value(m, "mean_score") for m in models])
        add(
            Column("dialogue", "turns held", "score", HIGHER, "dialogues: turns right in a row from the first, mean"),
            [metric_value(m, "turns_held") for m in models],
        )
    suites = sorted({suite for m in models for suite in (m.get("suites") or {})})
    for suite, short in short_names(suites).items():
        add(
            Column(short, "pass", "rate", HIGHER, f"{suite}: cases passed / cases"),
            [metric_value(m, f"accuracy@{suite}") for m in models],
        )
        add(
            Column(short, "score", "score", HIGHER, f"{suite}: mean case score"),
            [metric_value(m, f"mean_score@{suite}") for m in models],
        )


def _caption_columns(record: Mapping[str, Any], models: Sequence[Mapping[str, Any]], add: Add) -> None:
    sets: dict[str, list[str]] = {}
    for entry in record.get("golden") or []:
        gated = list((entry.get("thresholds") or {}).keys())
        names = sets.setdefault(str(entry["set"]), [])
        for metric in [*CAPTION_COLUMNS, *gated]:
            if metric not in names and metric in (entry.get("corpus") or {}):
                names.append(metric)
    for name, metrics in sorted(sets.items()):
        for metric in metrics:
            add(
                Column(
                    name, CAPTION_NAMES.get(metric, metric), "caption", HIGHER, f"golden set {name}: corpus {metric}"
                ),
                [metric_value(m, f"{metric}@{name}") for m in models],
            )


def _speed_columns(
    models: Sequence[Mapping[str, Any]], add: Add, notes: list[str], cost_per_hour: float | None
) -> None:
    """Latency, tokens, memory, throughput and cost; a note for each column shown (none for an absent one), and
    one that says why the cost asked for cannot be given when nothing was generated (every answer cached)."""
    benchmarked = any(metric_value(m, "latency_p50") is not None for m in models)
    prefix = "latency" if benchmarked else "case_seconds"
    what = (
        "one request alone, --vl-benchmark rounds" if benchmarked else "per case in batches: a batch's time / its size"
    )
    latency = {q: [metric_value(m, f"{prefix}_{q}") for m in models] for q in ("p50", "p95")}
    if any(v is not None for values in latency.values() for v in values):
        notes.append(
            "latency: one request alone, end to end (--vl-benchmark rounds)"
            if benchmarked
            else "latency: generation time per case in batches (a batch's time / its size); "
            "--vl-benchmark measures single requests"
        )
    for q, values in latency.items():
        add(Column("latency", q, "seconds", LOWER, f"latency {q}, {what}"), values)
    tokens = [metric_value(m, "tokens_per_s") for m in models]
    add(Column("", "tok/s", "tokens", HIGHER, "output tokens per second of generation (--vl-benchmark)"), tokens)
    if all(t is None for t in tokens) and benchmarked:
        notes.append("tok/s: needs a backend that counts tokens")
    add(
        Column("", "peak mem", "bytes", LOWER, "CUDA allocator peak on a GPU, else the process's RSS peak"),
        [metric_value(m, "memory_peak") for m in models],
    )
    per_hour = [None if (v := metric_value(m, "cases_per_s")) is None else v * 3600 for m in models]
    add(Column("", "cases/h", "per_hour", HIGHER, "cases answered per hour of generation (batched)"), per_hour)
    if cost_per_hour is None:
        return
    cost = [None if not rate else cost_per_hour / rate * 1000 for rate in per_hour]
    add(Column("", "$/1k req", "usd", LOWER, f"USD per 1,000 requests at ${cost_per_hour:g}/h"), cost)
    if any(c is not None for c in cost):
        notes.append(
            f"$/1k req: ${cost_per_hour:g} per GPU hour / cases per hour x 1000 (estimate, at the measured throughput)"
        )
    else:
        notes.append(
            f"$/1k req: not computed although --vl-gpu-cost-per-hour={cost_per_hour:g} was given: no answer was "
            "generated in this run (all came from the answer cache), so there is no throughput; "
            "--vl-refresh regenerates them"
        )


def format_cell(kind: str, value: float | None) -> str:
    if value is None:
        return "-"
    if kind == "rate":
        return f"{value:.1%}"
    if kind in ("score", "caption"):
        return f"{value:.3f}"
    if kind == "seconds":
        if abs(value) >= 1:
            return f"{value:.2f} s"
        return f"{value * 1e3:.1f} ms" if abs(value) >= 1e-3 or value == 0 else f"{value * 1e6:.0f} us"
    if kind == "bytes":
        return f"{value / 2**30:.2f} GiB" if abs(value) >= 2**30 else f"{value / 2**20:.0f} MiB"
    if kind == "bytes_exact":  # weights: small models differ below a MiB
        return f"{value / 2**30:.2f} GiB" if abs(value) >= 2**30 else f"{value / 2**20:.2f} MiB"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "delta_rate":
        return f"{value * 100:+.1f}pp"
    if kind == "delta_score":
        return f"{value:+.3f}"
    if kind == "tokens":
        return f"{value:.1f}"
    if kind == "per_hour":
        return f"{value:,.0f}"
    if kind == "usd":
        return f"${value:.2f}" if value >= 10 else f"${value:.3f}" if value >= 0.01 else f"${value:.2g}"
    return f"{value:g}"


BEST_MARKUP = {"green": True, "bold": True}


Group = tuple[str, list[int]]  # a group label and the indices of its columns


def _layout(table: ComparisonTable, cells: list[list[str]], width: int) -> tuple[list[int], int, list[list[Group]]]:
    """Column widths, the model column's width, and the groups of columns cut into blocks of at most `width`."""
    widths = [
        max(len(col.name), *(len(cells[r][i]) + len(BEST_MARK) for r in range(len(table.models))))
        for i, col in enumerate(table.columns)
    ]
    groups: list[Group] = []
    for i, col in enumerate(table.columns):
        if groups and groups[-1][0] == col.group:
            groups[-1][1].append(i)
        else:
            groups.append((col.group, [i]))
    for label, members in groups:  # a group label wider than its columns widens the group's last column
        span = sum(widths[i] for i in members) + 2 * (len(members) - 1)
        if len(label) > span:
            widths[members[-1]] += len(label) - span
    first = max(len("model"), *(len(m) for m in table.models))
    blocks: list[list[Group]] = [[]]
    used = first
    for group in groups:
        span = sum(widths[i] + 2 for i in group[1]) + 1
        if blocks[-1] and used + span > width:
            blocks.append([])
            used = first
        blocks[-1].append(group)
        used += span
    return widths, first, blocks


def text_lines(table: ComparisonTable, width: int = 120) -> list[list[Segment]]:
    """The table as lines of (text, markup) segments, columns wrapped into blocks of at most ``width``
    characters (each block repeats the model column). Best cells end with ``*`` and carry bold green markup."""
    if not table.models or not table.columns:
        return []
    cells = [[format_cell(c.kind, row[i]) for i, c in enumerate(table.columns)] for row in table.values]
    best = [table.best(i) for i in range(len(table.columns))]
    widths, first, blocks = _layout(table, cells, width)
    lines: list[list[Segment]] = []
    for n, block in enumerate(blocks):
        if n:
            lines.append([("", {})])
        top = "".ljust(first)
        sub = "model".ljust(first)
        for label, members in block:
            span = sum(widths[i] for i in members) + 2 * (len(members) - 1)
            top += (" | " if label else "   ") + label.ljust(span)
            sub += " | " + "  ".join(table.columns[i].name.rjust(widths[i]) for i in members)
        if any(label for label, _ in block):
            lines.append([(top.rstrip(), {})])
        lines.append([(sub, {})])
        lines.append([("-" * len(sub), {})])
        for r, label in enumerate(table.models):
            segments: list[Segment] = [(label.ljust(first), {})]
            for _, members in block:
                segments.append((" | ", {}))
                for k, i in enumerate(members):
                    if k:
                        segments.append(("  ", {}))
                    text = cells[r][i]
                    if r in best[i]:
                        segments.append((" " * (widths[i] - len(text) - 1), {}))
                        segments.append((text + BEST_MARK, dict(BEST_MARKUP)))
                    else:
                        segments.append(((text + " " * len(BEST_MARK)).rjust(widths[i]), {}))
            lines.append(segments)
    lines.extend([(f"  {note}", {})] for note in table.notes)
    return lines


def plain_lines(table: ComparisonTable, width: int = 120) -> list[str]:
    """:func:`text_lines` without markup (the ``*`` marks stay)."""
    return ["".join(text for text, _ in line).rstrip() for line in text_lines(table, width)]
