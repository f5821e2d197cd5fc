"""Incomplete runs (interrupted, collection errors, no case ran): marked in the record, never autosaved, never a
baseline; ``latest`` passes over them (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vleval.gate.compare import compare_records
from pytest_vleval.gate.rules import parse_fail_spec
from pytest_vleval.records.run_info import completeness, incomplete_reason
from pytest_vleval.records.storage import RunStorage, StorageError, machine_id

from .test_gate import BASE, _record
from .test_records import read_record, suite_project  # noqa: F401

# Ctrl-C while the third case of test_colour.yaml runs (its first two have passed).
CTRL_C = """

def pytest_runtest_call(item):
    if item.name.startswith("c3"):
        raise KeyboardInterrupt
"""


def _interrupt(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    conftest = project.path / "conftest.py"
    text = conftest.read_text()
    conftest.write_text(text + CTRL_C)
    try:
        result = project.runpytest("test_cases", "--vl-model=fake", *args, no_reraise_ctrlc=True)
    finally:
        conftest.write_text(text)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    return result


def _saved(project: pytest.Pytester) -> list[str]:
    folder = project.path / ".vleval" / "runs" / machine_id()
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_an_interrupted_run_is_not_autosaved_but_its_json_is_written(suite_project: pytest.Pytester) -> None:  # noqa: F811
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=full").assert_outcomes(passed=10)
    result = _interrupt(suite_project, "--vl-autosave", "--vl-json=run.json")
    assert _saved(suite_project) == ["0001_full.json"]
    result.stdout.fnmatch_lines(
        [
            "vleval: not saving this run in the storage folder: it is incomplete (interrupted); "
            "--vl-save=NAME keeps such a run, marked incomplete",
            "vleval: the saved record is marked incomplete (interrupted): --vl-compare refuses it",
        ]
    )
    run = read_record(suite_project.path / "run.json")["run"]
    assert (run["complete"], run["incomplete_reason"], run["exitstatus"]) == (False, "interrupted", 2)
    full = read_record(suite_project.path / ".vleval" / "runs" / machine_id() / "0001_full.json")["run"]
    assert (full["complete"], full["incomplete_reason"]) == (True, None)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["test_cases", "test_broken.yaml"], "collection errors"),
        (["test_cases", "test_broken.yaml", "--continue-on-collection-errors"], "collection errors"),
        (["test_cases", "-k", "nothing"], "no case ran"),
    ],
    ids=["collection-error", "continue-on-collection-errors", "no-case"],
)
def test_runs_that_lost_cases_are_not_autosaved(
    suite_project: pytest.Pytester,  # noqa: F811
    args: list[str],
    reason: str,
) -> None:
    suite_project.makefile(".yaml", test_broken="cases:\n  - {id: a, question: [unclosed\n")
    result = suite_project.runpytest(*args, "--vl-model=fake", "--vl-autosave")
    result.stdout.fnmatch_lines([f"vleval: not saving this run in the storage folder: it is incomplete ({reason});*"])
    assert _saved(suite_project) == []


def test_a_named_save_keeps_an_incomplete_run_and_compare_refuses_it(suite_project: pytest.Pytester) -> None:  # noqa: F811
    result = _interrupt(suite_project, "--vl-save=partial")
    assert _saved(suite_project) == ["0001_partial.json"]
    result.stdout.fnmatch_lines(
        ["vleval: the saved record is marked incomplete (interrupted): --vl-compare refuses it"]
    )
    run = read_record(suite_project.path / ".vleval" / "runs" / machine_id() / "0001_partial.json")["run"]
    assert (run["name"], run["complete"], run["incomplete_reason"]) == ("partial", False, "interrupted")

    refused = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-compare=partial")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        [
            "*--vl-compare=partial: */0001_partial.json is an incomplete run (interrupted) and cannot be a baseline: "
            "its missing cases would read as a changed suite. Compare with another run (--vl-compare=NAME, a number "
            "or a JSON path), or re-run the whole suite and save it with --vl-save=NAME"
        ]
    )
    latest = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-compare")
    assert latest.ret == pytest.ExitCode.USAGE_ERROR
    latest.stderr.fnmatch_lines(
        [
            "*--vl-compare=latest: no complete saved run in * all 1 are incomplete (the newest, 0001_partial.json: "
            "interrupted); re-run the whole suite and save it with --vl-save or --vl-autosave"
        ]
    )


def test_latest_passes_over_incomplete_runs(suite_project: pytest.Pytester) -> None:  # noqa: F811
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=full").assert_outcomes(passed=10)
    _interrupt(suite_project, "--vl-save=partial")
    result = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-compare", "--vl-compare-fail=accuracy:-2%")
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            f"baseline: .vleval/runs/{machine_id()}/0001_full.json *",
            "vleval: --vl-compare=latest: passed over 0002_partial.json, an incomplete run (interrupted)",
        ]
    )
    assert "another machine" not in result.stdout.str()


def test_completeness_and_old_records(tmp_path: Path) -> None:
    assert completeness(0, 0, 3) == {"complete": True, "incomplete_reason": None}
    assert completeness(1, 0, 3)["complete"] is True  # failures, -x and --maxfail leave a usable baseline
    assert completeness(2, 0, 3)["incomplete_reason"] == "interrupted"
    assert completeness(2, 1, 0)["incomplete_reason"] == "collection errors"
    assert completeness(5, 0, 0)["incomplete_reason"] == "no case ran"
    assert incomplete_reason({"run": {"exitstatus": 2}}) is None  # written before the field: complete
    assert incomplete_reason({"run": {"complete": False}}) == "incomplete"
    storage = RunStorage(tmp_path, "Linux-CPython-3.11-64bit")
    old = storage.save({"run": {}}, "old")
    storage.save({"run": {"complete": False, "incomplete_reason": "interrupted"}}, "cut")
    (storage.folder / "0003_broken.json").write_text("{")
    path, skipped = storage.latest()  # an unreadable record is not passed over: reading it says what is wrong
    assert path.name == "0003_broken.json" and skipped == []
    (storage.folder / "0003_broken.json").unlink()
    path, skipped = storage.latest()
    assert path == old == storage.find("latest") and [(r.name, why) for r, why in skipped] == [("cut", "interrupted")]
    assert storage.find("cut").name == "0002_cut.json"  # by name it is found (and refused by --vl-compare)
    (storage.folder / old.name).write_text(json.dumps({"run": {"complete": False}}))
    with pytest.raises(StorageError, match="all 2 are incomplete"):
        storage.latest()


def test_a_baseline_with_fewer_cases_is_not_blamed_on_the_machine() -> None:
    baseline = _record("m", BASE)
    baseline["models"][0].update(backend={}, metrics={})  # interrupted while loading: no device, no accuracy
    baseline["cases"] = []
    comparison = compare_records(baseline, _record("m", BASE), parse_fail_spec("accuracy:-2%"))
    assert not any("another machine" in note for note in comparison.notes)
    assert comparison.failures == [
        "m: accuracy cannot be checked against accuracy:-2%: the baseline ran none of these cases "
        "(another selection, e.g. -k, or an interrupted run)"
    ]
    elsewhere = _record("m", BASE)
    elsewhere["models"][0]["backend"] = {"device": "cuda"}
    notes = compare_records(elsewhere, _record("m", BASE)).notes
    assert any("the baseline ran on another machine or device" in note for note in notes)
