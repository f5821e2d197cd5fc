"""The run state of one pytest session, kept in ``config.stash``."""

from __future__ import annotations

from dataclasses import dataclass, field

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


SESSION_KEY = pytest.StashKey[VlSession]()


def get_session(config: pytest.Config) -> VlSession:
    return config.stash[SESSION_KEY]
