"""The Markdown summary (``--vl-markdown``, ``$GITHUB_STEP_SUMMARY``): a view of the run record for CI pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_vleval.report.markdown import escape, render_markdown

from .test_records import suite_project  # noqa: F401  (fixture)


def test_a_gated_run_writes_the_verdict_the_table_and_the_flips(suite_project: pytest.Pytester) -> None:  # noqa: F811
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=good").assert_outcomes(passed=10)
    result = suite_project.runpytest(
        "test_cases",
        "--vl-model=weak",
        "--vl-compare=good",
        "--vl-compare-fail=accuracy:-2%",
        "--vl-markdown=out/summary.md",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*vleval Markdown summary written: out/summary.md"])
    text = (suite_project.path / "out" / "summary.md").read_text()
    assert text.startswith("## pytest-vleval: gate FAILED\n")
    assert "- **weak: accuracy 1.000 -&gt; 0.400 (-0.600, -60.0%) breaches accuracy:-2%" in text
    assert "| weak | 10 | 4 | 40.0% |" in text  # the model's row: cases, passed, pass rate
    assert "#### weak (baseline model fake)" in text
    assert "| accuracy | 1.000 | 0.400 |" in text and "| \\-2% | FAIL" not in text  # only '-' left unescaped
    assert "Passed before, failed now: 6" in text
    assert "- test\\_cases/test\\_colour.yaml::c2: expected 'red'; before 'red' (1.00), now 'wrong' (0.00)" in text


def test_the_summary_is_appended_to_the_github_job_page(
    suite_project: pytest.Pytester,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = suite_project.path / "step-summary.md"
    page.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(page))
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-model=weak").assert_outcomes(passed=14, failed=6)
    text = page.read_text()
    assert text.startswith("# earlier step\n## pytest-vleval: not compared\n")
    assert "### Models compared" in text and "| fake | **100.0%\\*** |" in text.replace("  ", " ")
    # Not a second time when the ini turns it off; no file when nothing asked for one.
    suite_project.makeini("[pytest]\nvl_github_step_summary = false\n")
    suite_project.runpytest("test_cases", "--vl-model=fake").assert_outcomes(passed=10)
    assert page.read_text() == text
    assert not list(suite_project.path.glob("*.md.tmp"))


def test_bad_markdown_paths_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--vl-markdown", "test_cases/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--vl-markdown='test_cases/': expected the path of a .md file*write --vl-markdown=PATH.md*"]
    )


def test_hostile_text_stays_text() -> None:
    evil = "<script>alert(1)</script> | **bold** [link](http://x) `code` _em_ ~~gone~~ \n# heading"
    record = {
        "models": [{"label": evil, "eval": {"cases": 1, "passed": 0, "accuracy": 0.0, "mean_score": 0.0}}],
        "cases": [],
        "golden": [],
        "comparison": {
            "baseline": evil,
            "limits": ["accuracy:-2%"],
            "failed": True,
            "failures": [evil],
            "models": [
                {
                    "label": evil,
                    "baseline_label": evil,
                    "rows": [],
                    "worse": [
                        {
                            "suite": evil,
                            "case_id": "c1",
                            "expected": evil,
                            "before": evil,
                            "after": evil,
                            "before_score": 1.0,
                            "after_score": 0.0,
                        }
                    ],
                    "better": [],
                }
            ],
            "notes": [],
        },
    }
    text = render_markdown(record)
    assert "<script>" not in text and "**bold**" not in text and "`code`" not in text and "~~gone~~" not in text
    assert not re.search(r"(?<!\\)\]\(", text)  # no link can form: every [ and ] is escaped
    assert "&lt;script&gt;" in text and "\\*\\*bold\\*\\*" in text and "\\[link\\]" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| &lt;script")]
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # the model table's 7 cells: the | in the label is escaped
    assert "\n# heading" not in text
    assert escape("a\nb|c") == "a b\\|c"


def test_the_record_alone_makes_the_summary(tmp_path: Path) -> None:
    record = json.loads((Path(__file__).resolve().parents[1] / "baselines" / "tiny.json").read_text())
    text = render_markdown(record)
    n = len(record["cases"])
    assert text.startswith("## pytest-vleval: not compared") and f"| tiny | {n} | {n} | 100.0% | 1.000 |" in text
