"""Public path of the xdist-worker-to-GPU binding, kept for user code: the implementation lives in
:mod:`pytest_vleval.backends.devices`."""

from __future__ import annotations

from pytest_vleval.backends.devices import process_device, visible_device_count, worker_device

__all__ = ["process_device", "visible_device_count", "worker_device"]
