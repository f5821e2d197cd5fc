"""pytest-benchmark integration: whether it is timing, and the models and accelerator in its saved JSON."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_vleval.records.schema import relative
from pytest_vleval.session import get_session

__all__ = ["BenchmarkHooks", "accelerator_info", "benchmark_status"]


def benchmark_status(config: pytest.Config) -> dict[str, Any]:
    """Whether pytest-benchmark is loaded and timing, and if not, why."""
    if not config.pluginmanager.has_plugin("benchmark"):
        return {"active": False, "enabled": False, "reason": "not loaded"}
    session = config.pluginmanager.get_plugin("pytest-benchmark")  # its BenchmarkSession
    worker = hasattr(config, "workerinput") or bool(os.environ.get("PYTEST_XDIST_WORKER"))
    if (worker or config.getoption("dist", "no") != "no") and not config.getoption("benchmark_skip", False):
        return {"active": True, "enabled": False, "reason": "xdist"}
    if session is not None and getattr(session, "disabled", False):
        return {"active": True, "enabled": False, "reason": "--benchmark-disable"}
    return {"active": True, "enabled": True, "reason": None}


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
        from pytest_vleval.records.schema import to_jsonable

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
                "memory": vl.recorder.model_memory.get(spec.label, {}),
            }
        output_json["vleval"] = to_jsonable({"models": models})


def accelerator_info() -> dict[str, Any]:
    """torch/transformers versions, CUDA, driver and GPUs (an empty GPU list without one)."""
    from pytest_vleval.bench.memory import gpu_info
    from pytest_vleval.records.run_info import library_versions

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
