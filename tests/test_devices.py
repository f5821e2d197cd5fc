"""Binding pytest-xdist workers to GPUs: pure logic, tested on the CPU."""

from __future__ import annotations

import pytest

from pytest_vleval.backends.devices import visible_device_count, worker_device


@pytest.mark.parametrize(
    "worker, visible, requested, count, expected",
    [
        ("gw0", None, "auto", 4, "cuda:0"),
        ("gw3", None, "auto", 4, "cuda:3"),
        ("gw1", None, "cuda", 2, "cuda:1"),
        # More workers than GPUs: round-robin, two workers share a GPU.
        ("gw2", None, "auto", 2, "cuda:0"),
        ("gw5", None, "cuda", 2, "cuda:1"),
        # CUDA_VISIBLE_DEVICES renumbers from 0: physical 2 and 3 are cuda:0 and cuda:1 to the process.
        ("gw0", "2,3", "auto", 2, "cuda:0"),
        ("gw1", "2,3", "auto", 2, "cuda:1"),
        ("gw2", "2,3", "auto", 2, "cuda:0"),
        ("gw1", "GPU-8f2c,GPU-1a7e", "auto", 2, "cuda:1"),
        # CUDA stops at the first invalid entry: only two devices are visible here.
        ("gw2", "0,1,-1,2", "auto", 3, "cuda:0"),
        # No GPU visible or none present: the request stands (auto becomes cpu/mps later, cuda a clear error).
        ("gw1", "", "auto", 0, "auto"),
        ("gw1", "", "cuda", 4, "cuda"),
        ("gw0", None, "auto", 0, "auto"),
        # An explicit device is the user's choice.
        ("gw1", None, "cuda:0", 4, "cuda:0"),
        ("gw1", None, "cpu", 4, "cpu"),
        ("gw1", None, "mps", 0, "mps"),
        # Not under xdist: one process, `cuda` may spread a large model over all GPUs (device_map="auto").
        (None, None, "auto", 4, "auto"),
        (None, None, "cuda", 4, "cuda"),
        ("master", None, "cuda", 4, "cuda"),
    ],
)
def test_worker_device(worker: str | None, visible: str | None, requested: str, count: int, expected: str) -> None:
    assert worker_device(worker, visible, requested, count) == expected


def test_every_worker_gets_its_own_gpu_while_there_are_enough() -> None:
    devices = [worker_device(f"gw{n}", "4,5,6,7", "auto", 4) for n in range(4)]
    assert devices == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]


@pytest.mark.parametrize(
    "visible, count", [(None, None), ("", 0), ("0", 1), ("0,1,2", 3), (" 1 , 2 ", 2), ("0,,1", 1), ("-1", 0)]
)
def test_visible_device_count(visible: str | None, count: int | None) -> None:
    assert visible_device_count(visible) == count


def test_the_in_process_backend_binds_through_the_environment(monkeypatch) -> None:
    from pytest_vleval.backends.devices import process_device

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert process_device("auto", 2) == "cuda:1"
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert process_device("auto", 2) == "auto"
