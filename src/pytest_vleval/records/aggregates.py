"""The numbers a record holds about a set of cases, benchmarks or processes: counts, pass rates, latency stats,
the gate-ready metrics of a model, and the prediction pass merged over the test processes."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_vleval.bench.memory import max_merge

__all__ = [
    "aggregate",
    "benchmark_summary",
    "cache_summary",
    "dialogue_depth",
    "invariance_summary",
    "judge_summary",
    "model_metrics",
    "percentile",
    "prediction_summary",
    "scorer_aggregates",
    "summarise",
]


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
    """Counts, pass rate ("accuracy") and mean score of some case entries. A case whose judge failed
    (`judge_error`) was not scored: it counts among the errors, not in the accuracy or the mean score."""
    scored = [c for c in cases if not c.get("judge_error")]
    n = len(scored)
    passed = sum(bool(c["passed"]) for c in scored)
    return {
        "cases": len(cases),
        "passed": passed,
        "failed": n - passed,
        "errors": sum(c.get("error") is not None for c in cases),
        "judge_errors": len(cases) - n,
        "parse_failures": sum(bool(t.get("parse_failed")) for c in cases for t in c.get("turns", [])),
        # Failed turns with the right content in the wrong form (scoring/diagnosis.py), apart from wrong answers.
        "format_failures": sum(bool(t.get("format_issue")) for c in cases for t in c.get("turns", [])),
        "accuracy": passed / n if n else None,
        "mean_score": sum(float(c["score"]) for c in scored) / n if n else None,
    }


def judge_identity(turn: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """What a judged turn's score depends on besides the answer: the judge, its fingerprint, the template."""
    judge = turn.get("judge")
    if not judge or judge.get("error"):
        return None
    return (judge.get("judge"), judge.get("fingerprint"), judge.get("template"), judge.get("template_sha256"))


def judge_summary(cases: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Who judged this model's judged turns and how: the judge and template (one identity, normally), verdicts
    asked and reused from the cache, repeats, mean agreement between repeats, unreadable verdicts; None without
    judged turns."""
    turns = [t for c in cases for t in c.get("turns", []) if t.get("judge")]
    if not turns:
        return None
    graded = [t for t in turns if t["judge"].get("fallback") is None]
    identities = sorted({i for i in map(judge_identity, turns) if i is not None}, key=str)
    verdicts = [v for t in turns for v in t["judge"].get("verdicts") or []]
    agreements = [float(t["judge"]["agreement"]) for t in turns if t["judge"].get("agreement") is not None]
    return {
        "identities": [
            {"judge": j, "fingerprint": f, "template": name, "template_sha256": sha} for j, f, name, sha in identities
        ],
        "turns": len(graded),
        "verdicts": len(verdicts),
        "cached": sum(bool(v.get("cached")) for v in verdicts),
        "repeat": max((len(t["judge"].get("verdicts") or []) for t in graded), default=0),
        "agreement": sum(agreements) / len(agreements) if agreements else None,
        "errors": sum(bool(t["judge"].get("error")) for t in graded),
        "fallback_parses": sum(v.get("parsed_by") == "fallback" for v in verdicts),
        "rubrics": sorted({str(t["judge"]["rubric"]) for t in turns if t["judge"].get("rubric")}),
        # multiple-choice answers the rules could not read, sent to the judge (VLMEvalKit's fallback)
        "choice_fallbacks": sum(t["judge"].get("fallback") == "choice" for t in turns),
        "choice_read": sum(t["judge"].get("fallback") == "choice" and bool(t["judge"].get("letter")) for t in turns),
    }


def dialogue_depth(cases: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """How long a model holds a dialogue: over the dialogue cases, the mean number of turns right in a row from the
    first, and how many dialogues held 0, 1, 2, ... turns (also by dialogue length); None without dialogues."""
    held = [(int(c["turns_held"]), len(c.get("turns") or [])) for c in cases if c.get("turns_held") is not None]
    if not held:
        return None
    by_length: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for depth, length in held:
        by_length[str(length)][str(depth)] += 1
    return {
        "dialogues": len(held),
        "turns_held_mean": sum(depth for depth, _ in held) / len(held),
        "held_all": sum(depth == length for depth, length in held),
        "distribution": dict(sorted(Counter(str(depth) for depth, _ in held).items(), key=lambda kv: int(kv[0]))),
        "by_length": {
            length: dict(sorted(d.items(), key=lambda kv: int(kv[0])))
            for length, d in sorted(by_length.items(), key=lambda kv: int(kv[0]))
        },
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
            "format_failures": sum(bool(t.get("format_issue")) for t in ts),
        }
    return out


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
        "memory": max_merge(b.get("memory", {}) for b in benchmarks),
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
    put("turns_held", (model.get("dialogue") or {}).get("turns_held_mean"))

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
    peak = max_merge([memory.get("peak") or {}, memory.get("load") or {}, bench.get("memory") or {}])
    put("memory_peak", _headline_memory(peak))
    put("memory_peak_rss", peak.get("rss_peak_bytes"))
    put("memory_peak_cuda", peak.get("cuda_max_allocated_bytes"))
    put("memory_reserved_cuda", peak.get("cuda_max_reserved_bytes"))
    put("memory_load", _headline_memory(memory.get("load") or {}))
    put("load_seconds", (model.get("load") or {}).get("seconds"))
    return metrics


def prediction_summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One model's prediction pass over every process that ran it (``ModelRun.to_dict()`` each): cases planned
    (each xdist worker plans the whole selection), answered from the cache, generated, batches, failures."""
    if not runs:
        return None
    ooms = [r["oom_batch"] for r in runs if r.get("oom_batch") is not None]
    caps = [r["batch_cap"] for r in runs if r.get("batch_cap") is not None]
    return {
        "planned": max(int(r["planned"]) for r in runs),
        "cached": sum(int(r["cached"]) for r in runs),
        "generated": sum(int(r["generated"]) for r in runs),
        "batches": sum(int(r["batches"]) for r in runs),
        "seconds": sum(float(r["seconds"]) for r in runs),
        "failed": [f for r in runs for f in r.get("failed", [])],
        "oom_batch": max(ooms) if ooms else None,
        "batch_cap": min(caps) if caps else None,
    }


def cache_summary(caches: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The answer cache over every process: where it is, answers reused and stored, why it was off or unused."""
    if not caches:
        return None
    on = [c for c in caches if c.get("root")]
    if not on:
        return {"off": caches[0].get("off") or "off"}
    not_used: dict[str, str] = {}
    for cache in on:
        not_used.update(cache.get("not_used") or {})
    return {
        "off": None,
        "root": on[0]["root"],
        "refreshing": any(bool(c.get("refreshing")) for c in on),
        "hits": sum(int(c.get("hits") or 0) for c in on),
        "writes": sum(int(c.get("writes") or 0) for c in on),
        "write_error": next((c["write_error"] for c in on if c.get("write_error")), None),
        "not_used": not_used,
    }


def invariance_summary(checks: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """``--vl-check-batch-invariance`` over every process: cases checked, the ones that answered differently."""
    done = [c for c in checks if c is not None]
    if not done:
        return None
    return {
        "checked": sum(int(c["checked"]) for c in done),
        "differences": [d for c in done for d in c.get("differences", [])],
    }
