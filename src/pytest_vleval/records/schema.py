"""The run record: one JSON document per run holding everything reports and the gate need (docs/records.md).

The record is built on the process that reports the session (the xdist controller, or the only process) from
what every test process sent: case results (``report.user_properties``), benchmark results, and one snapshot per
process (loaded models, their backend info, memory windows, golden caption-set scores). Nothing here imports
torch; building a record from a run with and without ``-n`` gives the same document except for timings,
memory and the run block.
"""

from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_vleval.backends.base import ModelSpec
from pytest_vleval.bench.memory import max_merge
from pytest_vleval.records.aggregates import (
    aggregate,
    benchmark_summary,
    cache_summary,
    dialogue_depth,
    invariance_summary,
    judge_summary,
    model_metrics,
    prediction_summary,
    scorer_aggregates,
    summarise,
)
from pytest_vleval.scoring.caption_inputs import METRICS

SCHEMA = "pytest-vleval/run"
SCHEMA_VERSION = 1
CAPTION_METRICS = METRICS  # the COCO caption metrics, in pycocoevalcap's order


class RecordError(Exception):
    """A file is not a run record this version can read; the message names the file."""


def relative(path: str | os.PathLike[str], rootdir: Path) -> str:
    """``path`` relative to the rootdir with forward slashes, or absolute when it lies outside."""
    text = os.fspath(path)
    return _relative(text, os.fspath(rootdir), "" if os.path.isabs(text) else os.getcwd())


@functools.lru_cache(maxsize=65536)  # a suite's cases share their file and, often, their images
def _relative(path: str, rootdir: str, cwd: str) -> str:  # cwd: part of the key for a relative path
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(os.path.abspath(rootdir))).as_posix()
    except ValueError:
        return absolute.as_posix()


def case_entry(
    result: Mapping[str, Any], *, nodeid: str, line: int | None, outcome: str, rootdir: Path
) -> dict[str, Any]:
    """A case of the record from ``CaseResult.to_dict()`` and its test report: plain JSON types already (the
    record does not copy its cases again: a 200,000-case record is millions of values)."""
    return {
        "model": str(result["model"]),
        "suite": relative(result["file"], rootdir),
        "case_id": str(result["case_id"]),
        "nodeid": nodeid,
        "line": line,
        "outcome": outcome,
        "passed": bool(result["passed"]),
        "score": _number(result["score"]),
        "error": to_jsonable(result.get("error")),
        "seconds": float(result.get("seconds") or 0.0),
        "cached": to_jsonable(result.get("cached")),  # answered from the answer cache (then not timed)
        "images": [relative(p, rootdir) for p in result.get("images", [])],
        "turns": [_turn_entry(t) for t in result.get("turns", [])],
        "vision_tokens": to_jsonable(result.get("vision_tokens")),
        "pixels": to_jsonable(result.get("pixels", [None, None])),
        # a dialogue's depth: turns right in a row from the first (None for single questions and CircularEval)
        "turns_held": to_jsonable(result.get("turns_held")),
        # `error` is the judge's (its verdict unreadable, or it could not be asked): the answer was not scored
        "judge_error": bool(result.get("judge_error", False)),
    }


def _turn_entry(t: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "question": to_jsonable(t["question"]),
        "expected": to_jsonable(t["expected"]),
        "answer": to_jsonable(t["answer"]),
        "scorer": str(t["scorer"]),
        "score": _number(t["score"]),
        "threshold": _number(t["threshold"]),
        "passed": bool(t["passed"]),
        "detail": to_jsonable(t.get("detail", "")),
        "parse_failed": bool(t.get("parse_failed", False)),
        "prompt": to_jsonable(t.get("prompt", t["question"])),
        "extracted": to_jsonable(t.get("extracted", t["answer"])),
        "answer_steps": [str(step) for step in t.get("answer_steps", [])],
        "format_issue": to_jsonable(t.get("format_issue")),
        "judge": to_jsonable(t.get("judge")),  # scorer judge: verdicts, reasons, the judge's identity
    }


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


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
    load_seconds = [
        float(s["info"]["load_seconds"]) for s in seen if (s.get("info") or {}).get("load_seconds") is not None
    ]
    info.pop("load_seconds", None)
    if isinstance(info.get("source"), str) and spec.is_local:
        info["source"] = relative(info["source"], rootdir)
    runs = [p["prediction"]["models"][spec.label] for p in processes if spec.label in _predicted(p)]
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
            "load": max_merge((s.get("memory") or {}).get("load") or {} for s in seen),
            "peak": max_merge((s.get("memory") or {}).get("peak") or {} for s in seen),
        },
        "eval": _evaluation(cases),
        "suites": {suite: aggregate(cs) for suite, cs in sorted(_group(cases, "suite").items())},
        "scorers": scorer_aggregates(cases),
        "dialogue": dialogue_depth(cases),
        "judge": judge_summary(cases),
        "prediction": prediction_summary(runs),
        "benchmark": benchmark_summary(benchmarks),
        "golden": {g["set"]: dict(g.get("corpus") or {}) for g in golden},
    }
    entry["metrics"] = model_metrics(entry, golden)
    return entry


def _evaluation(cases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    # Answers read from the answer cache were not generated in this run: they have no time.
    seconds = [float(c["seconds"]) for c in cases if c["seconds"] > 0 and not c.get("cached")]
    total = sum(seconds)
    return {
        **aggregate(cases),
        "timed_cases": len(seconds),
        "seconds": total,
        "case_seconds": summarise(seconds),
        "cases_per_s": len(seconds) / total if total > 0 else None,
    }


def _predicted(process: Mapping[str, Any]) -> Mapping[str, Any]:
    return (process.get("prediction") or {}).get("models") or {}


def _group(items: Iterable[Mapping[str, Any]], key: str) -> dict[Any, list[Mapping[str, Any]]]:
    groups: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for item in items:
        groups[item[key]].append(item)
    return groups


def golden_entry(raw: Mapping[str, Any], *, rootdir: Path, invocation_dir: Path) -> dict[str, Any]:
    """A golden caption-set result (``scoring.golden.GoldenResult.to_dict()``), paths made rootdir-relative and
    each threshold's verdict spelled out."""
    entry = to_jsonable(dict(raw))
    manifest = Path(str(entry.get("manifest", "")))
    if entry.get("manifest") and not manifest.is_absolute():
        manifest = invocation_dir / manifest
    if entry.get("manifest"):
        entry["manifest"] = relative(manifest, rootdir)
    for image in (entry.get("images") or {}).values():
        if isinstance(image, dict) and image.get("path"):
            image["path"] = relative(image["path"], rootdir)
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
    golden: Sequence[Mapping[str, Any]],
    processes: Sequence[Mapping[str, Any]],
    rootdir: Path,
) -> dict[str, Any]:
    """The whole record. ``cases`` are entries from :func:`case_entry`, ``golden`` from :func:`golden_entry` (one
    per set and model); ``benchmarks`` the dicts the latency items reported; ``processes`` one snapshot per test
    process (``Recorder.snapshot``)."""
    order = {spec.label: n for n, spec in enumerate(models)}

    def position(entry: Mapping[str, Any]) -> tuple[Any, ...]:
        return (order.get(entry["model"], len(order)), entry["suite"], entry.get("line") or 0, entry["case_id"])

    cases = sorted(cases, key=position)
    benchmarks = sorted(benchmarks, key=position)
    golden = sorted(golden, key=lambda g: (order.get(g["model"], len(order)), g["set"]))
    by_model, bench_by_model, golden_by_model = (
        _group(cases, "model"),
        _group(benchmarks, "model"),
        _group(golden, "model"),
    )
    entries = [
        model_entry(
            spec,
            cases=by_model.get(spec.label, []),
            benchmarks=bench_by_model.get(spec.label, []),
            golden=golden_by_model.get(spec.label, []),
            processes=processes,
            rootdir=rootdir,
        )
        for spec in models
        if spec.label in by_model
        or spec.label in bench_by_model
        or spec.label in golden_by_model
        or any(spec.label in p.get("models", {}) or spec.label in _predicted(p) for p in processes)
    ]
    run = dict(run)
    gpus = next((p["gpu"] for p in processes if p.get("gpu")), None)
    if gpus:
        run["machine"] = {**run.get("machine", {}), **gpus}
    predictions = [p.get("prediction") or {} for p in processes]
    run["answer_cache"] = cache_summary([p["cache"] for p in predictions if p.get("cache")])
    run["batch_invariance"] = invariance_summary([p.get("invariance") for p in predictions])
    record = to_jsonable(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "run": run,
            "models": entries,
            "cases": [],
            "benchmarks": list(benchmarks),
            "golden": list(golden),
            "comparison": None,
        }
    )
    record["cases"] = cases  # case_entry made them JSON already
    return record


def to_jsonable(value: Any) -> Any:
    """Plain JSON types only (tuples to lists, paths and other objects to strings, NaN to None)."""
    kind = type(value)  # the common exact types first: a 200,000-case record is millions of leaves
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k if type(k) is str else str(k): to_jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_jsonable(v) for v in value]
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
