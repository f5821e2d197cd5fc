"""Which GPU a test process uses. Pure functions (no torch) so the binding is testable on any machine."""

from __future__ import annotations

import os
import re

_WORKER_RE = re.compile(r"^gw(\d+)$")


def visible_device_count(visible: str | None) -> int | None:
    """How many devices ``CUDA_VISIBLE_DEVICES`` exposes, or None when it is unset.

    CUDA reads the list up to the first invalid entry: ``"0,1,-1,2"`` exposes two devices, ``""`` none.
    """
    if visible is None:
        return None
    count = 0
    for entry in visible.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-") or not (entry.isdigit() or entry.upper().startswith(("GPU-", "MIG-"))):
            break
        count += 1
    return count


def worker_device(worker_id: str | None, visible: str | None, requested: str, device_count: int) -> str:
    """The device for this process: under pytest-xdist, worker ``gwN`` gets its own GPU, ``cuda:N``.

    ``worker_id`` is ``PYTEST_XDIST_WORKER`` (None or "master" without xdist), ``visible`` is
    ``CUDA_VISIBLE_DEVICES``, ``device_count`` is what torch sees. CUDA renumbers the visible devices from 0,
    so with ``CUDA_VISIBLE_DEVICES=2,3`` worker gw0 gets ``cuda:0`` (physical GPU 2) and gw1 ``cuda:1``
    (physical GPU 3). More workers than GPUs share them round-robin (gw2 -> ``cuda:0`` on two GPUs).
    Only ``auto`` and ``cuda`` are bound: ``cuda:N``, ``cpu`` and ``mps`` are the user's explicit choice, and
    without xdist or without GPUs ``requested`` comes back unchanged (``cuda`` then means one process spreading a
    large model over every GPU with ``device_map="auto"``).
    """
    if requested not in ("auto", "cuda") or worker_id is None:
        return requested
    match = _WORKER_RE.match(worker_id)
    if match is None:
        return requested
    count = device_count
    exposed = visible_device_count(visible)
    if exposed is not None:
        count = min(count, exposed)
    if count < 1:
        return requested
    return f"cuda:{int(match.group(1)) % count}"


def process_device(requested: str, device_count: int) -> str:
    """:func:`worker_device` for this process, from its environment."""
    return worker_device(
        os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("CUDA_VISIBLE_DEVICES"), requested, device_count
    )
