"""Public path of model specs and the backend interface, kept for user code and conftest hooks: the
implementation lives in :mod:`pytest_vleval.backends` (``base.py``: the protocol and its data types;
``registry.py``: aliases and resolution)."""

from __future__ import annotations

from pytest_vleval.backends import base as _base
from pytest_vleval.backends import registry as _registry
from pytest_vleval.backends.base import *  # noqa: F403
from pytest_vleval.backends.registry import *  # noqa: F403

__all__ = [*_base.__all__, *_registry.__all__]
