"""A timeline of a pytest-vleval session for the benchmarks (``-p _timeline`` with this folder on PYTHONPATH):
seconds from ``VLEVAL_BENCH_T0`` (the parent's clock just before it started the process) to each step, written
as JSON to ``VLEVAL_TIMELINE`` at the end. Not part of the plugin: it only watches its hooks."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

T0 = float(os.environ.get("VLEVAL_BENCH_T0") or time.time())
STEPS: dict[str, float] = {"plugins imported": time.time() - T0}


def _mark(step: str) -> None:
    STEPS.setdefault(step, time.time() - T0)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _mark("configure")


def pytest_collection_finish(session: pytest.Session) -> None:
    _mark("collected")


def pytest_runtestloop(session: pytest.Session) -> None:
    _mark("first test")


@pytest.hookimpl(wrapper=True)
def pytest_vleval_load_model(config: pytest.Config, spec: Any, options: Any) -> Any:
    _mark("model load starts")
    backend = yield
    _mark("model loaded")
    generate = backend.generate

    def first(conversations: Any) -> Any:
        _mark("first batch starts")
        answers = generate(conversations)
        _mark("first batch done")
        return answers

    backend.generate = first
    return backend


def pytest_sessionfinish(session: pytest.Session) -> None:
    _mark("tests done")


def pytest_unconfigure(config: pytest.Config) -> None:
    _mark("summary written")
    out = os.environ.get("VLEVAL_TIMELINE")
    if out:
        with open(out, "w") as handle:
            json.dump(STEPS, handle)
