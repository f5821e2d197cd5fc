"""Dialogue depth: how many turns in a row, from the first, a model gets right; in the record, the gate's metrics,
the terminal summary and the comparison table."""

from __future__ import annotations

import json

import pytest

from pytest_vleval.records.aggregates import dialogue_depth
from pytest_vleval.report.table import build_table

DIALOGUES = """
defaults: {scorer: exact}
cases:
  - id: holds-three
    image: images/red.png
    turns:
      - {question: "say: red", expected: red}
      - {question: "say: circle", expected: circle}
      - {question: "say: left", expected: left}
  - id: drifts-after-two
    image: images/red.png
    turns:
      - {question: "say: red", expected: red}
      - {question: "say: circle", expected: circle}
      - {question: "say: right", expected: left}
      - {question: "say: left", expected: left}
  - id: lost-at-once
    image: images/red.png
    turns:
      - {question: "say: blue", expected: red}
      - {question: "say: circle", expected: circle}
  - id: single
    image: images/red.png
    question: "say: red"
    expected: red
"""


def test_turns_held_in_the_record_summary_and_table(fake_project: pytest.Pytester) -> None:
    (fake_project.path / "test_dialogues.yaml").write_text(DIALOGUES)
    result = fake_project.runpytest(
        "--vl-model=fake", "--vl-no-cache", "--vl-json=run.json", "--vl-report=report.html", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, failed=2)
    # The HTML report's model details say it too.
    assert "dialogue depth: 3 dialogues, 1.67 turns held on average" in (fake_project.path / "report.html").read_text()
    result.stdout.fnmatch_lines(
        ["*dialogue depth: 3 dialogues, 1.67 turns held on average (turns held: dialogues 0: 1, 2: 1, 3: 1); "
         "all turns held: 1/3"]
    )  # fmt: skip
    record = json.loads((fake_project.path / "run.json").read_text())
    held = {c["case_id"]: c["turns_held"] for c in record["cases"]}
    assert held == {"holds-three": 3, "drifts-after-two": 2, "lost-at-once": 0, "single": None}
    (model,) = record["models"]
    assert model["dialogue"]["by_length"] == {"2": {"0": 1}, "3": {"3": 1}, "4": {"2": 1}}
    assert model["metrics"]["turns_held"] == pytest.approx(5 / 3)
    table = build_table(record)
    column = next(i for i, c in enumerate(table.columns) if c.name == "turns held")
    assert table.values[0][column] == pytest.approx(5 / 3)


def test_no_dialogues_no_depth() -> None:
    assert dialogue_depth([{"turns_held": None, "turns": [{}]}]) is None
