"""Memory peaks of a test process: resident set size, the torch CUDA allocator, and NVML.

The peak counters are process-wide and can only be reset, so :class:`PeakTracker` keeps windows (a model's
load, a model's whole stay, one benchmarked case) that may nest: before a counter is reset for a new window,
the peak so far is folded into every window still open.

- RSS: on Linux the kernel's high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs``, so a
  window's peak is that window's own. Elsewhere the peak is the process's lifetime peak
  (``resource.getrusage``), marked ``"rss_peak_scope": "process"``.
- CUDA: ``torch.cuda.max_memory_allocated``/``max_memory_reserved`` summed over the visible devices, reset with
  ``reset_peak_memory_stats``. Read only when torch is already imported (a model was loaded): this module never
  imports torch itself.
- NVML (``pynvml``, from the ``nvidia-ml-py`` package, when installed): the GPU memory this process holds when a
  window closes, CUDA context included. A sample, not a peak.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

_HWM_RE = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)
_RSS_RE = re.compile(r"^VmRSS:\s+(\d+)\s+kB", re.MULTILINE)
PEAK_KEYS = ("rss_peak_bytes", "cuda_max_allocated_bytes", "cuda_max_reserved_bytes")
MEMORY_PEAKS = (*PEAK_KEYS, "nvml_used_bytes")  # what a merged window keeps the largest of


def _proc_status() -> str | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            return handle.read()
    except OSError:
        return None


def rss_bytes() -> int | None:
    """The resident set size now."""
    status = _proc_status()
    if status and (match := _RSS_RE.search(status)):
        return int(match.group(1)) * 1024
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def rss_peak_bytes() -> int | None:
    """The peak resident set size since the last reset (Linux) or since the process started."""
    status = _proc_status()
    if status and (match := _HWM_RE.search(status)):
        return int(match.group(1)) * 1024
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0). False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _cuda() -> Any | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
    except Exception:
        return None
    return torch.cuda


def cuda_peaks() -> dict[str, int] | None:
    """Allocator peaks summed over the visible CUDA devices, or None without CUDA (or before torch is loaded)."""
    cuda = _cuda()
    if cuda is None:
        return None
    allocated = reserved = 0
    for index in range(cuda.device_count()):
        allocated += int(cuda.max_memory_allocated(index))
        reserved += int(cuda.max_memory_reserved(index))
    return {"cuda_max_allocated_bytes": allocated, "cuda_max_reserved_bytes": reserved}


def reset_cuda_peaks() -> None:
    cuda = _cuda()
    if cuda is None:
        return
    for index in range(cuda.device_count()):
        cuda.reset_peak_memory_stats(index)


def nvml_used_bytes(pid: int | None = None) -> int | None:
    """GPU memory held by this process now according to NVML (all devices), or None without pynvml or a GPU."""
    try:
        import pynvml
    except ImportError:
        return None
    pid = os.getpid() if pid is None else pid
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        used = 0
        found = False
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if process.pid == pid and process.usedGpuMemory is not None:
                    used += int(process.usedGpuMemory)
                    found = True
        return used if found else None
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def gpu_info() -> dict[str, Any]:
    """GPU names, memory, compute capability, CUDA and driver versions; empty without CUDA or before torch loads."""
    cuda = _cuda()
    if cuda is None:
        return {}
    torch = sys.modules["torch"]
    devices = []
    for index in range(cuda.device_count()):
        props = cuda.get_device_properties(index)
        devices.append(
            {
                "name": str(props.name),
                "memory_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return {"gpus": devices, "cuda": getattr(torch.version, "cuda", None), "driver": driver_version()}


def driver_version() -> str | None:
    """The NVIDIA driver version (NVML, else ``nvidia-smi``), or None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        pass
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


class PeakTracker:
    """Named, possibly nested windows over the process-wide peak counters."""

    def __init__(self) -> None:
        self._open: dict[str, dict[str, Any]] = {}
        self.rss_resettable = True

    def _read(self) -> dict[str, int]:
        values: dict[str, int] = {}
        peak = rss_peak_bytes()
        if peak is not None:
            values["rss_peak_bytes"] = peak
        values.update(cuda_peaks() or {})
        return values

    def _fold(self) -> None:
        values = self._read()
        for window in self._open.values():
            for key, value in values.items():
                window[key] = max(int(window.get(key, 0)), value)

    def open(self, name: str) -> None:
        """Start a window (replacing one of the same name); the counters are reset so it measures from now."""
        self._fold()
        self._open.pop(name, None)
        self.rss_resettable = reset_rss_peak() and self.rss_resettable
        reset_cuda_peaks()
        start = rss_bytes()
        self._open[name] = {} if start is None else {"rss_start_bytes": start}

    def is_open(self, name: str) -> bool:
        return name in self._open

    def close(self, name: str) -> dict[str, Any]:
        """End a window: its peaks, the RSS at its start and end, an NVML sample and the RSS peak's scope."""
        self._fold()
        window = self._open.pop(name, {})
        end = rss_bytes()
        if end is not None:
            window["rss_end_bytes"] = end
        used = nvml_used_bytes()
        if used is not None:
            window["nvml_used_bytes"] = used
        if "rss_peak_bytes" in window:
            window["rss_peak_scope"] = "window" if self.rss_resettable else "process"
        return window


def max_merge(windows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Windows measured in several places (xdist workers, repeated loads) as one: the largest of each peak."""
    merged: dict[str, Any] = {}
    for window in windows:
        for key in MEMORY_PEAKS:
            if window.get(key) is not None:
                merged[key] = max(int(merged.get(key, 0)), int(window[key]))
        if window.get("rss_peak_scope") == "process" or ("rss_peak_scope" in window and "rss_peak_scope" not in merged):
            merged["rss_peak_scope"] = window["rss_peak_scope"]
    return merged
