"""Faults a user meets, run as a user meets them: pytest in a real subprocess, real SIGINT, real files.

Each interrupt test starts pytest in its own process, waits until the run has reached the stage under test (the
project's conftest writes a file there and then blocks), sends SIGINT to pytest alone (the harder case: a terminal's
Ctrl-C also reaches the children) and requires that pytest ends within seconds, writes what it had, and leaves no
process of its own behind (every process it started carries a marker in its environment).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .test_golden_plugin import GOOD, make_set

STAGE_CONFTEST = """
import os
import time
from pathlib import Path

STAGE = os.environ.get("VL_STAGE", "")


def ready(stage):
    if STAGE == stage:
        Path(os.environ["VL_READY"]).write_text(stage)
        time.sleep(120)


if STAGE == "scoring":  # hold METEOR's exchange open, inside pycocoevalcap's lock, as a long corpus does
    from pycocoevalcap.meteor.meteor import Meteor

    original = Meteor._stat

    def _stat(self, hypothesis, references):
        ready("scoring")
        return original(self, hypothesis, references)

    Meteor._stat = _stat


class StageBackend:
    def __init__(self, spec):
        self.spec = spec
        self.info = {"device": "cpu", "dtype": "float32", "architecture": "Stage"}

    def generate(self, conversations):
        answers = []
        for c in conversations:
            if "slow" in c.question:
                ready("generating")
            if "say:" in c.question:
                answers.append(c.question.split("say:", 1)[1].strip())
            else:
                answers.append(c.images[0].with_suffix(".caption").read_text().strip())
        return answers

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    if "://" in spec.source:
        return None  # a served model: the built-in OpenAI-compatible backend
    ready("loading")
    return StageBackend(spec)


def pytest_vleval_update_record(config, record):
    ready("recording")
"""

CASES = """
cases:
  - {id: first, image: images/red.png, question: "say: red", expected: red}
  - {id: second, image: images/red.png, question: "slow say: red", expected: red}
  - {id: third, image: images/red.png, question: "say: red", expected: red}
"""

GRACE_SECONDS = 20  # from SIGINT to exit; pytest's own teardown takes a few seconds on a busy machine


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"VL_TOKEN={token}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def interrupt_at(
    project: Path, stage: str, *args: str, reach_within: float = 120, ready: Path | None = None, group: bool = False
) -> tuple[int, str]:
    """Run pytest in `project` until it reaches `stage` (its conftest, or whoever else, writes `ready`), send
    SIGINT (to its whole process group, as a terminal's Ctrl-C does, with `group`), and return (exit code, output). Fails when the stage is not reached, pytest does not end within
    GRACE_SECONDS, or a process is left."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc to find leftover processes")
    token = uuid.uuid4().hex
    ready = ready or project / f"ready-{token}"
    log = project / f"log-{token}.txt"
    env = {**os.environ, "VL_STAGE": stage, "VL_READY": str(ready), "VL_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + reach_within
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run never reached {stage!r}:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        if group:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            code = process.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pytest still runs {GRACE_SECONDS} s after Ctrl-C at {stage!r}:\n{log.read_text()[-4000:]}")
        print(f"Ctrl-C at {stage!r}: pytest ended {time.monotonic() - sent:.1f} s later, exit {code}")
        time.sleep(0.5)  # a child killed at exit needs a moment to be reaped
        left = _processes_with(token)
        assert not left, f"processes left after Ctrl-C at {stage!r}: {left}"
        return code, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _processes_with(token):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def stage_project(fake_project: pytest.Pytester) -> Path:
    fake_project.makeconftest(STAGE_CONFTEST)
    fake_project.makefile(".yaml", test_cases=CASES)
    return fake_project.path


@pytest.mark.parametrize("stage", ["loading", "generating"])
def test_ctrl_c_ends_the_run_and_keeps_what_was_done(stage_project: Path, stage: str) -> None:
    code, output = interrupt_at(
        stage_project, stage, "--vl-model=stage", "--vl-batch-size=1", "--vl-json=run.json", "test_cases.yaml"
    )
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    record = json.loads((stage_project / "run.json").read_text())
    assert record["run"]["complete"] is False
    ran = [case["case_id"] for case in record["cases"]]
    assert ran == ([] if stage == "loading" else ["first"])


@pytest.mark.parametrize("group", [False, True], ids=["pytest-alone", "process-group"])
def test_ctrl_c_while_meteor_scores_captions_does_not_hang(fake_project: pytest.Pytester, group: bool) -> None:
    """pycocoevalcap's Meteor.__del__ waited forever for the lock an interrupted compute_score held."""
    from pytest_vleval.scoring.java import java_status

    if not java_status().usable:
        pytest.skip("METEOR needs Java")
    fake_project.makeconftest(STAGE_CONFTEST)
    make_set(fake_project, GOOD, "{METEOR: 0.1}")
    code, output = interrupt_at(fake_project.path, "scoring", "--vl-model=stage", "--vl-json=run.json", group=group)
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert json.loads((fake_project.path / "run.json").read_text())["run"]["complete"] is False


def test_ctrl_c_while_the_record_is_written(stage_project: Path) -> None:
    code, output = interrupt_at(stage_project, "recording", "--vl-model=stage", "--vl-json=run.json")
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "interrupted while finishing the record: it is written without the comparison" in output
    record = json.loads((stage_project / "run.json").read_text())
    assert record["run"]["complete"] is False
    assert [case["case_id"] for case in record["cases"]] == ["first", "second", "third"]


def test_ctrl_c_while_a_served_model_answers(stage_project: Path) -> None:
    """Requests in flight to a server that takes its time: Ctrl-C does not wait for them."""
    from .test_openai_backend import StubServer, say

    ready = stage_project / "server-ready"

    def slow(body: dict) -> tuple:
        if "slow" in json.dumps(body):
            ready.write_text("asked")
            time.sleep(60)
        return say(body)

    server = StubServer(respond=slow).start()
    try:
        spec = f"--vl-model=openai://127.0.0.1:{server.port}/v1/stub-vlm"
        code, output = interrupt_at(stage_project, "served", spec, "--vl-json=run.json", "test_cases.yaml", ready=ready)
    finally:
        server.stop()
    assert code == pytest.ExitCode.INTERRUPTED, output
    assert json.loads((stage_project / "run.json").read_text())["run"]["complete"] is False


# --- a model that cannot be loaded ---------------------------------------------------------------------------

BROKEN_LOADER = """
def pytest_vleval_load_model(config, spec, options):
    raise RuntimeError("the weights file is truncated")
"""

THREE_CASES = """
cases:
  - {id: a, image: images/red.png, question: "say: red", expected: red}
  - {id: b, image: images/red.png, question: "say: red", expected: red}
  - {id: c, image: images/red.png, question: "say: red", expected: red}
"""


def test_a_model_that_cannot_load_is_explained_once(fake_project: pytest.Pytester) -> None:
    fake_project.makeconftest(BROKEN_LOADER)
    fake_project.makefile(".yaml", test_three=THREE_CASES)
    fake_project.makepyfile(test_py="def test_uses_the_model(vl_model):\n    assert vl_model\n")
    result = fake_project.runpytest("--vl-model=broken", "test_three.yaml", "test_py.py", "-p", "no:randomly")
    result.assert_outcomes(failed=3, errors=1)
    out = result.stdout.str()
    reason = "loading 'broken' raised RuntimeError: the weights file is truncated"
    # once in the first case's report, once in the summary; never a traceback
    assert out.count(reason) == 2, out
    assert out.count("could not be loaded (the reason is in the report of test_three.yaml::a[broken])") == 3
    assert "Traceback" not in out and "raise RuntimeError" not in out
    assert "All traceback entries are hidden" not in out


def test_full_trace_shows_where_a_load_failed(fake_project: pytest.Pytester) -> None:
    fake_project.makeconftest(BROKEN_LOADER)
    fake_project.makefile(".yaml", test_three=THREE_CASES)
    result = fake_project.runpytest("--vl-model=broken", "--full-trace")
    assert 'raise RuntimeError("the weights file is truncated")' in result.stdout.str()


def _closed_port() -> int:
    from .test_openai_backend import free_port

    return free_port()  # bound and released: nothing listens there


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A hub that refuses connections (fast and deterministic; a real offline machine fails in DNS) and an empty
    hub cache; the suite's HF_HUB_OFFLINE=1 is lifted so that the probe runs."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_hub_model_without_network_fails_in_seconds(fake_project: pytest.Pytester, no_hub: Path) -> None:
    fake_project.makefile(".yaml", test_three=THREE_CASES)
    started = time.monotonic()
    result = fake_project.runpytest_subprocess("--vl-model=Qwen3-VL-8B", "-p", "no:randomly")
    elapsed = time.monotonic() - started
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    assert elapsed < 30, f"{elapsed:.0f} s"
    assert "cannot be reached" in out and f"not in the local cache {no_hub}" in out
    assert "hf download Qwen/Qwen3-VL-8B-Instruct" in out and "HF_HUB_OFFLINE=1" in out
    assert out.count("could not be loaded (the reason is in the report of") == 2
    assert "Traceback" not in out


def test_hub_offline_variable_is_named(
    fake_project: pytest.Pytester, no_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_project.makefile(".yaml", test_three=THREE_CASES)
    result = fake_project.runpytest_subprocess("--vl-model=some-org/some-vlm")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*HF_HUB_OFFLINE=1 is set, and the model is not in the local cache*"])


def test_cached_hub_model_loads_when_the_hub_is_unreachable(
    fake_project: pytest.Pytester, no_hub: Path, random_qwen3vl: Path
) -> None:
    """transformers would retry each file for ~35 s before falling back to the cache; the probe goes there at once."""
    import shutil

    repo = no_hub / "models--tiny-org--qwen3vl"
    shutil.copytree(random_qwen3vl, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    fake_project.makefile(
        ".yaml",
        test_one="cases:\n  - {id: a, image: images/red.png, question: q, expected: never-this}\n"
        "  - {id: b, image: images/red.png, question: q, expected: '.*', scorer: regex}\n",
    )
    started = time.monotonic()
    result = fake_project.runpytest_subprocess("--vl-model=tiny-org/qwen3vl", "--vl-max-new-tokens=2")
    result.assert_outcomes(passed=1, failed=1)
    assert time.monotonic() - started < 60
    # transformers' "Loading weights" bar is not captured into the report of the case that loaded the model
    assert "Loading weights" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("path", ["./no/such/dir", "../elsewhere/model", "~/no-such-model", "test_three.yaml"])
def test_a_model_path_that_is_not_a_directory_is_a_usage_error(fake_project: pytest.Pytester, path: str) -> None:
    fake_project.makefile(".yaml", test_three=THREE_CASES)
    result = fake_project.runpytest(f"--vl-model={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--vl-model: '{path}' looks like a local path, but * give a directory*"])


def test_a_model_that_needs_its_own_code_names_the_flag(fake_project: pytest.Pytester) -> None:
    folder = fake_project.path / "remote-model"
    folder.mkdir()
    auto_map = {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "x-remote", "auto_map": auto_map}))
    fake_project.makefile(".yaml", test_three=THREE_CASES)
    result = fake_project.runpytest_subprocess("--vl-model=./remote-model")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*its code lives in the model's repository*pass --vl-trust-remote-code*"])
