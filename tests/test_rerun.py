"""pytest's rerun options (--lf, --ff, --sw, --nf) on YAML cases and golden-set items.

pytest 9.2 compares structured node ids; these tests fail when an item's id does not round-trip through the
cache (``cases/items._parse_own_id``).
"""

from __future__ import annotations

import re

import pytest

from .test_golden_plugin import BAD, make_set

CASES = """
cases:
  - id: good
    image: images/red.png
    question: "say: red"
    expected: red
  - id: bad
    image: images/red.png
    question: "say: blue"
    expected: red
  - id: also-good
    image: images/blue.png
    question: "say: blue"
    expected: blue
"""


def _project(fake_project: pytest.Pytester) -> pytest.Pytester:
    fake_project.makefile(".yaml", test_colours=CASES)
    make_set(fake_project, BAD, "{Bleu_4: 0.9, ROUGE_L: 0.1}")
    return fake_project


def _ran(result: pytest.RunResult) -> list[str]:
    """The ids of the items that ran, in order (from -v lines such as ``x.yaml::a[fake] PASSED [ 50%]``)."""
    lines = (re.match(r"(\S+::\S+) (PASSED|FAILED)", line) for line in result.outlines)
    return [match.group(1) for match in lines if match]


def _first_run(project: pytest.Pytester) -> None:
    result = project.runpytest("--vl-model=fake", "-v")
    result.assert_outcomes(passed=3, failed=2)
    # a failure is its message alone: pytest used to add this line to every one (all our frames are hidden)
    assert "All traceback entries are hidden" not in result.stdout.str()


def test_last_failed_reruns_only_the_failed_case_and_metric(fake_project: pytest.Pytester) -> None:
    project = _project(fake_project)
    _first_run(project)
    result = project.runpytest("--vl-model=fake", "-v", "--lf")
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 2 failures*"])
    assert sorted(_ran(result)) == [
        "golden/shapes/golden.yaml::Bleu_4[fake]",
        "test_colours.yaml::bad[fake]",
    ]
    result.assert_outcomes(failed=2)


def test_failed_first_runs_the_failures_before_the_rest(fake_project: pytest.Pytester) -> None:
    project = _project(fake_project)
    _first_run(project)
    result = project.runpytest("--vl-model=fake", "-v", "--ff", "-p", "no:randomly")
    ran = _ran(result)
    assert len(ran) == 5
    assert sorted(ran[:2]) == ["golden/shapes/golden.yaml::Bleu_4[fake]", "test_colours.yaml::bad[fake]"]


def test_stepwise_resumes_at_the_failed_case(fake_project: pytest.Pytester) -> None:
    project = _project(fake_project)
    first = project.runpytest("--vl-model=fake", "-v", "--sw", "test_colours.yaml")
    assert _ran(first) == ["test_colours.yaml::good[fake]", "test_colours.yaml::bad[fake]"]
    second = project.runpytest("--vl-model=fake", "-v", "--sw", "test_colours.yaml")
    # resumes at the case that failed, not from the top (pytest reports the skipped earlier ones as deselected)
    assert _ran(second)[0] == "test_colours.yaml::bad[fake]"
    second.stdout.fnmatch_lines(["*stepwise: skipping 1 already passed items*"])


def test_new_first_runs_a_new_case_first(fake_project: pytest.Pytester) -> None:
    project = _project(fake_project)
    project.runpytest("--vl-model=fake", "test_colours.yaml").assert_outcomes(passed=2, failed=1)
    project.makefile(".yaml", test_new=CASES.replace("id: good", "id: fresh").replace("bad", "other-bad"))
    result = project.runpytest("--vl-model=fake", "-v", "--nf", "test_colours.yaml", "test_new.yaml")
    ran = _ran(result)
    assert len(ran) == 6
    assert set(ran[:3]) == {f"test_new.yaml::{name}[fake]" for name in ("fresh", "other-bad", "also-good")}
