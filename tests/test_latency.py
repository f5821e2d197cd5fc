"""Latency benchmark items (latency.py) with pytest-benchmark, and memory peaks (memory.py), CPU and mocked GPU."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.backends.base import complete_backend
from pytest_vleval.bench import memory
from pytest_vleval.bench.hooks import accelerator_info
from pytest_vleval.bench.latency import measure, representative_cases
from pytest_vleval.models import Conversation, GenerationFailure, ModelSpec, resolve_model
from pytest_vleval.records.storage import machine_id

from .conftest import make_png, vl_options
from .test_records import suite_project  # noqa: F401  (fixture)


def test_items_per_model_follow_that_models_cases(suite_project: pytest.Pytester) -> None:  # noqa: F811
    result = suite_project.runpytest(
        "test_cases", "--collect-only", "-q", "--vl-model=fake", "--vl-model=weak", "--vl-benchmark=3"
    )
    lines = [line for line in result.stdout.lines if "::" in line]
    assert len(lines) == 26
    # Each file's first case, then the next file's, then each file's second: spread over the case files.
    assert lines[10:13] == [
        "test_cases/test_colour.yaml::bench:c1[fake]",
        "test_cases/test_shape.yaml::bench:s1[fake]",
        "test_cases/test_colour.yaml::bench:c2[fake]",
    ]
    assert all("[fake]" in line for line in lines[:13]) and all("[weak]" in line for line in lines[13:])
    assert lines[-1] == "test_cases/test_colour.yaml::bench:c2[weak]"
    selected = suite_project.runpytest(
        "test_cases", "--collect-only", "-q", "--vl-model=fake", "--vl-benchmark", "-m", "vleval_benchmark"
    )
    assert [line for line in selected.stdout.lines if "::" in line] == lines[10:13]


def test_benchmark_json_carries_our_extra_info(suite_project: pytest.Pytester) -> None:  # noqa: F811
    result = suite_project.runpytest(
        "test_cases",
        "--vl-model=fake",
        "--vl-benchmark=2",
        "--vl-benchmark-rounds=3",
        "--benchmark-json=bench.json",
        "--vl-json=run.json",
    )
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["*benchmark 'vleval fake': 2 tests*"])
    rows = [line for line in result.stdout.lines if line.startswith("bench:")]  # sorted by time: any order
    assert sorted(row.split()[0] for row in rows) == ["bench:c1[fake]", "bench:s1[fake]"]
    bench = json.loads((suite_project.path / "bench.json").read_text())
    machine = bench["machine_info"]["vleval"]
    assert set(machine) >= {"torch", "transformers", "cuda", "driver", "gpus"} and isinstance(machine["gpus"], list)
    assert bench["vleval"]["models"]["fake"]["backend"]["architecture"] == "Fake"
    assert bench["vleval"]["models"]["fake"]["memory"]["load"]["rss_peak_bytes"] > 0
    first, second = sorted(bench["benchmarks"], key=lambda b: b["name"])
    assert second["name"] == "bench:s1[fake]"
    assert first["name"] == "bench:c1[fake]" and first["group"] == "vleval fake"
    assert first["stats"]["rounds"] == 3
    extra = first["extra_info"]
    assert extra["vleval_model"] == "fake" and extra["vleval_case"] == "test_cases/test_colour.yaml::c1"
    assert extra["rounds"] == 3 and extra["warmup_rounds"] == 1 and extra["memory_rss_peak_bytes"] > 0
    record = json.loads((suite_project.path / "run.json").read_text())
    assert [b["case_id"] for b in record["benchmarks"]] == ["c1", "s1"]
    one = record["benchmarks"][0]
    assert one["rounds"] == 3 and len(one["samples"]["total_s"]) == 3 and one["answer"] == "red"
    assert one["stats"]["rounds"] == 3 and one["pytest_benchmark"] is True
    assert one["ttft"] is None  # the fake backend has no generate_timed: end-to-end latency only
    model = record["models"][0]
    assert model["benchmark"]["rounds"] == 6 and model["benchmark"]["latency"]["n"] == 6
    assert model["metrics"]["latency_p50"] == model["benchmark"]["latency"]["p50"]


def test_benchmark_skip_only_and_selection(suite_project: pytest.Pytester) -> None:  # noqa: F811
    skip = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-benchmark=2", "--benchmark-skip")
    skip.assert_outcomes(passed=10, skipped=2)
    only = suite_project.runpytest(
        "test_cases", "--vl-model=fake", "--vl-benchmark=2", "--benchmark-only", "--vl-json=r.json"
    )
    only.assert_outcomes(passed=2, skipped=10)
    record = json.loads((suite_project.path / "r.json").read_text())
    assert record["cases"] == [] and len(record["benchmarks"]) == 2
    picked = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-benchmark=2", "-k", "bench and s1")
    picked.assert_outcomes(passed=1)


def test_works_with_benchmark_autosave_and_compare(suite_project: pytest.Pytester) -> None:  # noqa: F811
    args = ["test_cases", "--vl-model=fake", "--vl-benchmark=1", "--vl-benchmark-rounds=2"]
    suite_project.runpytest(*args, "--benchmark-autosave").assert_outcomes(passed=11)
    saved = list((suite_project.path / ".benchmarks" / machine_id()).glob("0001_*.json"))
    assert len(saved) == 1
    assert json.loads(saved[0].read_text())["benchmarks"][0]["extra_info"]["vleval_model"] == "fake"
    compared = suite_project.runpytest(*args, "--benchmark-compare=0001", "--benchmark-compare-fail=mean:1.0")
    compared.assert_outcomes(passed=11)
    assert compared.ret == 0
    out = compared.stdout.str()  # rows sorted by time: either may come first
    assert "bench:c1[fake] (0001_" in out and "bench:c1[fake] (NOW)" in out


def test_latency_limits_gate_a_benchmarked_run(suite_project: pytest.Pytester) -> None:  # noqa: F811
    args = ["test_cases", "--vl-model=fake", "--vl-benchmark=1", "-k", "c1"]
    suite_project.runpytest(*args, "--vl-save=base").assert_outcomes(passed=2)
    result = suite_project.runpytest(*args, "--vl-compare", "--vl-compare-fail=latency_p50:+1s,memory_peak:+50%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*latency_p50 * +1s * ok*", "*memory_peak * +50% * ok*", "vleval gate passed*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vl-benchmark=0"], "*--vl-benchmark='0': expected a positive integer*"),
        (
            ["--vl-benchmark", "tests/"],
            "*--vl-benchmark='tests/': expected a positive integer (an argument right after it*",
        ),
        (["--vl-benchmark-rounds=x"], "*--vl-benchmark-rounds='x': expected a positive integer*"),
        (["--vl-benchmark-warmup=-1"], "*--vl-benchmark-warmup='-1': expected an integer >= 0*"),
        (["--vl-benchmark", "-p", "no:benchmark"], "*--vl-benchmark needs pytest-benchmark*"),
    ],
)
def test_bad_benchmark_options(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_representative_cases_round_robin_over_files() -> None:
    def case(path: str, cid: str, skip: str | None = None) -> Any:
        return types.SimpleNamespace(path=Path(path), id=cid, skip=skip)

    cases = [
        case("b.yaml", "b1"),
        case("a.yaml", "a1", skip="x"),
        case("a.yaml", "a2"),
        case("b.yaml", "b2"),
        case("a.yaml", "a3"),
    ]
    assert [c.id for c in representative_cases(cases, 3)] == ["a2", "b1", "a3"]
    assert [c.id for c in representative_cases(cases, 10)] == ["a2", "b1", "a3", "b2"]
    assert representative_cases([], 3) == []


def test_measure_and_first_token_clock() -> None:
    from pytest_vleval.backends.hf import FirstTokenClock

    synced = []
    clock = FirstTokenClock(lambda: synced.append(1))
    clock.put("prompt")
    assert clock.first_token_at is None
    clock.put("token")
    clock.put("token")
    clock.end()
    assert clock.first_token_at is not None and synced == [1]

    class Plain:
        spec = ModelSpec("plain", "plain", "plain", False)

        def generate(self, conversations: Any) -> list[Any]:
            return ["an answer"]

    # A backend with only `generate` is timed end to end (the protocol's default generate_timed).
    sample = measure(complete_backend(Plain()), Conversation(images=(), question="q"))
    assert sample["answer"] == "an answer" and sample["total_s"] >= 0 and "ttft_s" not in sample

    class Failing(Plain):
        def generate(self, conversations: Any) -> list[Any]:
            return [GenerationFailure("HTTP 500")]

    with pytest.raises(RuntimeError, match="HTTP 500"):
        measure(complete_backend(Failing()), Conversation(images=(), question="q"))


def test_rss_peaks_are_per_window_and_nest() -> None:
    tracker = memory.PeakTracker()
    tracker.open("outer")
    tracker.open("inner")
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    inner = tracker.close("inner")
    del block
    tracker.open("after")
    after = tracker.close("after")
    outer = tracker.close("outer")
    assert inner["rss_peak_bytes"] >= inner["rss_start_bytes"] + 60 * 2**20
    assert outer["rss_peak_bytes"] >= inner["rss_peak_bytes"]  # folded in before "after" reset the counter
    if sys.platform.startswith("linux") and memory.reset_rss_peak():
        assert inner["rss_peak_scope"] == "window"
        assert after["rss_peak_bytes"] < inner["rss_peak_bytes"]
    assert memory.rss_bytes() and memory.rss_peak_bytes()


class FakeCuda:
    """torch.cuda as the memory module reads it, on two devices."""

    def __init__(self) -> None:
        self.allocated = [100, 300]
        self.reserved = [200, 500]
        self.resets: list[int] = []

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 2

    def max_memory_allocated(self, index: int) -> int:
        return self.allocated[index]

    def max_memory_reserved(self, index: int) -> int:
        return self.reserved[index]

    def reset_peak_memory_stats(self, index: int) -> None:
        self.resets.append(index)
        self.allocated[index] = self.reserved[index] = 0

    def get_device_properties(self, index: int) -> Any:
        return types.SimpleNamespace(name=f"NVIDIA H100 #{index}", total_memory=80 * 2**30, major=9, minor=0)


class FakeNvml:
    """pynvml with this process holding 1 GiB on device 0 and another process on device 1."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        mine = types.SimpleNamespace(pid=self.pid, usedGpuMemory=2**30)
        other = types.SimpleNamespace(pid=self.pid + 1, usedGpuMemory=5 * 2**30)
        return [mine] if handle == 0 else [other]

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"580.65.06"


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    import os

    cuda = FakeCuda()
    torch = types.SimpleNamespace(cuda=cuda, version=types.SimpleNamespace(cuda="12.8"))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(os.getpid()))
    return cuda


def test_gpu_peaks_nvml_and_machine_info_with_mocks(fake_gpu: FakeCuda) -> None:
    assert memory.cuda_peaks() == {"cuda_max_allocated_bytes": 400, "cuda_max_reserved_bytes": 700}
    assert memory.nvml_used_bytes() == 2**30
    assert memory.driver_version() == "580.65.06"
    tracker = memory.PeakTracker()
    tracker.open("model")
    assert fake_gpu.resets == [0, 1]
    fake_gpu.allocated = [1000, 0]
    fake_gpu.reserved = [2048, 0]
    window = tracker.close("model")
    assert window["cuda_max_allocated_bytes"] == 1000 and window["cuda_max_reserved_bytes"] == 2048
    assert window["nvml_used_bytes"] == 2**30 and window["rss_peak_bytes"] > 0
    info = memory.gpu_info()
    assert info == {
        "gpus": [
            {"name": "NVIDIA H100 #0", "memory_bytes": 80 * 2**30, "capability": "9.0"},
            {"name": "NVIDIA H100 #1", "memory_bytes": 80 * 2**30, "capability": "9.0"},
        ],
        "cuda": "12.8",
        "driver": "580.65.06",
    }
    machine = accelerator_info()
    assert machine["gpus"] == info["gpus"] and machine["driver"] == "580.65.06" and machine["torch"]


def test_gpu_memory_is_the_headline_on_a_gpu() -> None:
    from pytest_vleval.records.aggregates import model_metrics

    gpu = {
        "memory": {
            "peak": {"rss_peak_bytes": 5 * 2**30, "cuda_max_allocated_bytes": 2**30, "cuda_max_reserved_bytes": 2**31}
        }
    }
    metrics = model_metrics(gpu, [])
    assert metrics["memory_peak"] == 2**30 and metrics["memory_peak_rss"] == 5 * 2**30
    assert metrics["memory_reserved_cuda"] == 2**31
    cpu = {"memory": {"peak": {"rss_peak_bytes": 5 * 2**30}}}
    assert model_metrics(cpu, [])["memory_peak"] == 5 * 2**30 and "memory_peak_cuda" not in model_metrics(cpu, [])


def test_no_gpu_means_no_gpu_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml fails
    cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert memory.cuda_peaks() is None and memory.gpu_info() == {} and memory.nvml_used_bytes() is None
    monkeypatch.delitem(sys.modules, "torch")
    assert memory.cuda_peaks() is None  # torch not loaded yet: never imported by the memory module


def test_generate_timed_on_a_real_model(random_qwen3vl: Path, tmp_path: Path) -> None:
    from pytest_vleval.backends.hf import TransformersBackend

    image = make_png(tmp_path / "red.png", (64, 64), (220, 20, 20))
    backend = TransformersBackend(resolve_model(str(random_qwen3vl)), vl_options())
    try:
        conversation = Conversation(images=(image,), question="What colour is the shape?", max_new_tokens=6)
        timed = backend.generate_timed(conversation)
        assert timed["answer"] == backend.generate([conversation])[0]
        assert 1 <= timed["output_tokens"] <= 6 and timed["input_tokens"] > 10
        assert 0 < timed["prepare_s"] < timed["total_s"] and 0 < timed["generate_s"] < timed["total_s"]
        assert timed["prepare_s"] < timed["ttft_s"] <= timed["prepare_s"] + timed["generate_s"]
        sample = measure(backend, conversation)
        assert set(sample) >= {"ttft_s", "prepare_s", "generate_s", "output_tokens"}
    finally:
        backend.close()


def test_generate_timed_answers_as_generate_does_for_a_thinking_family(random_qwen3vl: Path, tmp_path: Path) -> None:
    """The benchmark path and the test path post-process the answer the same way (a Thinking model's reasoning
    is dropped by the family's ``postprocess`` in both)."""
    import dataclasses

    from pytest_vleval.backends.families import FamilyAdapter
    from pytest_vleval.backends.hf import TransformersBackend

    class Marked(FamilyAdapter):
        def postprocess(self, answer: str, prompt: str = "") -> str:
            return "<think>why</think>post:" + super().postprocess(answer, prompt)

    class Stripping(Marked):
        def postprocess(self, answer: str, prompt: str = "") -> str:
            return FamilyAdapter.postprocess(self, Marked.postprocess(self, answer, prompt))

    image = make_png(tmp_path / "red.png", (64, 64), (220, 20, 20))
    backend = TransformersBackend(resolve_model(str(random_qwen3vl)), vl_options())
    try:
        fields = {f.name: getattr(backend.family, f.name) for f in dataclasses.fields(backend.family)}
        backend.family = Stripping(**fields)
        conversation = Conversation(images=(image,), question="What colour is the shape?", max_new_tokens=4)
        timed = backend.generate_timed(conversation)["answer"]
        assert timed == backend.generate([conversation])[0]
        assert isinstance(timed, str) and timed.startswith("post:") and "<think>" not in timed
    finally:
        backend.close()


def test_benchmark_items_on_a_real_model(pytester: pytest.Pytester, random_qwen3vl: Path) -> None:
    make_png(pytester.path / "images" / "red.png")
    pytester.makefile(
        ".yaml",
        test_real="cases:\n  - {id: a, image: images/red.png, question: 'What colour?', expected: '^.*$', scorer: regex, max_new_tokens: 4}\n",
    )
    result = pytester.runpytest(
        f"--vl-model={random_qwen3vl}",
        "--vl-device=cpu",
        "--vl-benchmark=1",
        "--vl-benchmark-rounds=2",
        "--benchmark-json=bench.json",
        "--vl-json=run.json",
    )
    result.assert_outcomes(passed=2)
    extra = json.loads((pytester.path / "bench.json").read_text())["benchmarks"][0]["extra_info"]
    assert extra["ttft_s"] > 0 and extra["prepare_s"] > 0 and extra["generate_s"] > 0
    assert extra["output_tokens"] >= 1 and extra["tokens_per_s"] > 0 and extra["input_tokens"] > 10
    record = json.loads((pytester.path / "run.json").read_text())
    (model,) = record["models"]
    # On the CPU the memory numbers are the process's RSS: a loaded model plus torch is well over 100 MiB.
    assert 100 * 2**20 < model["memory"]["load"]["rss_peak_bytes"] <= model["metrics"]["memory_peak"] < 64 * 2**30
    assert model["metrics"]["ttft_p50"] > 0 and model["metrics"]["tokens_per_s"] > 0
    assert model["backend"]["architecture"] == "Qwen3VLForConditionalGeneration" and model["backend"]["parameters"] > 0


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA GPU")
def test_generate_timed_and_memory_on_a_gpu(random_qwen3vl: Path, tmp_path: Path) -> None:
    from pytest_vleval.backends.hf import TransformersBackend

    image = make_png(tmp_path / "red.png", (64, 64), (220, 20, 20))
    tracker = memory.PeakTracker()
    tracker.open("load")
    backend = TransformersBackend(resolve_model(str(random_qwen3vl)), vl_options(device="cuda"))
    try:
        load = tracker.close("load")
        assert (
            load["cuda_max_allocated_bytes"] > 0 and load["cuda_max_reserved_bytes"] >= load["cuda_max_allocated_bytes"]
        )
        timed = backend.generate_timed(Conversation(images=(image,), question="What colour?", max_new_tokens=4))
        assert 0 < timed["ttft_s"] <= timed["total_s"]
        assert accelerator_info()["gpus"] and accelerator_info()["cuda"]
    finally:
        backend.close()


def test_a_case_the_model_cannot_take_skips_its_benchmark(suite_project: pytest.Pytester) -> None:  # noqa: F811
    conftest = suite_project.path / "conftest.py"
    conftest.write_text(
        conftest.read_text()
        + """

from pytest_vleval.models import UnsupportedConversation


class OneImageBackend(FakeBackend):
    def generate(self, conversations):
        answers = super().generate(conversations)
        return [UnsupportedConversation("one image at most") if len(c.images) > 1 else a for c, a in zip(conversations, answers)]


_before = pytest_vleval_load_model


def pytest_vleval_load_model(config, spec, options):
    return OneImageBackend(spec) if spec.requested == "single" else _before(config, spec, options)
"""
    )
    (suite_project.path / "test_cases" / "test_colour.yaml").unlink()
    shape = suite_project.path / "test_cases" / "test_shape.yaml"
    shape.write_text(
        shape.read_text().replace(
            "  - {id: s1,",
            "  - {id: s0, images: [../images/red.png, ../images/blue.png], question: 'say: x', expected: x}\n  - {id: s1,",
        )
    )
    result = suite_project.runpytest("test_cases", "--vl-model=single", "--vl-benchmark=2", "-k", "bench", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*model single: one image at most"])
