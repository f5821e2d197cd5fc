"""Public path of the procedural scene generator, kept for user code: the implementation lives in
:mod:`pytest_vleval.builtin.scenes` (with the built-in models it trains; drawing in ``builtin/render.py``)."""

from __future__ import annotations

from pytest_vleval.builtin import scenes as _scenes
from pytest_vleval.builtin.scenes import *  # noqa: F403

__all__ = list(_scenes.__all__)
