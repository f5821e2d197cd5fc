"""The record's ``run`` block: when, where, with what and how it was run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_vleval.options import VlOptions

__all__ = [
    "LIBRARIES",
    "commit_info",
    "completeness",
    "incomplete_reason",
    "library_versions",
    "machine_info",
    "run_info",
]

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


def run_info(
    config: pytest.Config, options: VlOptions, started: datetime, clock: float, processes: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    from pytest_vleval.bench.hooks import benchmark_status
    from pytest_vleval.records.recorder import is_controller
    from pytest_vleval.records.schema import relative
    from pytest_vleval.records.storage import machine_id

    run_options: dict[str, Any] = {
        "models": list(options.models),
        "device": options.device,
        "dtype": options.dtype,
        "max_new_tokens": options.max_new_tokens,
        "batch_size": options.batch_size,
        "benchmark": options.bench.items,
        "benchmark_rounds": options.bench.rounds,
        "benchmark_warmup": options.bench.warmup,
    }
    if options.report.cost_per_hour is not None:
        run_options["gpu_cost_per_hour"] = options.report.cost_per_hour
    return {
        "name": options.record.save or None,
        "started": _iso(started),
        "finished": _iso(datetime.now(timezone.utc)),
        "duration_s": round(time.perf_counter() - clock, 3),
        "args": [str(a) for a in config.invocation_params.args],
        "rootdir": str(config.rootpath),
        "invocation_dir": relative(config.invocation_params.dir, config.rootpath),
        "exitstatus": None,  # set once the gate has spoken
        "complete": None,  # these two are set at session finish (completeness)
        "incomplete_reason": None,
        "machine_id": machine_id(),
        "machine": machine_info(),
        "commit": commit_info(Path(config.rootpath)),
        "versions": library_versions(),
        "options": run_options,
        "xdist": {"workers": sum(1 for p in processes if p.get("worker"))} if is_controller(config) else None,
        "pytest_benchmark": benchmark_status(config),
    }


def completeness(exitstatus: int, collection_errors: int, results: int) -> dict[str, Any]:
    """The run block's ``complete`` and ``incomplete_reason``. A run that was interrupted, lost case files to
    collection errors or recorded no result holds fewer cases than the suite: as a baseline its missing cases would
    read as a changed suite, so ``--vl-autosave`` does not store it and ``--vl-compare`` refuses it."""
    reason = None
    if collection_errors:
        reason = "collection errors"
    elif exitstatus == pytest.ExitCode.INTERRUPTED:
        reason = "interrupted"
    elif not results:
        reason = "no case ran"
    return {"complete": reason is None, "incomplete_reason": reason}


def incomplete_reason(record: Mapping[str, Any]) -> str | None:
    """Why a record is incomplete, or None; a record written before ``complete`` existed counts as complete."""
    run = record.get("run")
    if isinstance(run, Mapping) and run.get("complete") is False:
        return str(run.get("incomplete_reason") or "incomplete")
    return None


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions of the libraries that change answers or timings (read from metadata, no imports)."""
    versions: dict[str, str | None] = {}
    for name in names:
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
