"""Hooks that pytest-vleval offers to conftest.py files and other plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_vleval.backends.base import Backend, ModelSpec
    from pytest_vleval.options import VlOptions


@pytest.hookspec(firstresult=True)
def pytest_vleval_load_model(config: pytest.Config, spec: ModelSpec, options: VlOptions) -> Backend | None:
    """Load a model the built-in loader does not know (a remote-code family, another runtime).

    Return an object with the :class:`pytest_vleval.models.Backend` interface, or None to let the next
    implementation try. ``spec``, ``info``, ``generate(conversations) -> list[str]`` and ``close()`` are enough:
    the optional capabilities (``input_length``, ``unsupported``, ``generate_timed``, ``preferred_batch_size``,
    ``fingerprint``) get their defaults (``pytest_vleval.models.BackendBase`` has them, to subclass). The built-in
    loader (served models, then transformers) runs last.
    """


@pytest.hookspec
def pytest_vleval_update_record(config: pytest.Config, record: dict[str, Any]) -> None:
    """Add to (or change) this run's record before it is compared and saved (docs/records.md).

    Called on the process that reports the session (the xdist controller). Put extra data under a key of your
    own, e.g. ``record["run"]["ci"] = {"job": ...}``, so that it does not clash with later schema keys.
    """
