"""Which cases the predictor generates, and in which order.

`prediction_work(items)` is the run's plan: every selected, not skipped case of every model, golden-set
captions included, in run order. On an xdist worker the plan is narrowed to the worker's own queue.

Every xdist worker collects the whole run, but the controller hands each worker its own tests, a few at a
time. A worker that batched the next cases in collection order would generate answers for tests another
worker runs (and that worker would generate them again). `WorkerQueue` reads the worker's pending queue
instead: the test after the running one and those the controller has already sent.

xdist keeps that queue on its `WorkerInteractor` plugin (`nextitem_index` and `torun`, a locked deque of
item indices, in pytest-xdist 3.x). Those are not a public API: when they are missing or look different,
`upcoming()` returns None and the caller falls back to planning in collection order (correct answers,
possibly some duplicated work).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_vleval.backends.base import ModelSpec
    from pytest_vleval.cases.casefile import Case
    from pytest_vleval.predict.predictor import BatchPredictor

__all__ = ["WorkerQueue", "group_by_model", "plan", "prediction_work", "worker_queue"]


def group_by_model(items: list[pytest.Item], models: Sequence[ModelSpec]) -> None:
    """Run each model's items together (in place), so a model is loaded once and freed before the next."""
    from pytest_vleval.cases.items import VlItem

    positions = [i for i, item in enumerate(items) if isinstance(item, VlItem)]
    order = {spec.label: n for n, spec in enumerate(models)}
    grouped = sorted((items[i] for i in positions), key=lambda item: order[item.spec.label])  # type: ignore[attr-defined]
    for position, item in zip(positions, grouped, strict=True):
        items[position] = item


def plan(predictor: BatchPredictor, session: pytest.Session) -> None:
    """Give the predictor the final run order (after -k/-m/--lf); an xdist worker batches only its own queue."""
    predictor.plan(prediction_work(session.items))
    predictor.shared = hasattr(session.config, "workerinput")  # other workers write the answer cache meanwhile
    queue = worker_queue(session.config)
    if queue is not None:
        predictor.upcoming = queue.upcoming_work


def prediction_work(items: Sequence[pytest.Item]) -> list[tuple[ModelSpec, Case]]:
    """(model, case) pairs the items ask for, in run order; a golden set's captions once per model."""
    from pytest_vleval.cases.golden_items import GoldenItem
    from pytest_vleval.cases.items import CaseItem

    work: list[tuple[ModelSpec, Case]] = []
    seen_sets = set()
    for item in items:
        if isinstance(item, CaseItem):
            if item.get_closest_marker("skip") is None:  # a skipped case is never asked: never generate it
                work.append((item.spec, item.case))
        elif isinstance(item, GoldenItem) and (item.golden.path, item.spec.label) not in seen_sets:
            seen_sets.add((item.golden.path, item.spec.label))
            work.extend((item.spec, case) for case in item.cases)
    return work


class WorkerQueue:
    """The items an xdist worker is running or has been given, in the order it runs them."""

    def __init__(self, interactor: Any) -> None:
        self._interactor = interactor

    def upcoming(self, limit: int | None = None) -> list[pytest.Item] | None:
        """The running item, the next one and the rest of the queue (its first `limit` only: the controller may
        have sent thousands, and a batch needs a few); None if xdist's internals differ."""
        interactor = self._interactor
        try:
            items: Sequence[pytest.Item] = interactor.session.items
            indices = [getattr(interactor, "item_index", None), interactor.nextitem_index]
            with interactor.torun.lock() as pending:
                indices.extend(pending if limit is None else itertools.islice(pending, limit))
        except Exception:  # an xdist version with other internals: plan in collection order
            return None
        return [items[i] for i in indices if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(items)]

    def upcoming_work(self, limit: int | None = None) -> list[tuple[ModelSpec, Case]] | None:
        """`prediction_work` of the upcoming items (the first `limit` of the queue); None if it cannot be read."""
        items = self.upcoming(limit)
        return None if items is None else prediction_work(items)


def worker_queue(config: pytest.Config) -> WorkerQueue | None:
    """The worker's queue on an xdist worker whose internals we know; None elsewhere."""
    if not hasattr(config, "workerinput"):
        return None
    # By name, not isinstance: execnet runs xdist/remote.py in the worker as its own __channelexec__ module, so
    # the worker's WorkerInteractor is not the class `xdist.remote` defines. tests/test_predict.py checks
    # that the queue is found and readable on the installed pytest-xdist.
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor" and hasattr(plugin, "torun"):
            if callable(getattr(plugin.torun, "lock", None)) and hasattr(plugin, "nextitem_index"):
                return WorkerQueue(plugin)
    return None
