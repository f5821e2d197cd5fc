"""The run state of one pytest session, kept in ``config.stash``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_vleval.models import ModelSpec
from pytest_vleval.options import VlOptions
from pytest_vleval.outcome import CaseResult
from pytest_vleval.predict import BatchPredictor, ModelPool


@dataclass
class VlSession:
    options: VlOptions
    models: list[ModelSpec]
    pool: ModelPool
    predictor: BatchPredictor
    results: list[CaseResult] = field(default_factory=list)
    # Golden caption sets: one dict per (set, model), see captioning.GoldenResult.to_dict().
    golden_results: list[dict[str, Any]] = field(default_factory=list)
    # Shared by every golden set of the session (one METEOR start-up), closed at session end.
    caption_evaluator: Any = None
    # (manifest path, model label) -> captioning.GoldenResult, so each set is scored once per model.
    golden_scored: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Saved runs, the regression gate and latency items (regression.RunState), set in pytest_configure.
    run: Any = None


SESSION_KEY = pytest.StashKey[VlSession]()


def get_session(config: pytest.Config) -> VlSession:
    return config.stash[SESSION_KEY]
