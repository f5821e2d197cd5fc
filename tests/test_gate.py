"""The regression gate (gate.py, significance.py): spec parsing, statistics, comparisons and the demonstration."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vleval.gate.compare import compare_records
from pytest_vleval.gate.rules import Rule, SpecError, parse_fail_spec
from pytest_vleval.gate.significance import (
    binomial_tail,
    mcnemar_exact,
    mcnemar_exact_two_sided,
    paired_bootstrap,
)
from pytest_vleval.records.storage import machine_id
from pytest_vleval.report.comparison import comparison_lines

from .test_records import suite_project  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


def test_spec_parses_limits_in_their_units() -> None:
    rules = parse_fail_spec(
        "accuracy:-2%,CIDEr:-0.05,latency_p50:+15%,memory_peak:+10%,accuracy@test_colour.yaml:-5pp,"
        "memory_peak_cuda:+200MB,latency_p95:+20ms,mean_score:0.01,tokens_per_s:-10%,CIDEr@shapes:-0.1,"
        "memory_load:+1GiB"
    )
    got = [(r.metric, r.where, pytest.approx(r.limit), r.relative) for r in rules]
    assert got == [
        ("accuracy", None, 0.02, True),
        ("CIDEr", None, 0.05, False),
        ("latency_p50", None, 0.15, True),
        ("memory_peak", None, 0.10, True),
        ("accuracy", "test_colour.yaml", 0.05, False),
        ("memory_peak_cuda", None, 2e8, False),
        ("latency_p95", None, 0.02, False),
        ("mean_score", None, 0.01, False),  # the sign may be left out: a score regresses when it falls
        ("tokens_per_s", None, 0.10, True),
        ("CIDEr", "shapes", 0.1, False),
        ("memory_load", None, 2**30, False),
    ]
    assert rules[0].name == "accuracy" and rules[4].name == "accuracy@test_colour.yaml"
    assert rules[4].limit_text == "-5pp"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty; expected items like accuracy:-2%"),
        ("accuracy:-2%,", "empty item between commas"),
        ("accuracy", "'accuracy': expected METRIC[@SUITE_OR_SET]:LIMIT"),
        ("accuracy:-x", "expected METRIC[@SUITE_OR_SET]:LIMIT"),
        ("acuracy:-2%", "unknown metric 'acuracy' (did you mean 'accuracy'?)"),
        ("accuracy:+2%", "accuracy regresses when it falls; the limit is written accuracy:-2%"),
        ("latency_p50:-15%", "latency_p50 regresses when it rises; the limit is written latency_p50:+15%"),
        ("accuracy@x.yaml:+1pp", "the limit is written accuracy@x.yaml:-1pp"),
        ("latency_p50:+5pp", "'pp' does not apply to latency_p50 (a seconds)"),
        ("accuracy:-2MB", "'MB' is a size; accuracy is not a memory metric"),
        ("memory_peak:+5ms", "'ms' does not apply to memory_peak"),
        ("accuracy:-2furlongs", "unknown unit 'furlongs'"),
        ("latency_p50@x:+5%", "only accuracy, mean_score (per case file) and caption metrics"),
    ],
)
def test_bad_specs_name_the_item(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_fail_spec(spec)
    assert message in str(info.value)
    assert str(info.value).startswith("--vl-compare-fail")


@given(st.text(max_size=40))
def test_no_spec_crashes_the_parser(spec: str) -> None:
    try:
        rules = parse_fail_spec(spec)
    except SpecError:
        return
    assert all(isinstance(r, Rule) and r.limit >= 0 for r in rules)


def test_binomial_tails_by_hand() -> None:
    assert binomial_tail(8, 8) == 1 / 256
    assert binomial_tail(5, 6) == 7 / 64  # C(6,5) + C(6,6) = 7
    assert binomial_tail(0, 10) == 1.0
    assert binomial_tail(11, 10) == 0.0
    assert binomial_tail(3, 4) == 5 / 16
    # Large n stays exact: P(X >= 600 | n=1000) is about 1.36e-10.
    assert binomial_tail(600, 1000) == pytest.approx(1.3642e-10, rel=1e-3)


def test_mcnemar_by_hand() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(8, 0) == 0.00390625  # 8 cases got worse, none better: 1/2**8
    assert mcnemar_exact(6, 0) == 1 / 64
    assert mcnemar_exact(5, 1) == 7 / 64
    assert mcnemar_exact(1, 5) == 63 / 64  # mostly better: no evidence of a drop
    assert mcnemar_exact_two_sided(8, 0) == 2 / 256
    assert mcnemar_exact_two_sided(3, 3) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


@pytest.mark.parametrize(("worse", "better"), [(0, 1), (1, 0), (3, 7), (7, 3), (12, 4), (40, 25), (150, 110)])
def test_mcnemar_matches_scipy(worse: int, better: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    n = worse + better
    assert mcnemar_exact(worse, better) == pytest.approx(stats.binomtest(worse, n, 0.5, alternative="greater").pvalue)
    assert mcnemar_exact_two_sided(worse, better) == pytest.approx(stats.binomtest(worse, n, 0.5).pvalue)


def test_paired_bootstrap() -> None:
    same = [0.2, 0.5, 0.9, 1.0]
    assert paired_bootstrap(same, same) == 1.0
    assert paired_bootstrap([], []) == 1.0
    before = [0.8 + 0.01 * (i % 5) for i in range(40)]
    dropped = [b - 0.2 for b in before]
    p = paired_bootstrap(before, dropped)
    assert p == 1 / 10_001  # every resample of a constant drop is as low as the observed one... and none lower
    noisy = [b + (0.05 if i % 2 else -0.05) for i, b in enumerate(before)]
    assert paired_bootstrap(before, noisy) > 0.3  # no systematic change
    improved = [b + 0.1 for b in before]
    assert paired_bootstrap(before, improved) == 1.0
    assert paired_bootstrap(before, dropped, seed=1) == p  # deterministic
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])


def _case(suite: str, case_id: str, passed: bool, answer: str, model: str = "m") -> dict[str, Any]:
    return {
        "model": model,
        "suite": suite,
        "case_id": case_id,
        "passed": passed,
        "score": 1.0 if passed else 0.0,
        "error": None,
        "turns": [
            {"question": "q", "expected": "'red'", "answer": answer, "passed": passed, "score": 1.0 if passed else 0.0}
        ],
    }


def _record(label: str, outcomes: dict[str, bool], **metrics: float) -> dict[str, Any]:
    cases = [
        _case(f"cases/{cid.split('-')[0]}.yaml", cid, ok, "red" if ok else "blue", label)
        for cid, ok in outcomes.items()
    ]
    suites = sorted({c["suite"] for c in cases})
    values = {"accuracy": sum(outcomes.values()) / len(outcomes), "mean_score": sum(outcomes.values()) / len(outcomes)}
    for suite in suites:
        mine = [c for c in cases if c["suite"] == suite]
        values[f"accuracy@{suite}"] = sum(c["passed"] for c in mine) / len(mine)
    values.update(metrics)
    return {
        "schema": "pytest-vleval/run",
        "schema_version": 1,
        "run": {"machine_id": "m1", "started": "2026-11-22T06:00:00Z"},
        "models": [{"label": label, "metrics": values, "backend": {"device": "cpu"}}],
        "cases": cases,
        "golden": [],
    }


BASE = {f"colour-{i}": True for i in range(8)} | {f"shape-{i}": True for i in range(4)}


def test_single_models_pair_whatever_their_labels_and_flips_are_listed() -> None:
    current = dict(BASE) | {"colour-1": False, "colour-2": False, "shape-0": False}
    baseline = dict(BASE) | {"shape-3": False}
    comparison = compare_records(
        _record("tiny", baseline), _record("tiny-v0", current), parse_fail_spec("accuracy:-2%"), baseline_name="b.json"
    )
    (model,) = comparison.models
    assert (model.label, model.baseline_label) == ("tiny-v0", "tiny")
    assert [(f.suite, f.case_id, f.before, f.after) for f in model.worse] == [
        ("cases/colour.yaml", "colour-1", "'red'", "'blue'"),
        ("cases/colour.yaml", "colour-2", "'red'", "'blue'"),
        ("cases/shape.yaml", "shape-0", "'red'", "'blue'"),
    ]
    assert [f.case_id for f in model.better] == ["shape-3"]
    accuracy = next(r for r in model.rows if r.metric == "accuracy")
    assert accuracy.verdict == "FAIL" and accuracy.p_value == pytest.approx(mcnemar_exact(3, 1))
    assert comparison.failed
    assert comparison.failures == [
        "tiny-v0: accuracy 0.917 -> 0.750 (-0.167, -18.2%) breaches accuracy:-2% "
        "(p=0.312, McNemar, 3 worse / 1 better of 12 paired)"
    ]
    text = "\n".join(comparison_lines(comparison.to_dict()))
    assert "model tiny-v0 vs baseline model tiny" in text
    assert "passed before, failed now: 3" in text and "failed before, passed now: 1" in text
    assert "cases/colour.yaml::colour-1  expected 'red'  before 'red' (1.00)  now 'blue' (0.00)" in text


def test_significance_decides_accuracy_drops() -> None:
    small = dict(BASE) | {"colour-1": False}
    big = dict(BASE) | {f"colour-{i}": False for i in range(7)}
    rules = parse_fail_spec("accuracy:-2%")
    one = compare_records(_record("m", BASE), _record("m", small), rules, alpha=0.05)
    row = one.models[0].rows[0]
    assert row.verdict == "not significant" and row.p_value == 0.5 and not one.failed
    many = compare_records(_record("m", BASE), _record("m", big), rules, alpha=0.05)
    row = many.models[0].rows[0]
    assert row.verdict == "FAIL" and row.p_value == 1 / 128 and many.failed
    text = "\n".join(comparison_lines(many.to_dict()))
    assert "p=0.00781 < 0.05 (McNemar, 7 worse / 0 better of 12 paired)" in text


def test_limits_per_suite_with_names_paths_and_wildcards() -> None:
    current = dict(BASE) | {"shape-0": False}
    base, now = _record("m", BASE), _record("m", current)
    assert compare_records(base, now, parse_fail_spec("accuracy@colour.yaml:-1pp")).failed is False
    assert compare_records(base, now, parse_fail_spec("accuracy@cases/shape.yaml:-1pp")).failed is True
    assert compare_records(base, now, parse_fail_spec("accuracy@shape.yaml:-30pp")).failed is False
    everywhere = compare_records(base, now, parse_fail_spec("accuracy@*:-10%"))
    assert [r.metric for r in everywhere.models[0].rows if r.breached] == ["accuracy@cases/shape.yaml"]
    missing = compare_records(base, now, parse_fail_spec("accuracy@count.yaml:-1pp"))
    assert missing.failed
    assert "no case file 'count.yaml' in either run (have: cases/colour.yaml, cases/shape.yaml)" in missing.failures[0]


def test_latency_memory_and_missing_metrics() -> None:
    base = _record("m", BASE, latency_p50=0.100, memory_peak=1000 * 2**20)
    slower = _record("m", BASE, latency_p50=0.120, memory_peak=1050 * 2**20)
    assert compare_records(base, slower, parse_fail_spec("latency_p50:+15%")).failed is True
    assert compare_records(base, slower, parse_fail_spec("latency_p50:+25%,memory_peak:+10%")).failed is False
    assert compare_records(base, slower, parse_fail_spec("memory_peak:+40MiB")).failed is True
    assert compare_records(base, slower, parse_fail_spec("latency_p50:+25ms")).failed is False
    no_latency = _record("m", BASE)
    comparison = compare_records(no_latency, slower, parse_fail_spec("latency_p50:+15%,tokens_per_s:-5%"))
    assert comparison.failures == [
        "m: latency_p50 cannot be checked against latency_p50:+15%: not measured in the baseline (run it with --vl-benchmark)",
        "m: tokens_per_s cannot be checked against tokens_per_s:-5%: not measured in the baseline (run it with --vl-benchmark)",
    ]
    rows = [" ".join(line.split()) for line in comparison_lines(compare_records(base, slower).to_dict())]
    assert "latency_p50 100.0 ms 120.0 ms +20.0 ms (+20.0%)" in rows
    assert "memory_peak 1000.0 MiB 1.03 GiB +50.0 MiB (+5.0%)" in rows


def test_several_models_match_by_label() -> None:
    base = _record("a", BASE)
    base["models"].append({**copy.deepcopy(base["models"][0]), "label": "b"})
    current = _record("b", dict(BASE) | {"colour-0": False})
    current["models"].append({**copy.deepcopy(current["models"][0]), "label": "c"})
    comparison = compare_records(base, current, parse_fail_spec("accuracy:-1%"))
    assert [m.label for m in comparison.models] == ["b"] and comparison.unmatched == ["c"]
    lonely = compare_records(_record("x", BASE) | {"models": []}, current, parse_fail_spec("accuracy:-1%"))
    assert lonely.failures == ["no model of this run matches a model of the baseline (models match by label)"]


def test_caption_metrics_with_bootstrap_over_images() -> None:
    def with_golden(record: dict[str, Any], scores: list[float]) -> dict[str, Any]:
        record = copy.deepcopy(record)
        per_image = {str(i): {"CIDEr": s} for i, s in enumerate(scores)}
        record["golden"] = [{"set": "shapes", "model": record["models"][0]["label"], "per_image": per_image}]
        mean = sum(scores) / len(scores)
        record["models"][0]["metrics"] |= {"CIDEr@shapes": mean, "CIDEr": mean}
        return record

    before = [1.0 + 0.1 * (i % 3) for i in range(30)]
    base = with_golden(_record("m", BASE), before)
    worse = with_golden(_record("m", BASE), [b - 0.3 for b in before])
    comparison = compare_records(base, worse, parse_fail_spec("CIDEr@shapes:-0.05"), alpha=0.05)
    row = next(r for r in comparison.models[0].rows if r.metric == "CIDEr@shapes")
    assert row.verdict == "FAIL" and row.p_value < 0.05 and row.test == "paired bootstrap over 30 images"
    jitter = with_golden(_record("m", BASE), [b + (0.2 if i % 2 else -0.2) - 0.01 for i, b in enumerate(before)])
    comparison = compare_records(base, jitter, parse_fail_spec("CIDEr:-0.005"), alpha=0.05)
    row = next(r for r in comparison.models[0].rows if r.metric == "CIDEr")
    assert row.verdict == "not significant" and not comparison.failed


def test_relative_limits_against_a_zero_baseline() -> None:
    base = _record("m", {"colour-0": False})
    same = _record("m", {"colour-0": False})
    assert compare_records(base, same, parse_fail_spec("accuracy:-2%")).failed is False
    up = _record("m", {"colour-0": True})
    assert compare_records(base, up, parse_fail_spec("accuracy:-2%")).failed is False


# The demonstration with the fake backend: a saved run of a good model, then a weaker version compared with it.


def test_demo_weaker_model_fails_the_gate_same_model_passes(suite_project: pytest.Pytester) -> None:  # noqa: F811
    saved = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=good")
    saved.assert_outcomes(passed=10)
    gate = ["--vl-compare", "--vl-compare-fail=accuracy:-2%,accuracy@test_shape.yaml:-10pp"]

    result = suite_project.runpytest("test_cases", "--vl-model=weak", *gate)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"baseline: .vleval/runs/{machine_id()}/0001_good.json (*)",
            "model weak vs baseline model fake",
            "  metric * baseline * current * change * limit * result",
            "  accuracy * 1.000 * 0.400 * -0.600 (-60.0%) * -2% * FAIL p=0.0156 (McNemar, 6 worse / 0 better of 10 paired)",
            "  passed before, failed now: 6",
            "    test_cases/test_colour.yaml::c2  expected 'red'  before 'red' (1.00)  now 'wrong' (0.00)",
            "    test_cases/test_shape.yaml::s4  expected 'two' / 'red'  before 'two' / 'red' (1.00)  now 'two' / 'wrong' (0.50)",
            "  failed before, passed now: 0",
            "vleval gate FAILED:",
            "  weak: accuracy 1.000 -> 0.400 (-0.600, -60.0%) breaches accuracy:-2% (p=0.0156, McNemar*)",
            "  weak: accuracy@test_cases/test_shape.yaml 1.000 -> 0.500 (-0.500, -50.0%) breaches accuracy@test_shape.yaml:-10pp*",
        ]
    )

    same = suite_project.runpytest("test_cases", "--vl-model=fake", *gate)
    assert same.ret == pytest.ExitCode.OK
    same.stdout.fnmatch_lines(
        ["*passed before, failed now: 0", "vleval gate passed (accuracy:-2%,accuracy@test_shape.yaml:-10pp)"]
    )


def test_the_gate_alone_sets_the_exit_status(suite_project: pytest.Pytester) -> None:  # noqa: F811
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=good").assert_outcomes(passed=10)
    # The weak model's failures are expected (xfail), so the tests pass: only the gate can fail the session.
    suite_project.makeini("[pytest]\nxfail_strict = false\n")
    colour = suite_project.path / "test_cases" / "test_colour.yaml"
    colour.write_text(colour.read_text().replace("question: 'hard", "xfail: known, question: 'hard"))
    args = ["test_cases/test_colour.yaml", "--vl-model=weak", "--vl-compare=good"]
    shown = suite_project.runpytest(*args)
    shown.assert_outcomes(passed=2, xfailed=4)
    assert shown.ret == pytest.ExitCode.OK
    shown.stdout.fnmatch_lines(["vleval gate: no limits set (--vl-compare-fail): comparison only"])

    gated = suite_project.runpytest(*args, "--vl-compare-fail=accuracy:-2%")
    gated.assert_outcomes(passed=2, xfailed=4)
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    gated.stdout.fnmatch_lines(["vleval gate FAILED:", "  weak: accuracy 1.000 -> 0.333 *"])

    # 4 of 6 paired cases flipped: p = 1/16, not below 0.05, so the drop alone does not fail the run.
    lenient = suite_project.runpytest(*args, "--vl-compare-fail=accuracy:-2%", "--vl-compare-significance=0.05")
    assert lenient.ret == pytest.ExitCode.OK
    lenient.stdout.fnmatch_lines(["*not significant p=0.0625 >= 0.05 (McNemar, 4 worse / 0 better of 6 paired)*"])

    # The ini sets a team's limits once; they apply whenever a run is compared.
    suite_project.makeini("[pytest]\nxfail_strict = false\nvl_compare_fail = accuracy:-2%\n")
    assert suite_project.runpytest(*args).ret == pytest.ExitCode.TESTS_FAILED
    assert suite_project.runpytest("test_cases/test_colour.yaml", "--vl-model=weak").ret == pytest.ExitCode.OK


def test_the_comparison_is_stored_in_the_record(suite_project: pytest.Pytester) -> None:  # noqa: F811
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-json=base.json").assert_outcomes(passed=10)
    suite_project.runpytest(
        "test_cases",
        "--vl-model=weak",
        "--vl-compare=base.json",
        "--vl-compare-fail=accuracy:-2%",
        "--vl-json=now.json",
    )
    record = json.loads((suite_project.path / "now.json").read_text())
    comparison = record["comparison"]
    assert comparison["baseline"] == "base.json" and comparison["failed"] is True
    assert comparison["limits"] == ["accuracy:-2%"] and len(comparison["failures"]) == 1
    (model,) = comparison["models"]
    assert len(model["worse"]) == 6 and model["worse"][0]["after"] == "'wrong'"
    assert record["run"]["exitstatus"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vl-compare-fail=accuracy:-2%"], "*--vl-compare-fail needs --vl-compare*"),
        (
            ["--vl-compare=x.json", "--vl-compare-fail=accuracy:+2%"],
            "*--vl-compare-fail: 'accuracy:+2%': accuracy regresses when it falls*",
        ),
        (
            ["--vl-compare=x.json", "--vl-compare-fail=latency_p50:+5%"],
            "*latency_p50:+5% is measured by the latency benchmarks: add --vl-benchmark*",
        ),
        (
            ["--vl-compare=x.json", "--vl-compare-significance=5"],
            "*--vl-compare-significance='5': expected a level between 0 and 1*",
        ),
    ],
)
def test_bad_gate_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.path.joinpath("x.json").write_text(json.dumps({"schema": "pytest-vleval/run", "schema_version": 1}))
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_limits_name_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvl_compare_fail = accuracy:lots\n")
    pytester.path.joinpath("x.json").write_text(json.dumps({"schema": "pytest-vleval/run", "schema_version": 1}))
    result = pytester.runpytest("--vl-compare=x.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini vl_compare_fail: 'accuracy:lots': expected METRIC*"])


# The same demonstration with the real built-in models, once they are trained and the bundled suite is written.

TINY = REPO / "src" / "pytest_vleval" / "builtin"


@pytest.mark.skipif(
    not (TINY / "tiny" / "config.json").is_file()
    or not (TINY / "tiny-v0" / "config.json").is_file()
    or not any((REPO / "test_cases").glob("test_*.yaml")),
    reason="the built-in tiny/tiny-v0 weights or the bundled test_cases/ are not there yet",
)
def test_demo_with_the_builtin_models(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pytest", "test_cases", "-p", "no:cacheprovider", "-q", "--vl-device=cpu"]
        env = {**os.environ, "COLUMNS": "200", "VLEVAL_CACHE_DIR": str(tmp_path / "cache")}
        return subprocess.run(
            [*command, f"--vl-storage={tmp_path}", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )

    saved = run("--vl-model=tiny", "--vl-save=tiny")
    assert saved.returncode == 0, saved.stdout[-3000:]  # the bundled suite holds only cases tiny passes
    assert "vleval run record saved" in saved.stdout
    gate = ["--vl-compare=tiny", "--vl-compare-fail=accuracy:-2%", "--vl-compare-significance=0.05"]
    older = run("--vl-model=tiny-v0", *gate)
    assert older.returncode == 1, older.stdout[-3000:]
    assert "model tiny-v0 vs baseline model tiny" in older.stdout
    assert "vleval gate FAILED:" in older.stdout and "tiny-v0: accuracy" in older.stdout
    flips = int(older.stdout.split("passed before, failed now: ", 1)[1].split()[0])
    assert flips > 0
    same = run("--vl-model=tiny", *gate)
    assert same.returncode == saved.returncode, same.stdout[-3000:]
    assert "vleval gate passed" in same.stdout and "passed before, failed now: 0" in same.stdout


def test_two_limits_on_one_metric_the_broken_one_is_reported() -> None:
    current = dict(BASE) | {"colour-1": False}
    for spec in ("accuracy:-50%,accuracy:-1%", "accuracy:-1%,accuracy:-50%"):
        comparison = compare_records(_record("m", BASE), _record("m", current), parse_fail_spec(spec))
        assert comparison.failed and "breaches accuracy:-1%" in comparison.failures[0]
