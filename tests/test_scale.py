"""Large suites: the collected tree is gc-frozen for the run from FREEZE_FROM_ITEMS items on, and unfrozen after a
nested (in-process) session so that its objects can be collected; the timing goals are measured by
benchmarks/bench_scale.py, not here."""

from __future__ import annotations

import gc

import pytest

from pytest_vleval.session import FREEZE_FROM_ITEMS

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


def test_results_live_in_the_record_only_not_in_junit_properties(fake_project: pytest.Pytester) -> None:
    """The recorder takes each result off its item and report: junit XML no longer carries each case's Python
    repr (hundreds of bytes a case), and the report keeps the record's own entry (``report.vleval_case``)."""
    fake_project.makefile(".yaml", test_few=_suite(3))
    reprec = fake_project.inline_run("--vl-model=fake", "--junitxml=junit.xml", "--vl-json=run.json")
    reprec.assertoutcome(passed=3)
    junit = (fake_project.path / "junit.xml").read_text()
    assert "<testcase" in junit and "vleval" not in junit and "case_id" not in junit
    calls = [r for r in reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    assert [r.vleval_case["case_id"] for r in calls] == ["c0", "c1", "c2"]
    assert all(not r.user_properties for r in calls)
    import json

    record = json.loads((fake_project.path / "run.json").read_text())
    assert [c["turns"][0]["answer"] for c in record["cases"]] == ["w0", "w1", "w2"]
