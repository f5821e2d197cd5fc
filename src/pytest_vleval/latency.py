"""Latency benchmarks through pytest-benchmark: ``--vl-benchmark[=N]`` adds, per model, N benchmark items.

Each item, ``<case file>::bench:<case id>[<model>]``, asks the model one case's first question alone (batch of
one, straight to the backend: never the batched predictor or an answer cache) in pytest-benchmark's pedantic
mode, warm-up rounds first. Per round it measures end-to-end latency, time to first token, the preprocessing
vs generation split and output tokens per second (the transformers backend's ``generate_timed``; other
backends give end-to-end latency only); per item the memory peaks. Everything lands in
``benchmark.extra_info`` (so ``--benchmark-json``/``--benchmark-autosave``/``--benchmark-compare`` carry it)
and in the run record.

Under xdist pytest-benchmark turns itself off; the items then time their own rounds, and the record says the
numbers came from parallel workers.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vleval.models import Conversation, GenerationFailure, ModelSpec
from pytest_vleval.records import relative, summarise
from pytest_vleval.session import get_session

if TYPE_CHECKING:
    from pytest_vleval.cases import Case

MARKER = "vleval_benchmark"
SAMPLE_KEYS = ("total_s", "prepare_s", "generate_s", "decode_s", "ttft_s", "input_tokens", "output_tokens")


class FirstTokenClock:
    """A generation streamer that notes when the first new token reaches the host.

    ``generate`` hands the prompt to ``put`` first, then each new token; the second call is the first token.
    """

    def __init__(self, sync: Callable[[], None] = lambda: None) -> None:
        self._sync = sync
        self._calls = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        self._calls += 1
        if self._calls == 2:
            self._sync()
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


def measure(backend: Any, conversation: Conversation) -> dict[str, Any]:
    """One timed request: the backend's own ``generate_timed`` when it has one, else end-to-end only."""
    timed = getattr(backend, "generate_timed", None)
    if callable(timed):
        sample = dict(timed(conversation))
    else:
        started = time.perf_counter()
        answers = backend.generate([conversation])
        sample = {"answer": answers[0], "total_s": time.perf_counter() - started}
    answer = sample.get("answer")
    if isinstance(answer, GenerationFailure):
        if type(answer).__name__ == "UnsupportedConversation":
            raise UnsupportedCase(answer.message)
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


def _bench_function() -> Any:
    def vleval_latency(request: pytest.FixtureRequest, benchmark: Any) -> None:
        __tracebackhide__ = True
        item = request.node
        assert isinstance(item, BenchItem)
        item.run_benchmark(benchmark)

    vleval_latency.pytestmark = [getattr(pytest.mark, MARKER)]  # type: ignore[attr-defined]
    return vleval_latency


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


class BenchItem(pytest.Function):
    """A latency benchmark of one case on one model."""

    def __init__(self, *, case: Case, spec: ModelSpec, **kwargs: Any) -> None:
        self.case = case
        self.spec = spec
        super().__init__(**kwargs)

    def _conversation(self) -> Conversation:
        vl = get_session(self.config)
        turn = self.case.turns[0]
        return Conversation(
            images=self.case.images,
            question=turn.question,
            system=self.case.system,
            max_new_tokens=self.case.max_new_tokens or vl.options.max_new_tokens,
        )

    def run_benchmark(self, benchmark: Any) -> None:
        __tracebackhide__ = True
        from pytest_vleval.predict import PredictionError

        vl = get_session(self.config)
        state = vl.run
        try:
            backend = vl.pool.get(self.spec)
        except PredictionError as exc:
            pytest.fail(str(exc), pytrace=False)
        conversation = self._conversation()
        rounds, warmup = state.options.benchmark_rounds, state.options.benchmark_warmup
        samples: list[dict[str, Any]] = []

        def one_request() -> Any:
            sample = measure(backend, conversation)
            samples.append(sample)
            return sample.get("answer")

        window = f"bench:{self.nodeid}"
        state.memory.open(window)
        with_pytest_benchmark = bool(getattr(benchmark, "enabled", False))
        try:
            if with_pytest_benchmark:
                benchmark.group = f"vleval {self.spec.label}"
                benchmark.pedantic(one_request, rounds=rounds, warmup_rounds=warmup, iterations=1)
            else:
                for _ in range(warmup + rounds):
                    one_request()
        except UnsupportedCase as exc:
            state.memory.close(window)
            pytest.skip(f"model {self.spec.label}: {exc}")
        except Exception as exc:
            state.memory.close(window)
            pytest.fail(
                f"model {self.spec.label!r} failed while benchmarking case {self.case.id!r}: "
                f"{type(exc).__name__}: {exc}",
                pytrace=False,
            )
        memory = state.memory.close(window)
        measured = samples[warmup:] or samples
        result = self._result(measured, memory, with_pytest_benchmark, warmup, benchmark)
        if getattr(benchmark, "extra_info", None) is not None:
            benchmark.extra_info.update(extra_info(result))
        self.user_properties.append(("vleval-benchmark", result))

    def _result(
        self, measured: list[dict[str, Any]], memory: dict[str, Any], used: bool, warmup: int, benchmark: Any
    ) -> dict[str, Any]:
        series = {key: [s.get(key) for s in measured] for key in SAMPLE_KEYS}
        tokens = [s.get("output_tokens") for s in measured]
        generate = [s.get("generate_s") for s in measured]
        rates = [t / g for t, g in zip(tokens, generate, strict=True) if t is not None and g]
        return {
            "model": self.spec.label,
            "suite": relative(self.case.path, self.config.rootpath),
            "case_id": self.case.id,
            "nodeid": self.nodeid,
            "line": self.case.line,
            "question": self.case.turns[0].question,
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

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.case.line - 1, f"bench:{self.case.id}[{self.spec.label}]"


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
        from pytest_vleval.collect import CaseItem

        cases = [item for item in items if isinstance(item, CaseItem)]
        made: list[BenchItem] = []
        for spec in get_session(config).models:
            mine = {id(item.case): item for item in cases if item.spec.label == spec.label}
            chosen = representative_cases([item.case for item in mine.values()], self.count)
            for case in chosen:
                parent = mine[id(case)].parent
                made.append(
                    BenchItem.from_parent(
                        parent, name=f"bench:{case.id}[{spec.label}]", callobj=_bench_function(), case=case, spec=spec
                    )
                )
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


class BenchmarkHooks:
    """pytest-benchmark hooks, registered only when pytest-benchmark is active: GPU, library versions and the
    models (fingerprint, backend info, memory) in its machine info and saved JSON."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl
    def pytest_benchmark_update_machine_info(self, config: pytest.Config, machine_info: dict[str, Any]) -> None:
        machine_info["vleval"] = accelerator_info()

    @pytest.hookimpl
    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
        from pytest_vleval.records import to_jsonable

        vl = get_session(config)
        models = {}
        for spec in vl.models:
            info = vl.pool.infos.get(spec.label)
            if info is None:
                continue
            models[spec.label] = {
                "requested": spec.requested,
                "source": relative(spec.source, config.rootpath) if spec.is_local else spec.source,
                "fingerprint": info.get("fingerprint"),
                "backend": info,
                "memory": vl.run.model_memory.get(spec.label, {}) if vl.run is not None else {},
            }
        output_json["vleval"] = to_jsonable({"models": models})


def accelerator_info() -> dict[str, Any]:
    """torch/transformers versions, CUDA, driver and GPUs (an empty GPU list without one)."""
    from pytest_vleval.memory import gpu_info
    from pytest_vleval.records import library_versions

    try:
        import torch  # noqa: F401  (gpu_info reads torch only once it is imported)
    except ImportError:
        pass
    versions = library_versions()
    info: dict[str, Any] = {
        "torch": versions.get("torch"),
        "transformers": versions.get("transformers"),
        "pytest_vleval": versions.get("pytest-vleval"),
        "cuda": None,
        "driver": None,
        "gpus": [],
    }
    info.update(gpu_info())
    return info
