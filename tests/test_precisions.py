"""Precision variants: --vl-precisions / MODEL@PRECISION, CPU quantisation (optimum-quanto), the precision table
(terminal, HTML, `python -m pytest_vleval report`), the in-run gate (accuracy@int4:-5pp) and the monthly cost.

The built-in model runs in subprocesses (torch in-process pytester runs are not safe); the gate's logic is
checked with a hook backend whose int4 variant answers some cases wrongly, so that it must fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vleval.backends.precision import parse_precisions, split_precision
from pytest_vleval.gate.rules import SpecError, parse_fail_spec

from .conftest import make_png

REPO = Path(__file__).resolve().parents[1]

VARIANT_CONFTEST = '''
class Variant:
    """Answers 'say: X' with X, except that the int4 variant answers 'wrong' to questions holding 'fragile'."""

    def __init__(self, spec):
        self.spec = spec
        self.info = {"device": "cpu", "dtype": "float32", "architecture": "Fake", "precision": spec.precision,
                     "weight_bytes": {"fp32": 4000, "bf16": 2000, "int8": 1000, "int4": 500}[spec.precision]}

    def generate(self, conversations):
        out = []
        for c in conversations:
            said = c.question.split("say:", 1)[1].strip()
            out.append("wrong" if self.spec.precision == "int4" and "fragile" in said else said)
        return out

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    if spec.requested.startswith("fake"):
        return Variant(spec)
    return None
'''

SUITE = "defaults: {scorer: exact}\ncases:\n" + "".join(
    f"  - {{id: case-{n}, image: images/red.png, question: 'say: {word}', expected: {word}}}\n"
    for n, word in enumerate(["red", "fragile-one", "blue", "fragile-two", "green", "square", "circle", "left"])
)


@pytest.fixture
def variants(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(VARIANT_CONFTEST)
    make_png(pytester.path / "images" / "red.png")
    pytester.makefile(".yaml", test_words=SUITE)
    return pytester


def test_precision_names() -> None:
    assert split_precision("tiny@int8") == ("tiny", "int8")
    assert split_precision("Qwen/Qwen3-VL-8B-Instruct@INT4") == ("Qwen/Qwen3-VL-8B-Instruct", "int4")
    assert split_precision("user@host-model") == ("user@host-model", None)
    assert parse_precisions("fp32, int8,int4") == ("fp32", "int8", "int4")
    with pytest.raises(ValueError, match="'int3' is not a precision; expected some of fp32, bf16, fp16, int8, int4"):
        parse_precisions("fp32,int3")
    with pytest.raises(ValueError, match="named twice"):
        parse_precisions("int8,int8")
    (rule,) = parse_fail_spec("accuracy@int4:-5pp")
    assert (rule.metric, rule.precision, rule.limit) == ("accuracy", "int4", pytest.approx(0.05))
    (latency,) = parse_fail_spec("latency_p50@INT8:+20%")
    assert latency.precision == "int8"
    with pytest.raises(SpecError, match="only accuracy, mean_score"):
        parse_fail_spec("latency_p50@test_x.yaml:+20%")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vl-precisions=fp32,int3"], "--vl-precisions='fp32,int3': 'int3' is not a precision"),
        (["--vl-precisions=fp32,int8", "--vl-precision-reference=bf16"], "--vl-precision-reference='bf16': expected one of fp32, int8"),
        (["--vl-requests-per-day=1000"], "--vl-requests-per-day needs --vl-gpu-cost-per-hour"),
        (["--vl-compare-fail=accuracy:-2%"], "--vl-compare-fail needs --vl-compare"),
    ],
)  # fmt: skip
def test_usage_errors(variants: pytest.Pytester, args: list[str], message: str) -> None:
    result = variants.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str(), result.stderr.str()


def test_a_missing_quantisation_backend_names_the_package(variants: pytest.Pytester, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("optimum") else real(name, *a)
    )
    result = variants.runpytest("--vl-model=tiny", "--vl-precisions=fp32,int8", "--vl-device=cpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "precision int8 needs optimum-quanto on this machine: pip install 'pytest-vleval[quant]'" in str(
        result.stderr
    )


def test_variants_are_labelled_and_the_in_run_gate_fails_on_a_lost_precision(variants: pytest.Pytester) -> None:
    args = ["--vl-model=fake", "--vl-precisions=fp32,int8,int4", "--vl-json=run.json", "-p", "no:cacheprovider"]
    result = variants.runpytest(*args, "--vl-compare-fail=accuracy@int4:-5pp,accuracy@int8:-5pp")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=22, failed=2)  # int4 gets the two fragile cases wrong
    text = result.stdout.str()
    assert "vleval precisions" in text
    assert "fake@int4 vs fake@fp32: 2 flipped (2 now fail, 0 now pass)" in text
    assert "failed test_words.yaml::case-1: 'fragile-one' -> 'wrong'" in text
    assert "fake@int8 vs fake@fp32: no case flipped" in text
    result.stdout.fnmatch_lines(["vleval precision gate FAILED:", "  fake@int4: accuracy*-5pp*"])
    record = json.loads((variants.path / "run.json").read_text())
    assert [m["label"] for m in record["models"]] == ["fake@fp32", "fake@int8", "fake@int4"]
    assert record["precisions"]["groups"] == [
        {"model": "fake", "reference": "fake@fp32", "variants": ["fake@fp32", "fake@int8", "fake@int4"]}
    ]
    assert record["precisions"]["comparison"]["failed"] is True
    # A looser limit passes; a limit on a precision that did not run fails as missing.
    loose = variants.runpytest(*args, "--vl-compare-fail=accuracy@int4:-30pp")
    assert loose.ret == pytest.ExitCode.TESTS_FAILED  # the two cases still fail as tests
    loose.stdout.fnmatch_lines(["vleval precision gate passed (accuracy@int4:-30pp)"])
    missing = variants.runpytest("--vl-model=fake", "--vl-precisions=fp32,int8", "--vl-compare-fail=accuracy@int4:-5pp")
    assert missing.ret == pytest.ExitCode.TESTS_FAILED
    missing.stdout.fnmatch_lines(
        ["vleval precision gate FAILED:", "  @int4: accuracy@int4 cannot be checked*no model of this run ran at int4*"]
    )


def test_the_reference_precision_and_the_weight_ratio(variants: pytest.Pytester) -> None:
    result = variants.runpytest(
        "--vl-model=fake", "--vl-precisions=int8,fp32,int4", "--vl-precision-reference=fp32", "-k", "case-0"
    )
    text = result.stdout.str()
    assert "reference: fake@fp32; d = change vs the reference" in text
    lines = [line for line in text.splitlines() if line.startswith("fake@int4 |") and "x" in line]
    assert any("0.12x" in line for line in lines), text  # 500 / 4000 bytes


def test_the_built_in_model_at_four_precisions(pytester: pytest.Pytester) -> None:
    """tiny at fp32, bf16, int8 and int4 on this CPU: smaller weights by the expected ratios, answers compared
    case by case, the table with measured bytes, memory and speed, each variant cached under its own key."""
    import importlib.util

    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.quanto") is None:
        # find_spec, not importorskip: importing quanto imports torch into this process, and in-process runs of
        # later test modules must not find torch there (see tests/conftest.py)
        pytest.skip("optimum-quanto is not installed (pip install 'pytest-vleval[quant]')")
    for name in ("test_colour.yaml", "test_count.yaml", "test_grounding.yaml"):
        shutil.copy(REPO / "test_cases" / name, pytester.path / name)
    shutil.copytree(REPO / "test_cases" / "images", pytester.path / "images")
    args = ["--vl-model=tiny", "--vl-precisions=fp32,bf16,int8,int4,fp16", "--vl-json=run.json"]
    args += ["--vl-gpu-cost-per-hour=2.5", "--vl-requests-per-day=1000", "--vl-report=report.html"]
    result = pytester.runpytest_subprocess(*args, "--vl-compare-fail=accuracy@int4:-10pp", timeout=600)
    text = result.stdout.str()
    assert result.ret == 0, text[-4000:]
    result.assert_outcomes(passed=4 * 21, skipped=21)  # fp16: skipped on a CPU, with the reason
    assert "SKIPPED" not in text or "model tiny@fp16: not run here: fp16 needs a GPU" in text
    assert "model tiny@fp16 not run here: fp16 needs a GPU" in text
    record = json.loads((pytester.path / "run.json").read_text())
    weights = {m["label"]: m["backend"]["weight_bytes"] for m in record["models"] if "weight_bytes" in m["backend"]}
    fp32 = weights["tiny@fp32"]
    assert weights["tiny@bf16"] == fp32 // 2
    assert 0.25 < weights["tiny@int8"] / fp32 < 0.40  # linear weights 1/4 (+ scales), embeddings and norms stay float
    assert 0.15 < weights["tiny@int4"] / fp32 < weights["tiny@int8"] / fp32
    answers: dict[str, dict] = {}
    for case in record["cases"]:
        answers.setdefault(case["model"], {})[case["case_id"]] = [t.get("answer") for t in case["turns"]]
    same = {label: sum(a == answers["tiny@fp32"][k] for k, a in got.items()) for label, got in answers.items()}
    assert same["tiny@bf16"] >= 19 and same["tiny@int8"] >= 19 and same["tiny@int4"] >= 17, same
    assert "vleval precisions" in text and "$/month" in text and "x fp32" in text
    assert "vleval precision gate passed (accuracy@int4:-10pp)" in text
    assert 'id="precisions"' in (pytester.path / "report.html").read_text()
    # Each variant has its own cache key: a rerun takes every answer from the cache, none shared.
    again = pytester.runpytest_subprocess(*args[:2], "--vl-json=again.json", timeout=600)
    cached = json.loads((pytester.path / "again.json").read_text())["cases"]
    assert all(c["cached"] for c in cached if c["outcome"] != "skipped"), again.stdout.str()[-2000:]
    # The report command prints the same table from the record.
    cli = subprocess.run(
        [sys.executable, "-m", "pytest_vleval", "report", "run.json", "--width", "200", "--requests-per-day", "1000"],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "precisions of tiny (reference tiny@fp32):" in cli.stdout and "tiny@int4 vs tiny@fp32" in cli.stdout


def test_limits_on_a_precision_in_the_ini_gate_the_run(variants: pytest.Pytester) -> None:
    """The ini's limits on a precision are checked within the run; its limits against a baseline wait for
    --vl-compare (as before)."""
    variants.makeini("[pytest]\nvl_compare_fail = accuracy@int4:-5pp,accuracy:-2%\n")
    result = variants.runpytest("--vl-model=fake", "--vl-precisions=fp32,int4", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["vleval precision gate FAILED:", "  fake@int4: accuracy*-5pp*"])
