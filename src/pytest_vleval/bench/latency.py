"""Latency benchmarks through pytest-benchmark: ``--vl-benchmark[=N]`` adds, per model, N benchmark items.

Each item, ``<case file>::bench:<case id>[<model>]``, asks the model one case's first question alone (batch of
one, straight to the backend: never the batched predictor or an answer cache) in pytest-benchmark's pedantic
mode, warm-up rounds first. Per round it measures end-to-end latency, time to first token, the preprocessing
vs generation split and output tokens per second (the backend's ``generate_timed``: by stage for transformers
and served models, end to end for others); per item the memory peaks. Everything lands in
``benchmark.extra_info`` (so ``--benchmark-json``/``--benchmark-autosave``/``--benchmark-compare`` carry it)
and in the run record.

Under xdist pytest-benchmark turns itself off; the items then time their own rounds, and the record says the
numbers came from parallel workers.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vleval.backends.base import (
    Backend,
    Conversation,
    GenerationFailure,
    ModelSpec,
    TimedAnswer,
    UnsupportedConversation,
)
from pytest_vleval.cases.items import VlItem
from pytest_vleval.records.aggregates import summarise
from pytest_vleval.records.recorder import attach_result
from pytest_vleval.records.schema import relative
from pytest_vleval.session import get_session

if TYPE_CHECKING:
    from pytest_vleval.cases.casefile import Case

__all__ = ["MARKER", "BenchItem", "LatencyItems", "UnsupportedCase", "extra_info", "measure", "representative_cases"]

MARKER = "vleval_benchmark"
_MARKS = (getattr(pytest.mark, MARKER), pytest.mark.usefixtures("benchmark"))
SAMPLE_KEYS = ("total_s", "prepare_s", "generate_s", "decode_s", "ttft_s", "input_tokens", "output_tokens")


def measure(backend: Backend, conversation: Conversation) -> TimedAnswer:
    """One timed request (the backend's ``generate_timed``: by stage where it can, else end to end)."""
    sample = backend.generate_timed(conversation)
    answer = sample.get("answer")
    if isinstance(answer, UnsupportedConversation):
        raise UnsupportedCase(answer.message)
    if isinstance(answer, GenerationFailure):
        raise RuntimeError(answer.message)
    return sample


class UnsupportedCase(Exception):
    """The model's family cannot take this case (e.g. two images for a one-image model): the item skips."""


def representative_cases(cases: Sequence[Case], n: int) -> list[Case]:
    """N cases spread over the case files: each file's first case, then each file's second, and so on
    (skipped cases left out), so a benchmark covers every kind of question before repeating one."""
    by_file: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        if case.skip is None:
            by_file[str(case.path)].append(case)
    queues = [by_file[path] for path in sorted(by_file)]
    chosen: list[Case] = []
    depth = 0
    while len(chosen) < n and any(depth < len(q) for q in queues):
        chosen.extend(q[depth] for q in queues if depth < len(q) and len(chosen) < n)
        depth += 1
    return chosen


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _benchmark_stats(benchmark: Any) -> dict[str, Any] | None:
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is None:
        return None
    out = {}
    for key in ("min", "max", "mean", "median", "stddev", "iqr", "rounds", "ops"):
        try:
            out[key] = getattr(stats, key)
        except Exception:  # pytest-benchmark computes some of these lazily and may fail on one round
            out[key] = None
    return out


class BenchItem(VlItem):
    """A latency benchmark of one case on one model."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        self.case = case
        super().__init__(**kwargs)

    def _conversation(self) -> Conversation:
        """The case's first turn, sent exactly as the accuracy test sends it (predict/asking.py)."""
        vl = get_session(self.config)
        asking = vl.predictor.asking(self.spec)
        return asking.conversation(self.case, 0, [], self.case.max_new_tokens or vl.options.max_new_tokens)

    def run_test(self, request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        benchmark = request.getfixturevalue("benchmark")
        vl = get_session(self.config)
        tracker = vl.recorder.memory
        backend = vl.pool.get(self.spec)  # a model that cannot load fails here, once (VlItem.runtest)
        conversation = self._conversation()
        rounds, warmup = vl.options.bench.rounds, vl.options.bench.warmup
        samples: list[TimedAnswer] = []

        def one_request() -> Any:
            sample = measure(backend, conversation)
            samples.append(sample)
            return sample.get("answer")

        window = f"bench:{self.nodeid}"
        tracker.open(window)
        with_pytest_benchmark = bool(getattr(benchmark, "enabled", False))
        try:
            if with_pytest_benchmark:
                benchmark.group = f"vleval {self.spec.label}"
                benchmark.pedantic(one_request, rounds=rounds, warmup_rounds=warmup, iterations=1)
            else:
                for _ in range(warmup + rounds):
                    one_request()
        except UnsupportedCase as exc:
            tracker.close(window)
            pytest.skip(f"model {self.spec.label}: {exc}")
        except Exception as exc:
            tracker.close(window)
            pytest.fail(
                f"model {self.spec.label!r} failed while benchmarking case {self.case.id!r}: "
                f"{type(exc).__name__}: {exc}",
                pytrace=False,
            )
        memory = tracker.close(window)
        measured = samples[warmup:] or samples
        result = self._result(measured, memory, with_pytest_benchmark, warmup, benchmark)
        if getattr(benchmark, "extra_info", None) is not None:
            benchmark.extra_info.update(extra_info(result))
        attach_result(self, "benchmark", result)

    def _result(
        self, measured: list[TimedAnswer], memory: dict[str, Any], used: bool, warmup: int, benchmark: Any
    ) -> dict[str, Any]:
        series: dict[str, list[Any]] = {key: [s.get(key) for s in measured] for key in SAMPLE_KEYS}
        tokens: list[Any] = [s.get("output_tokens") for s in measured]
        generate: list[Any] = [s.get("generate_s") for s in measured]
        rates = [t / g for t, g in zip(tokens, generate, strict=True) if t is not None and g]
        return {
            "model": self.spec.label,
            "suite": relative(self.case.path, self.config.rootpath),
            "case_id": self.case.id,
            "nodeid": self.nodeid,
            "line": self.case.line,
            "question": self.case.turns[0].shown_question,
            "prompt": get_session(self.config).predictor.asking(self.spec).questions(self.case)[0],
            "answer": measured[-1].get("answer") if measured else None,
            "rounds": len(measured),
            "warmup_rounds": warmup,
            "pytest_benchmark": used,
            "latency": summarise(series["total_s"]),
            "ttft": summarise(series["ttft_s"]),
            "prepare": summarise(series["prepare_s"]),
            "generate": summarise(series["generate_s"]),
            "input_tokens": _median(series["input_tokens"]),
            "output_tokens": _median(tokens),
            "tokens_per_s": _median(rates),
            "memory": memory,
            "stats": _benchmark_stats(benchmark) if used else None,
            "samples": {key: values for key, values in series.items() if any(v is not None for v in values)},
        }

    def location_line(self) -> int:
        return self.case.line - 1

    def location_name(self) -> str:
        return f"bench:{self.case.id}[{self.spec.label}]"


def extra_info(result: dict[str, Any]) -> dict[str, Any]:
    """What a benchmark item adds to pytest-benchmark's ``extra_info`` (medians of the measured rounds)."""
    info: dict[str, Any] = {
        "vleval_model": result["model"],
        "vleval_case": f"{result['suite']}::{result['case_id']}",
        "rounds": result["rounds"],
        "warmup_rounds": result["warmup_rounds"],
    }
    for name in ("ttft", "prepare", "generate"):
        stats = result.get(name)
        if stats:
            info[f"{name}_s"] = stats["p50"]
    for key in ("input_tokens", "output_tokens", "tokens_per_s"):
        if result.get(key) is not None:
            info[key] = result[key]
    for key, value in (result.get("memory") or {}).items():
        info[f"memory_{key}"] = value
    return info


class LatencyItems:
    """Adds the benchmark items at collection, and runs each model's right after its cases."""

    def __init__(self, count: int) -> None:
        self.count = count

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        # Before every other implementation, so -k/-m, --lf and --benchmark-skip/-only see these items too.
        items.extend(self._make(config, items))
        result = yield
        _place_after_their_model(items)
        return result

    def _make(self, config: pytest.Config, items: list[pytest.Item]) -> list[BenchItem]:
        from pytest_vleval.cases.items import CaseItem

        cases = [item for item in items if isinstance(item, CaseItem)]
        made: list[BenchItem] = []
        for spec in get_session(config).models:
            mine = {id(item.case): item for item in cases if item.spec.label == spec.label}
            chosen = representative_cases([item.case for item in mine.values()], self.count)
            for case in chosen:
                parent = mine[id(case)].parent
                assert parent is not None
                name = f"bench:{case.id}[{spec.label}]"
                made.append(BenchItem.create(parent, name, _MARKS, case=case, spec=spec))
        return made


def _place_after_their_model(items: list[pytest.Item]) -> None:
    bench = [item for item in items if isinstance(item, BenchItem)]
    if not bench:
        return
    rest = [item for item in items if not isinstance(item, BenchItem)]
    last: dict[str, int] = {}
    for n, item in enumerate(rest):
        spec = getattr(item, "spec", None)
        if isinstance(spec, ModelSpec):
            last[spec.label] = n
    after: dict[int, list[pytest.Item]] = defaultdict(list)
    tail: list[pytest.Item] = []
    for item in bench:
        label = item.spec.label
        (after[last[label]] if label in last else tail).append(item)
    ordered: list[pytest.Item] = []
    for n, item in enumerate(rest):
        ordered.append(item)
        ordered.extend(after.get(n, []))
    items[:] = ordered + tail
