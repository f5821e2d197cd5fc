"""Run records (records.py) and their storage (storage.py): content, layout, references, xdist merging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vleval.records.aggregates import percentile, summarise
from pytest_vleval.records.schema import RecordError, check_record, relative, to_jsonable
from pytest_vleval.records.storage import RunStorage, StorageError, autosave_name, check_name, machine_id

from .conftest import make_png

# A worse version of the fake model: "wrong" to every question that mentions "hard".
WEAK_BACKEND = """

class WeakBackend(FakeBackend):
    def generate(self, conversations):
        answers = super().generate(conversations)
        return ["wrong" if "hard" in c.question else a for c, a in zip(conversations, answers)]


_fake_loader = pytest_vleval_load_model


def pytest_vleval_load_model(config, spec, options):
    if spec.requested.startswith("weak"):
        return WeakBackend(spec)
    return _fake_loader(config, spec, options)
"""

COLOUR = """
defaults: {scorer: exact, threshold: 1.0, max_new_tokens: 8}
cases:
  - {id: c1, image: ../images/red.png, question: 'say: red', expected: red}
  - {id: c2, image: ../images/red.png, question: 'hard say: red', expected: red}
  - {id: c3, image: ../images/blue.png, question: 'say: blue', expected: blue}
  - {id: c4, image: ../images/blue.png, question: 'hard say: blue', expected: blue}
  - {id: c5, image: ../images/red.png, question: 'hard say: red', expected: red}
  - {id: c6, image: ../images/red.png, question: 'hard say: red', expected: red}
"""
SHAPE = """
defaults: {max_new_tokens: 8}
cases:
  - {id: s1, image: ../images/red.png, question: 'say: a circle', expected: circle, scorer: contains}
  - {id: s2, image: ../images/red.png, question: 'hard say: a circle', expected: circle, scorer: contains}
  - {id: s3, image: ../images/red.png, question: 'say: a square', expected: square, scorer: contains}
  - id: s4
    images: [../images/red.png, ../images/blue.png]
    turns:
      - {question: 'say: two', expected: two}
      - {question: 'hard say: red', expected: red}
"""


@pytest.fixture
def suite_project(fake_project: pytest.Pytester) -> pytest.Pytester:
    """The fake project with a weak model and a two-file suite under test_cases/ (10 cases, 6 'hard')."""
    conftest = fake_project.path / "conftest.py"
    conftest.write_text(conftest.read_text() + WEAK_BACKEND)
    cases = fake_project.path / "test_cases"
    cases.mkdir()
    (cases / "test_colour.yaml").write_text(COLOUR)
    (cases / "test_shape.yaml").write_text(SHAPE)
    return fake_project


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_record_holds_run_models_cases_and_aggregates(suite_project: pytest.Pytester) -> None:
    result = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-json=out/run.json")
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(["*vleval run record saved: out/run.json"])
    record = read_record(suite_project.path / "out" / "run.json")
    assert check_record(record, "run.json") == record
    assert record["schema"] == "pytest-vleval/run" and record["schema_version"] == 1
    assert set(record) == {"schema", "schema_version", "run", "models", "cases", "benchmarks", "golden", "comparison"}

    run = record["run"]
    assert run["args"][:3] == ["test_cases", "--vl-model=fake", "--vl-json=out/run.json"]
    assert run["exitstatus"] == 0 and run["machine_id"] == machine_id() and run["xdist"] is None
    assert run["machine"]["cpu_count"] >= 1 and run["machine"]["python"]
    assert run["versions"]["pytest"] == pytest.__version__ and "torch" in run["versions"]
    assert run["options"]["models"] == ["fake"] and run["options"]["max_new_tokens"] == 32

    (model,) = record["models"]
    assert model["label"] == "fake" and model["requested"] == "fake" and model["fingerprint"] is None
    assert model["backend"] == {"device": "cpu", "dtype": "float32", "architecture": "Fake"}
    assert model["load"]["count"] == 1 and model["load"]["seconds"] >= 0
    assert model["eval"]["cases"] == 10 and model["eval"]["accuracy"] == 1.0 and model["eval"]["mean_score"] == 1.0
    assert set(model["suites"]) == {"test_cases/test_colour.yaml", "test_cases/test_shape.yaml"}
    assert model["suites"]["test_cases/test_shape.yaml"]["cases"] == 4
    assert model["scorers"]["contains"]["turns"] == 3 and model["scorers"]["exact"]["turns"] == 8
    # The memory numbers are the process's, so they are real and plausible: tens of MiB at least.
    peak = model["memory"]["peak"]["rss_peak_bytes"]
    assert 20 * 2**20 < peak < 64 * 2**30
    assert model["memory"]["peak"]["rss_peak_scope"] in ("window", "process")
    metrics = model["metrics"]
    assert metrics["accuracy"] == 1.0 and metrics["accuracy@test_cases/test_colour.yaml"] == 1.0
    assert metrics["memory_peak"] == peak and "latency_p50" not in metrics  # latency needs --vl-benchmark

    cases = record["cases"]
    assert [c["case_id"] for c in cases] == ["c1", "c2", "c3", "c4", "c5", "c6", "s1", "s2", "s3", "s4"]
    first = cases[0]
    assert first["suite"] == "test_cases/test_colour.yaml" and first["images"] == ["images/red.png"]
    assert first["nodeid"] == "test_cases/test_colour.yaml::c1[fake]" and first["line"] == 4
    assert first["outcome"] == "passed" and first["passed"] is True and first["error"] is None
    (turn,) = first["turns"]
    assert turn["question"] == "say: red" and turn["answer"] == "red" and turn["scorer"] == "exact"
    assert set(turn) == {
        "question",
        "expected",
        "answer",
        "scorer",
        "score",
        "threshold",
        "passed",
        "detail",
        "parse_failed",
        "prompt",
        "extracted",
        "answer_steps",
        "format_issue",
        "judge",
    }
    assert turn["judge"] is None  # only a judged turn has a verdict
    assert turn["prompt"] == "say: red" and turn["extracted"] == "red" and turn["format_issue"] is None
    assert first["vision_tokens"] is None and first["pixels"] == [None, None]  # a hook backend that cannot count
    dialogue = cases[-1]
    assert len(dialogue["turns"]) == 2 and dialogue["images"] == ["images/red.png", "images/blue.png"]
    assert record["golden"] == [] and record["benchmarks"] == [] and record["comparison"] is None


def test_failed_errored_and_xfailed_cases_are_recorded(suite_project: pytest.Pytester) -> None:
    (suite_project.path / "test_cases" / "test_more.yaml").write_text(
        "cases:\n"
        "  - {id: boom, image: ../images/red.png, question: crash, expected: x}\n"
        "  - {id: known, image: ../images/red.png, question: 'hard say: x', expected: x, xfail: weak model}\n"
        "  - {id: skipped, image: ../images/red.png, question: 'say: x', expected: x, skip: later}\n"
    )
    result = suite_project.runpytest("test_cases", "--vl-model=weak", "--vl-json=run.json", "--vl-batch-size=1")
    result.assert_outcomes(passed=4, failed=7, xfailed=1, skipped=1)
    record = read_record(suite_project.path / "run.json")
    by_id = {c["case_id"]: c for c in record["cases"]}
    assert "skipped" not in by_id  # not evaluated, not in the record
    assert (
        by_id["boom"]["error"].startswith("model 'weak' failed on turn 1: ValueError") and by_id["boom"]["turns"] == []
    )
    assert by_id["known"]["outcome"] == "xfailed" and by_id["known"]["passed"] is False
    assert by_id["c2"]["outcome"] == "failed" and by_id["c2"]["turns"][0]["answer"] == "wrong"
    model = record["models"][0]
    assert model["eval"]["cases"] == 12 and model["eval"]["passed"] == 4 and model["eval"]["errors"] == 1
    assert model["suites"]["test_cases/test_more.yaml"] == {
        "cases": 2,
        "passed": 0,
        "failed": 2,
        "errors": 1,
        "judge_errors": 0,
        "parse_failures": 0,
        "format_failures": 0,
        "accuracy": 0.0,
        "mean_score": 0.0,
    }
    assert record["run"]["exitstatus"] == 1


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what legitimately differs between processes: timings, memory, loads, the run block."""
    record = json.loads(json.dumps(record))
    record.pop("run")
    for case in record["cases"]:
        case.pop("seconds")
    for model in record["models"]:
        for key in ("load", "memory", "benchmark", "prediction"):
            model.pop(key)
        model["eval"] = {k: v for k, v in model["eval"].items() if k not in ("seconds", "case_seconds", "cases_per_s")}
        model["metrics"] = {
            k: v
            for k, v in model["metrics"].items()
            if k.split("@")[0] in ("accuracy", "mean_score", "CIDEr", "Bleu_1")
        }
    for bench in record["benchmarks"]:
        for key in list(bench):
            if key not in ("model", "suite", "case_id", "nodeid", "line", "question", "answer", "warmup_rounds"):
                bench.pop(key)
    for golden in record["golden"]:
        golden.pop("seconds", None)
    return record


def test_records_from_xdist_and_one_process_agree(suite_project: pytest.Pytester) -> None:
    args = ["test_cases", "--vl-model=fake", "--vl-model=weak", "--vl-benchmark=1", "--vl-benchmark-rounds=1"]
    single = suite_project.runpytest(*args, "-n", "0", "--vl-json=single.json")
    single.assert_outcomes(passed=16, failed=6)
    spread = suite_project.runpytest(*args, "-n", "2", "--vl-json=spread.json")
    spread.assert_outcomes(passed=16, failed=6)
    spread.stdout.fnmatch_lines(["*pytest-benchmark turns itself off under xdist (-n)*"])
    one, two = read_record(suite_project.path / "single.json"), read_record(suite_project.path / "spread.json")
    assert two["run"]["xdist"] == {"workers": 2} and one["run"]["xdist"] is None
    assert two["run"]["pytest_benchmark"]["reason"] == "xdist" and one["run"]["pytest_benchmark"]["enabled"]
    assert [b["pytest_benchmark"] for b in one["benchmarks"]] == [True, True]
    assert [b["pytest_benchmark"] for b in two["benchmarks"]] == [False, False]
    assert _comparable(one) == _comparable(two)
    # Loads and memory come from every worker that loaded the model.
    for model in two["models"]:
        assert model["load"]["count"] >= 1 and model["memory"]["peak"]["rss_peak_bytes"] > 0


REFERENCES = {1: ["a red circle", "one red circle", "a small red circle"], 2: ["a blue square", "one blue square"]}


def make_golden_set(pytester: pytest.Pytester, captions: dict[int, str], name: str = "shapes") -> None:
    folder = pytester.path / "golden" / name
    coco: dict[str, list[Any]] = {"images": [], "annotations": []}
    for image_id, refs in REFERENCES.items():
        image = make_png(folder / "images" / f"{image_id:03d}.png", color=(image_id * 60, 40, 90))
        image.with_suffix(".caption").write_text(captions[image_id])
        coco["images"].append({"id": image_id, "file_name": f"{image_id:03d}.png"})
        for ref in refs:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id, "caption": ref})
    (folder / "captions.json").write_text(json.dumps(coco))
    (folder / "golden.yaml").write_text(
        f"name: {name}\nprompt: Describe the image.\nreferences: captions.json\nimages_dir: images\n"
        "max_new_tokens: 16\nthresholds: {CIDEr: 0.5}\n"
    )


def test_golden_results_are_in_the_record(fake_project: pytest.Pytester) -> None:
    make_golden_set(fake_project, {1: "a red circle", 2: "a blue square"})
    result = fake_project.runpytest("golden", "--vl-model=fake", "--vl-json=run.json")
    result.assert_outcomes(passed=1)
    record = read_record(fake_project.path / "run.json")
    (golden,) = record["golden"]
    assert golden["set"] == "shapes" and golden["model"] == "fake"
    assert golden["manifest"] == "golden/shapes/golden.yaml"
    assert golden["captions"] == {"1": "a red circle", "2": "a blue square"}
    assert set(golden["per_image"]) == {"1", "2"} and golden["corpus"]["CIDEr"] > 0.5
    assert golden["gated"]["CIDEr"]["passed"] is True and golden["gated"]["CIDEr"]["threshold"] == 0.5
    metrics = record["models"][0]["metrics"]
    assert metrics["CIDEr@shapes"] == metrics["CIDEr"] == golden["corpus"]["CIDEr"]
    assert record["models"][0]["golden"]["shapes"] == golden["corpus"]


def test_save_numbers_runs_per_machine_folder(suite_project: pytest.Pytester) -> None:
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=first").assert_outcomes(passed=10)
    result = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-autosave", "-k", "c1")
    result.assert_outcomes(passed=1)
    folder = suite_project.path / ".vleval" / "runs" / machine_id()
    names = sorted(p.name for p in folder.iterdir())
    assert names[0] == "0001_first.json"
    assert names[1].startswith("0002_") and names[1].endswith(".json")  # no git here: the time alone
    assert read_record(folder / names[0])["run"]["name"] == "first"
    result.stdout.fnmatch_lines([f"*vleval run record saved: .vleval/runs/{machine_id()}/0002_*.json"])


def test_storage_from_option_and_ini(suite_project: pytest.Pytester) -> None:
    suite_project.makeini("[pytest]\nvl_storage = records\n")
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=a", "-k", "c1")
    assert (suite_project.path / "records" / machine_id() / "0001_a.json").is_file()
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save=b", "--vl-storage=elsewhere", "-k", "c1")
    assert (suite_project.path / "elsewhere" / machine_id() / "0001_b.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vl-save=bad name"], "*--vl-save='bad name': a run name is letters, digits*"),
        (
            ["--vl-save", "test_cases/"],
            "*--vl-save='test_cases/'*write --vl-save=VALUE or put --vl-save after the test paths*",
        ),
        (["--vl-compare"], "*--vl-compare=latest: no saved run in *; save one first with --vl-save or --vl-autosave*"),
        (["--vl-compare=nope.json"], "*--vl-compare=nope.json: nope.json: no such file*"),
        (["--vl-compare=7"], "*--vl-compare=7: no saved run matches '7'*"),
    ],
)
def test_bad_storage_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_compare_refuses_a_pytest_benchmark_file(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("bench.json").write_text(json.dumps({"machine_info": {}, "benchmarks": []}))
    result = pytester.runpytest("--vl-compare=bench.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bench.json is a pytest-benchmark file*compare it with --benchmark-compare*"])


def test_storage_finds_runs_by_reference(tmp_path: Path) -> None:
    storage = RunStorage(tmp_path, "Linux-CPython-3.11-64bit")
    record = {"schema": "pytest-vleval/run"}
    first = storage.save(record, "base")
    second = storage.save(record, "3f2a9c1d_20261122_061502")
    third = storage.save(record, "base")
    assert [p.name for p in (first, second, third)] == [
        "0001_base.json",
        "0002_3f2a9c1d_20261122_061502.json",
        "0003_base.json",
    ]
    assert storage.find("latest") == storage.find("") == third
    assert storage.find("2") == storage.find("0002") == second
    assert storage.find("base") == third  # the newest of that name
    assert storage.find("0001_base") == storage.find("0001_base.json") == first
    other = RunStorage(tmp_path, "Darwin-CPython-3.12-64bit")
    assert other.find("0002_3f2a9c1d_20261122_061502") == second  # found in another machine folder
    with pytest.raises(StorageError, match="no saved run in"):
        other.find("latest")
    RunStorage(tmp_path, "Windows-CPython-3.12-64bit").save(record, "shared")
    RunStorage(tmp_path, "Linux-CPython-3.11-64bit").save(record, "shared")
    with pytest.raises(StorageError, match="ambiguous across machine folders"):
        other.find("shared")
    with pytest.raises(StorageError, match="no saved run matches 'missing'"):
        storage.find("missing")


def test_names_and_autosave_names() -> None:
    from datetime import datetime, timezone

    when = datetime(2026, 11, 22, 6, 15, 2, tzinfo=timezone.utc)
    assert autosave_name({"id": "3f2a9c1d5e", "dirty": False}, when) == "3f2a9c1d_20261122_061502"
    assert autosave_name({"id": "3f2a9c1d5e", "dirty": True}, when) == "3f2a9c1d_20261122_061502_uncommitted-changes"
    assert autosave_name(None, when) == "20261122_061502"
    assert check_name("v1.2-rc_3") == "v1.2-rc_3"
    for bad in ("", "a/b", "../x", ".hidden", "a b", "x" * 101):
        with pytest.raises(StorageError):
            check_name(bad)


def test_autosave_name_carries_the_commit(suite_project: pytest.Pytester) -> None:
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=suite_project.path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=suite_project.path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=suite_project.path, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=suite_project.path, capture_output=True, text=True, check=True
    ).stdout.strip()
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-autosave", "-k", "c1")
    (saved,) = (suite_project.path / ".vleval" / "runs" / machine_id()).iterdir()
    assert saved.name.startswith(f"0001_{commit[:8]}_")
    run = read_record(saved)["run"]
    assert run["commit"]["id"] == commit and run["commit"]["dirty"] is False
    assert saved.name == f"0001_{run['name']}.json"


def test_check_record_rejects_other_files() -> None:
    with pytest.raises(RecordError, match="not a pytest-vleval run record"):
        check_record({"hello": 1}, "x.json")
    with pytest.raises(RecordError, match="written with record schema 99; this pytest-vleval reads up to 1"):
        check_record({"schema": "pytest-vleval/run", "schema_version": 99}, "x.json")
    with pytest.raises(RecordError, match="bad schema_version"):
        check_record({"schema": "pytest-vleval/run", "schema_version": "1"}, "x.json")


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    import numpy as np

    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_summarise_and_jsonable() -> None:
    assert summarise([]) is None and summarise([None]) is None
    stats = summarise([3.0, 1.0, None, 2.0, 10.0])
    assert stats == {"n": 4, "mean": 4.0, "p50": 2.5, "p95": pytest.approx(8.95), "min": 1.0, "max": 10.0}
    assert to_jsonable({"a": (1, Path("x")), "b": float("nan"), 3: {2, 1}}) == {"a": [1, "x"], "b": None, "3": [1, 2]}
    assert relative(Path("/r/a/b.yaml"), Path("/r")) == "a/b.yaml"
    assert relative(Path("/elsewhere/b.yaml"), Path("/r")) == "/elsewhere/b.yaml"


def test_help_lists_the_options_without_importing_torch() -> None:
    code = textwrap.dedent(
        """
        import sys, io, contextlib, pytest
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            pytest.main(["--help"])
        text = out.getvalue()
        for flag in ("--vl-save=[NAME]", "--vl-autosave", "--vl-json=PATH", "--vl-storage=PATH", "--vl-compare=[REF]",
                     "--vl-compare-fail=SPEC", "--vl-compare-significance=ALPHA", "--vl-benchmark=[N]",
                     "--vl-benchmark-rounds=N", "--vl-benchmark-warmup=N", "vl_storage", "vl_compare_fail"):
            assert flag in text, flag
        print("HEAVY", sorted(m for m in ("torch", "transformers") if m in sys.modules))
        """
    )
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "HEAVY []" in result.stdout
    code = (
        "import sys, pytest_vleval.records.recorder, pytest_vleval.records.schema, pytest_vleval.records.storage, pytest_vleval.gate.compare, "
        "pytest_vleval.bench.latency, pytest_vleval.bench.memory, pytest_vleval.gate.significance; "
        "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_plugins_can_add_to_the_record_and_collect_only_writes_none(suite_project: pytest.Pytester) -> None:
    conftest = suite_project.path / "conftest.py"
    conftest.write_text(
        conftest.read_text() + "\n\ndef pytest_vleval_update_record(config, record):\n"
        "    record['run']['ci'] = {'job': 'nightly', 'cases': len(record['cases'])}\n"
    )
    suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-json=run.json").assert_outcomes(passed=10)
    assert read_record(suite_project.path / "run.json")["run"]["ci"] == {"job": "nightly", "cases": 10}
    result = suite_project.runpytest("test_cases", "--vl-model=fake", "--vl-save", "--collect-only")
    assert result.ret == 0 and not (suite_project.path / ".vleval" / "runs").exists()


def test_a_run_where_no_model_ran_saves_nothing(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", test_broken="cases:\n  - {id: a, question: [unclosed\n")
    result = fake_project.runpytest("--vl-model=fake", "--vl-save=empty")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["vleval: not saving a run record: no model ran"])
    assert not (fake_project.path / ".vleval" / "runs").exists()


def test_a_record_file_has_one_line_per_case_and_reads_back_equal(tmp_path: Path) -> None:
    from pytest_vleval.records.storage import read_json, write_json

    cases = [
        {"case_id": f"c{i}", "turns": [{"answer": "红色。" if i else '</script> "x"', "score": 0.5}], "error": None}
        for i in range(3)
    ]
    record = {"schema": "pytest-vleval/run", "run": {"name": "r"}, "models": [{"label": "m"}], "cases": cases}
    write_json(tmp_path / "run.json", record)
    text = (tmp_path / "run.json").read_text(encoding="utf-8")
    assert read_json(tmp_path / "run.json") == record
    lines = text.splitlines()
    starts = [line.strip()[:15] for line in lines if '"case_id"' in line]
    assert starts == ['{"case_id": "c0', '{"case_id": "c1', '{"case_id": "c2']
    assert '"run": {\n    "name": "r"\n  }' in text and "红色" in text  # the rest indented, text unescaped
