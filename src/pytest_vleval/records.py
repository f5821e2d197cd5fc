"""The run record: one JSON document per run holding everything reports and the gate need (docs/records.md).

The record is built on the process that reports the session (the xdist controller, or the only process) from
what every test process sent: case results (``report.user_properties``), benchmark results, and one snapshot per
process (loaded models, their backend info, memory windows, golden caption-set scores). Nothing here imports
torch; building a record from a run with and without ``-n`` gives the same document except for timings,
memory and the run block.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import subprocess
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_vleval.models import ModelSpec

SCHEMA = "pytest-vleval/run"
SCHEMA_VERSION = 1
CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
LIBRARIES = (
    "pytest-vleval",
    "pytest",
    "pytest-benchmark",
    "pytest-xdist",
    "torch",
    "torchvision",
    "transformers",
    "tokenizers",
    "accelerate",
    "pillow",
    "numpy",
    "pycocoevalcap",
)
MEMORY_PEAKS = ("rss_peak_bytes", "cuda_max_allocated_bytes", "cuda_max_reserved_bytes", "nvml_used_bytes")


class RecordError(Exception):
    """A file is not a run record this version can read; the message names the file."""


def relative(path: str | os.PathLike[str], rootdir: Path) -> str:
    """``path`` relative to the rootdir with forward slashes, or absolute when it lies outside."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(os.path.abspath(rootdir))).as_posix()
    except ValueError:
        return absolute.as_posix()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(values: Iterable[float | None]) -> dict[str, float | int] | None:
    """n, mean, p50, p95, min, max of the non-missing values (None when there are none)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return {
        "n": len(present),
        "mean": sum(present) / len(present),
        "p50": percentile(present, 50),
        "p95": percentile(present, 95),
        "min": min(present),
        "max": max(present),
    }


def aggregate(cases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts, pass rate ("accuracy") and mean score of some case entries."""
    n = len(cases)
    passed = sum(bool(c["passed"]) for c in cases)
    return {
        "cases": n,
        "passed": passed,
        "failed": n - passed,
        "errors": sum(c.get("error") is not None for c in cases),
        "parse_failures": sum(bool(t.get("parse_failed")) for c in cases for t in c.get("turns", [])),
        "accuracy": passed / n if n else None,
        "mean_score": sum(float(c["score"]) for c in cases) / n if n else None,
    }


def scorer_aggregates(cases: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scorer (exact, vqa_accuracy, anls, iou...): turns, passed turns, pass rate and mean score."""
    turns: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for case in cases:
        for turn in case.get("turns", []):
            turns[str(turn["scorer"])].append(turn)
    out = {}
    for scorer, ts in sorted(turns.items()):
        passed = sum(bool(t["passed"]) for t in ts)
        out[scorer] = {
            "turns": len(ts),
            "passed": passed,
            "pass_rate": passed / len(ts),
            "mean_score": sum(float(t["score"]) for t in ts) / len(ts),
            "parse_failures": sum(bool(t.get("parse_failed")) for t in ts),
        }
    return out


def case_entry(
    result: Mapping[str, Any], *, nodeid: str, line: int | None, outcome: str, rootdir: Path
) -> dict[str, Any]:
    """A case of the record from ``CaseResult.to_dict()`` and its test report."""
    return {
        "model": result["model"],
        "suite": relative(result["file"], rootdir),
        "case_id": result["case_id"],
        "nodeid": nodeid,
        "line": line,
        "outcome": outcome,
        "passed": bool(result["passed"]),
        "score": float(result["score"]),
        "error": result.get("error"),
        "seconds": float(result.get("seconds") or 0.0),
        "cached": result.get("cached"),  # answered from the answer cache (then not timed), if the result says
        "images": [relative(p, rootdir) for p in result.get("images", [])],
        "turns": [
            {
                "question": t["question"],
                "expected": t["expected"],
                "answer": t["answer"],
                "scorer": t["scorer"],
                "score": float(t["score"]),
                "threshold": float(t["threshold"]),
                "passed": bool(t["passed"]),
                "detail": t.get("detail", ""),
                "parse_failed": bool(t.get("parse_failed", False)),
            }
            for t in result.get("turns", [])
        ],
    }


def _max_merge(windows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for window in windows:
        for key in MEMORY_PEAKS:
            if window.get(key) is not None:
                merged[key] = max(int(merged.get(key, 0)), int(window[key]))
        if window.get("rss_peak_scope") == "process" or ("rss_peak_scope" in window and "rss_peak_scope" not in merged):
            merged["rss_peak_scope"] = window["rss_peak_scope"]
    return merged


def _headline_memory(window: Mapping[str, Any]) -> int | None:
    """GPU allocator peak where the model ran on a GPU, else the RSS peak."""
    return window.get("cuda_max_allocated_bytes") or window.get("rss_peak_bytes")


def benchmark_summary(benchmarks: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One model's latency items pooled: every measured round of every benchmarked case."""
    if not benchmarks:
        return None
    samples: dict[str, list[float]] = defaultdict(list)
    for bench in benchmarks:
        for key, values in bench.get("samples", {}).items():
            samples[key].extend(v for v in values if v is not None)
    tokens = sum(samples.get("output_tokens", []))
    generate = sum(samples.get("generate_s", []))
    return {
        "cases": len(benchmarks),
        "rounds": len(samples.get("total_s", [])),
        "latency": summarise(samples.get("total_s", [])),
        "ttft": summarise(samples.get("ttft_s", [])),
        "prepare": summarise(samples.get("prepare_s", [])),
        "generate": summarise(samples.get("generate_s", [])),
        "output_tokens": int(tokens) if samples.get("output_tokens") else None,
        "tokens_per_s": tokens / generate if tokens and generate > 0 else None,
        "memory": _max_merge(b.get("memory", {}) for b in benchmarks),
        "pytest_benchmark": all(bool(b.get("pytest_benchmark")) for b in benchmarks),
    }


def model_metrics(model: Mapping[str, Any], golden: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The flat, gate-ready numbers of one model (names as ``--vl-compare-fail`` spells them)."""
    metrics: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            metrics[name] = float(value)

    evaluation = model.get("eval") or {}
    put("accuracy", evaluation.get("accuracy"))
    put("mean_score", evaluation.get("mean_score"))
    for suite, agg in (model.get("suites") or {}).items():
        put(f"accuracy@{suite}", agg.get("accuracy"))
        put(f"mean_score@{suite}", agg.get("mean_score"))
    case_seconds = evaluation.get("case_seconds") or {}
    put("case_seconds_p50", case_seconds.get("p50"))
    put("case_seconds_p95", case_seconds.get("p95"))
    put("cases_per_s", evaluation.get("cases_per_s"))

    per_metric: dict[str, list[float]] = defaultdict(list)
    for entry in golden:
        for metric, value in (entry.get("corpus") or {}).items():
            put(f"{metric}@{entry['set']}", value)
            per_metric[metric].append(float(value))
    for metric, values in per_metric.items():
        put(metric, sum(values) / len(values))

    bench = model.get("benchmark") or {}
    for name, key in (("latency", "latency"), ("ttft", "ttft"), ("prepare", "prepare"), ("generate", "generate")):
        stats = bench.get(key) or {}
        put(f"{name}_p50", stats.get("p50"))
        put(f"{name}_p95", stats.get("p95"))
        if name == "latency":
            put("latency_mean", stats.get("mean"))
    put("tokens_per_s", bench.get("tokens_per_s"))

    memory = model.get("memory") or {}
    peak = _max_merge([memory.get("peak") or {}, memory.get("load") or {}, bench.get("memory") or {}])
    put("memory_peak", _headline_memory(peak))
    put("memory_peak_rss", peak.get("rss_peak_bytes"))
    put("memory_peak_cuda", peak.get("cuda_max_allocated_bytes"))
    put("memory_reserved_cuda", peak.get("cuda_max_reserved_bytes"))
    put("memory_load", _headline_memory(memory.get("load") or {}))
    put("load_seconds", (model.get("load") or {}).get("seconds"))
    return metrics


def model_entry(
    spec: ModelSpec,
    *,
    cases: Sequence[Mapping[str, Any]],
    benchmarks: Sequence[Mapping[str, Any]],
    golden: Sequence[Mapping[str, Any]],
    processes: Sequence[Mapping[str, Any]],
    rootdir: Path,
) -> dict[str, Any]:
    """Everything about one model: what it is, how it loaded, memory, accuracy, latency and throughput."""
    seen = [p["models"][spec.label] for p in processes if spec.label in p.get("models", {})]
    info: dict[str, Any] = {}
    for snapshot in seen:
        info = dict(snapshot.get("info") or {}) or info
    load_seconds = [float(s["info"]["load_seconds"]) for s in seen if (s.get("info") or {}).get("load_seconds")]
    info.pop("load_seconds", None)
    if isinstance(info.get("source"), str) and spec.is_local:
        info["source"] = relative(info["source"], rootdir)
    # Answers read from the answer cache were not generated in this run: they have no time.
    seconds = [float(c["seconds"]) for c in cases if c["seconds"] > 0 and not c.get("cached")]
    total = sum(seconds)
    entry: dict[str, Any] = {
        "label": spec.label,
        "requested": spec.requested,
        "source": relative(spec.source, rootdir) if spec.is_local else spec.source,
        "is_local": spec.is_local,
        "fingerprint": info.get("fingerprint"),
        "backend": info,
        "load": {
            "count": sum(int(s.get("loads", 0)) for s in seen),
            "seconds": sum(load_seconds) / len(load_seconds) if load_seconds else None,
            "processes": len(seen),
            "error": next((s["load_error"] for s in seen if s.get("load_error")), None),
        },
        "memory": {
            "load": _max_merge((s.get("memory") or {}).get("load") or {} for s in seen),
            "peak": _max_merge((s.get("memory") or {}).get("peak") or {} for s in seen),
        },
        "eval": {
            **aggregate(cases),
            "timed_cases": len(seconds),
            "seconds": total,
            "case_seconds": summarise(seconds),
            "cases_per_s": len(seconds) / total if total > 0 else None,
        },
        "suites": {suite: aggregate(cs) for suite, cs in sorted(_group(cases, "suite").items())},
        "scorers": scorer_aggregates(cases),
        "benchmark": benchmark_summary(benchmarks),
        "golden": {g["set"]: dict(g.get("corpus") or {}) for g in golden},
    }
    entry["metrics"] = model_metrics(entry, golden)
    return entry


def _group(items: Iterable[Mapping[str, Any]], key: str) -> dict[Any, list[Mapping[str, Any]]]:
    groups: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for item in items:
        groups[item[key]].append(item)
    return groups


def golden_entry(raw: Mapping[str, Any], *, rootdir: Path, invocation_dir: Path) -> dict[str, Any]:
    """A golden caption-set result (``captioning.GoldenResult.to_dict()``), paths made rootdir-relative and
    each threshold's verdict spelled out."""
    entry = to_jsonable(dict(raw))
    manifest = Path(str(entry.get("manifest", "")))
    if entry.get("manifest") and not manifest.is_absolute():
        manifest = invocation_dir / manifest
    if entry.get("manifest"):
        entry["manifest"] = relative(manifest, rootdir)
    corpus = entry.get("corpus") or {}
    entry["gated"] = {
        metric: {
            "threshold": float(threshold),
            "value": corpus.get(metric),
            "passed": metric in corpus and float(corpus[metric]) >= float(threshold),
        }
        for metric, threshold in (entry.get("thresholds") or {}).items()
    }
    return entry


def build_record(
    *,
    run: dict[str, Any],
    models: Sequence[ModelSpec],
    cases: Sequence[Mapping[str, Any]],
    benchmarks: Sequence[Mapping[str, Any]],
    processes: Sequence[Mapping[str, Any]],
    rootdir: Path,
    invocation_dir: Path,
) -> dict[str, Any]:
    """The whole record. ``cases`` are entries from :func:`case_entry`; ``benchmarks`` the dicts the latency
    items reported; ``processes`` one snapshot per test process (see ``regression.process_snapshot``)."""
    order = {spec.label: n for n, spec in enumerate(models)}
    cases = sorted(
        cases, key=lambda c: (order.get(c["model"], len(order)), c["suite"], c.get("line") or 0, c["case_id"])
    )
    benchmarks = sorted(
        benchmarks, key=lambda b: (order.get(b["model"], len(order)), b["suite"], b.get("line") or 0, b["case_id"])
    )
    golden: dict[tuple[str, str], dict[str, Any]] = {}
    for process in processes:
        for raw in process.get("golden", []):
            entry = golden_entry(raw, rootdir=rootdir, invocation_dir=invocation_dir)
            golden.setdefault((entry["model"], entry.get("manifest") or entry["set"]), entry)
    golden_list = sorted(golden.values(), key=lambda g: (order.get(g["model"], len(order)), g["set"]))
    by_model = _group(cases, "model")
    bench_by_model = _group(benchmarks, "model")
    golden_by_model = _group(golden_list, "model")
    entries = []
    for spec in models:
        touched = (
            spec.label in by_model
            or spec.label in bench_by_model
            or spec.label in golden_by_model
            or any(spec.label in p.get("models", {}) for p in processes)
        )
        if touched:
            entries.append(
                model_entry(
                    spec,
                    cases=by_model.get(spec.label, []),
                    benchmarks=bench_by_model.get(spec.label, []),
                    golden=golden_by_model.get(spec.label, []),
                    processes=processes,
                    rootdir=rootdir,
                )
            )
    gpus = next((p["gpu"] for p in processes if p.get("gpu")), None)
    run = dict(run)
    if gpus:
        run["machine"] = {**run.get("machine", {}), **gpus}
    return to_jsonable(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run": run,
            "models": entries,
            "cases": list(cases),
            "benchmarks": list(benchmarks),
            "golden": golden_list,
            "comparison": None,
        }
    )


def to_jsonable(value: Any) -> Any:
    """Plain JSON types only (tuples to lists, paths and other objects to strings, NaN to None)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def check_record(data: Mapping[str, Any], source: str | os.PathLike[str]) -> dict[str, Any]:
    """``data`` if it is a run record this version reads, else :class:`RecordError` saying what it is."""
    if data.get("schema") != SCHEMA:
        if "benchmarks" in data and "machine_info" in data:
            raise RecordError(
                f"{source} is a pytest-benchmark file, not a pytest-vleval run record; "
                "compare it with --benchmark-compare"
            )
        raise RecordError(f'{source} is not a pytest-vleval run record (no "schema": {SCHEMA!r})')
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise RecordError(f"{source}: bad schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"{source} was written with record schema {version}; this pytest-vleval reads up to "
            f"{SCHEMA_VERSION}: upgrade pytest-vleval"
        )
    return dict(data)


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that change answers or timings (read from metadata, no imports)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        try:
            import psutil
        except ImportError:
            return None
        return int(psutil.virtual_memory().total)


def machine_info() -> dict[str, Any]:
    """The host: OS, CPU, memory, Python (GPUs are added from the processes that loaded torch)."""
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_total(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


def _git(rootdir: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(rootdir), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def commit_info(rootdir: Path) -> dict[str, Any] | None:
    """The git commit of the rootdir's checkout (id, branch, time, uncommitted changes), or None."""
    commit = _git(rootdir, "rev-parse", "HEAD")
    if not commit:
        return None
    branch = _git(rootdir, "rev-parse", "--abbrev-ref", "HEAD")
    status = _git(rootdir, "status", "--porcelain", "--untracked-files=no")
    return {
        "id": commit,
        "branch": "(detached head)" if branch == "HEAD" else branch,
        "time": _git(rootdir, "show", "-s", "--format=%cI", "HEAD"),
        "dirty": bool(status),
    }
