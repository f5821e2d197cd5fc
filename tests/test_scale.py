"""Large suites: the collected tree is gc-frozen for the run from FREEZE_FROM_ITEMS items on, and unfrozen after a
nested (in-process) session so that its objects can be collected; the timing goals are measured by
benchmarks/bench_scale.py, not here."""

from __future__ import annotations

import gc

import pytest

from pytest_vleval.predict.planning import FREEZE_FROM_ITEMS

SPY = """
import gc, json, pathlib

def pytest_sessionfinish(session):
    pathlib.Path("frozen.json").write_text(json.dumps(gc.get_freeze_count()))
"""


def _suite(n: int) -> str:
    return "cases:\n" + "".join(
        f"  - {{id: c{i}, image: images/red.png, question: 'say: w{i % 3}', expected: w{i % 3}}}\n" for i in range(n)
    )


def test_a_large_run_is_frozen_and_an_in_process_one_unfrozen_after(fake_project: pytest.Pytester) -> None:
    fake_project.makeconftest(fake_project.path.joinpath("conftest.py").read_text() + SPY)
    fake_project.makefile(".yaml", test_many=_suite(FREEZE_FROM_ITEMS))
    before = gc.get_freeze_count()
    result = fake_project.runpytest("--vl-model=fake", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=FREEZE_FROM_ITEMS)
    assert int((fake_project.path / "frozen.json").read_text()) > FREEZE_FROM_ITEMS  # frozen during the run
    assert gc.get_freeze_count() == before  # a nested session leaves nothing frozen behind


def test_a_small_run_is_not_frozen(fake_project: pytest.Pytester) -> None:
    fake_project.makeconftest(fake_project.path.joinpath("conftest.py").read_text() + SPY)
    fake_project.makefile(".yaml", test_few=_suite(10))
    fake_project.runpytest("--vl-model=fake", "-q").assert_outcomes(passed=10)
    assert int((fake_project.path / "frozen.json").read_text()) == gc.get_freeze_count()
