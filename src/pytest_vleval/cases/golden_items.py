"""Golden caption sets as tests: one item per (set, model, gated metric), the set scored once per (set, model)
(``scoring/golden.py``). A set without thresholds has one item, ``scores``, that records them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_vleval.cases.casefile import Case
from pytest_vleval.cases.golden import GoldenSet, GoldenSetError, load_golden_set
from pytest_vleval.cases.items import VlItem
from pytest_vleval.records.recorder import attach_result
from pytest_vleval.scoring.golden import golden_cases, metric_failure
from pytest_vleval.session import get_session

__all__ = ["GOLDEN_MARKER", "SCORES_ITEM", "GoldenFileNode", "GoldenItem"]

GOLDEN_MARKER = "vleval_golden"
SCORES_ITEM = "scores"  # the item name of a set with no thresholds: it records the scores


class GoldenItem(VlItem):
    """One gated metric of a golden caption set (or the set's recorded scores), for one model."""

    def __init__(self, *, golden: GoldenSet, cases: list[Case], metric: str | None, **kwargs: Any) -> None:
        self.golden = golden
        self.cases = cases  # shared by the set's items: the predictor plans and answers these objects
        self.metric = metric
        super().__init__(**kwargs)

    def run_test(self, request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        vl = get_session(self.config)
        result, fresh = vl.golden.score(vl.predictor, self.golden, self.cases, self.spec)
        if fresh:  # once per (set, model) and process: the recorder keeps one entry per (set, model)
            attach_result(self, "golden", result.to_dict())
        if self.metric is None:
            if result.errors and len(result.errors) == len(self.golden.images):
                pytest.fail(f"no caption could be generated: {next(iter(result.errors.values()))}", pytrace=False)
            return
        if self.metric in result.skipped:
            # Report the skip at the manifest, not inside pytest's call machinery.
            raise pytest.skip.Exception(
                f"{self.metric} skipped: {result.skipped[self.metric]}", _use_item_location=True
            )
        if self.metric in result.failed:
            pytest.fail(f"{self.metric} failed to run: {result.failed[self.metric]}", pytrace=False)
        message = metric_failure(self.golden, result, self.metric)
        if message is not None:
            pytest.fail(message, pytrace=False)

    def location_name(self) -> str:
        return f"{self.golden.name}::{self.metric or SCORES_ITEM}[{self.spec.label}]"


class GoldenFileNode(pytest.File):
    """A golden caption-set manifest."""

    def collect(self) -> Iterator[pytest.Item]:
        vl = get_session(self.config)
        try:
            golden = load_golden_set(self.path, roots=(self.config.rootpath, *vl.options.data_roots))
        except GoldenSetError as exc:
            raise self.CollectError(str(exc)) from None
        metrics: list[str | None] = list(golden.thresholds) or [None]
        cases = golden_cases(golden)
        marks = [getattr(pytest.mark, GOLDEN_MARKER)]
        for spec in vl.models:
            for metric in metrics:
                name = f"{metric or SCORES_ITEM}[{spec.label}]"
                yield GoldenItem.create(self, name, marks, golden=golden, cases=cases, spec=spec, metric=metric)
