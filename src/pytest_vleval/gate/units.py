"""The metrics the gate knows: which way is better, the unit kind, and how their values and changes read."""

from __future__ import annotations

from pytest_vleval.records.schema import CAPTION_METRICS

__all__ = ["HIGHER", "LOWER", "METRICS", "UNITS", "change_text", "format_value", "metric_kind"]

HIGHER, LOWER = "higher", "lower"
# metric -> (which way is better, unit kind)
METRICS: dict[str, tuple[str, str]] = {
    "accuracy": (HIGHER, "rate"),
    "mean_score": (HIGHER, "score"),
    "turns_held": (HIGHER, "score"),  # a dialogue's depth: turns right in a row from the first, mean over dialogues
    **{name: (HIGHER, "score") for name in CAPTION_METRICS},
    "latency_p50": (LOWER, "seconds"),
    "latency_p95": (LOWER, "seconds"),
    "latency_mean": (LOWER, "seconds"),
    "ttft_p50": (LOWER, "seconds"),
    "ttft_p95": (LOWER, "seconds"),
    "prepare_p50": (LOWER, "seconds"),
    "prepare_p95": (LOWER, "seconds"),
    "generate_p50": (LOWER, "seconds"),
    "generate_p95": (LOWER, "seconds"),
    "tokens_per_s": (HIGHER, "throughput"),
    "case_seconds_p50": (LOWER, "seconds"),
    "case_seconds_p95": (LOWER, "seconds"),
    "cases_per_s": (HIGHER, "throughput"),
    "load_seconds": (LOWER, "seconds"),
    "memory_peak": (LOWER, "bytes"),
    "memory_peak_rss": (LOWER, "bytes"),
    "memory_peak_cuda": (LOWER, "bytes"),
    "memory_reserved_cuda": (LOWER, "bytes"),
    "memory_load": (LOWER, "bytes"),
}
UNITS = {
    "": 1.0,
    "%": 1.0,
    "pp": 0.01,
    "ms": 1e-3,
    "s": 1.0,
    "B": 1.0,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KiB": 2.0**10,
    "MiB": 2.0**20,
    "GiB": 2.0**30,
}


def metric_kind(metric: str) -> str:
    """The unit kind of a metric name as the record spells it (``accuracy@test_colour.yaml`` is a rate)."""
    return METRICS.get(metric.split("@", 1)[0], ("", "score"))[1]


def _seconds(value: float, sign: str = "") -> str:
    if abs(value) >= 1:
        return f"{value:{sign}.2f} s"
    if abs(value) >= 1e-3 or value == 0:
        return f"{value * 1e3:{sign}.1f} ms"
    return f"{value * 1e6:{sign}.1f} us"


def format_value(kind: str, value: float | None) -> str:
    if value is None:
        return "-"
    if kind == "seconds":
        return _seconds(value)
    if kind == "bytes":
        return f"{value / 2**30:.2f} GiB" if abs(value) >= 2**30 else f"{value / 2**20:.1f} MiB"
    if kind == "throughput":
        return f"{value:.1f}/s"
    return f"{value:.3f}"


def change_text(kind: str, before: float | None, after: float | None, separator: str = " (", end: str = ")") -> str:
    """`after` against `before` in the metric's unit, with the relative change."""
    if before is None or after is None:
        return ""
    diff = after - before
    if kind in ("rate", "score"):
        text = f"{diff:+.3f}"
    elif kind == "seconds":
        text = _seconds(diff, "+")
    elif kind == "bytes":
        text = f"{diff / 2**20:+.1f} MiB"
    else:
        text = f"{diff:+.1f}/s"
    if before:
        text += f"{separator}{diff / abs(before):+.1%}{end}"
    return text
