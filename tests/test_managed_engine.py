"""--vl-serve: a managed engine per model — the command and presets, an engine that fails to start (its log tail
in the one error), and a real `transformers serve` started, used and stopped by the plugin (no process left), also
when the run is interrupted with Ctrl-C. Loopback only; every engine is stopped in a `finally`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_vleval.backends.managed import PRESETS, ManagedEngine, engine_command

from .conftest import make_png

SUITE = """
defaults: {scorer: regex, max_new_tokens: 6}
cases:
  - {id: one, image: images/red.png, question: 'What colour is the shape?', expected: '^.*$'}
  - {id: two, image: images/red.png, question: 'What shape is it?', expected: '^.*$'}
"""


@pytest.fixture(autouse=True)
def _engine_logs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Engine logs (kept when an engine fails) land in the test's folder, not in /tmp."""
    import tempfile

    logs = tmp_path / "engine-logs"
    logs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(logs))
    monkeypatch.setenv("TMPDIR", str(logs))
    return logs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by its parent) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_presets_and_commands() -> None:
    assert engine_command("vllm") == "vllm serve {model} --host 127.0.0.1 --port {port}"
    assert engine_command("transformers") == PRESETS["transformers"]
    own = "vllm serve {model} --port {port} --tensor-parallel-size 2"
    assert engine_command(own) == own
    with pytest.raises(ValueError, match=r"neither a preset .* nor a command holding \{port\}"):
        engine_command("vlm")


def test_a_command_without_a_port_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--vl-serve=vllm serve {model}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vl-serve: 'vllm serve {model}' is neither a preset*"])


def test_an_engine_that_fails_to_start_shows_its_last_lines(pytester: pytest.Pytester) -> None:
    make_png(pytester.path / "images" / "red.png")
    pytester.makefile(".yaml", test_suite=SUITE)
    failing = 'python -c \'import sys; print("RuntimeError: CUDA " + "driver not found"); sys.exit(3)\' {model} {port}'
    result = pytester.runpytest(f"--vl-serve={failing}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*model 'tiny' could not be loaded: --vl-serve: the engine exited with status 3 before it was ready*",
            "RuntimeError: CUDA driver not found",
        ]
    )
    # In the first test's report and the summary; the other test refers to the first.
    assert result.stdout.str().count("CUDA driver not found") == 2
    result.stdout.fnmatch_lines(["*could not be loaded (the reason is in the report of test_suite.yaml::one*"])


def test_an_engine_that_never_gets_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    engine = ManagedEngine("python -c 'import time; print(\"loading\", flush=True); time.sleep(60)' {port}", "m", 1.5)
    started = time.monotonic()
    with pytest.raises(Exception, match=r"not ready within 1.5 s .*--vl-serve-timeout.*\n.*loading"):
        engine.start()
    assert time.monotonic() - started < 10
    assert engine.process is None  # stopped


def _transformers_serve() -> str:
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("`transformers serve` needs its serving extras: pip install fastapi uvicorn openai")
    return "transformers serve {model} --host 127.0.0.1 --port {port} --device cpu --dtype float32"


def test_transformers_serve_is_started_used_and_stopped(
    pytester: pytest.Pytester, random_qwen3vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = _transformers_serve()
    make_png(pytester.path / "images" / "red.png")
    pytester.makefile(".yaml", test_suite=SUITE)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(pytester.mkdir("empty-hub-cache")))
    result = pytester.runpytest_subprocess(
        f"--vl-model={random_qwen3vl}", f"--vl-serve={command}", "--vl-json=run.json", "--vl-no-cache", timeout=300
    )
    result.assert_outcomes(passed=2)
    (model,) = json.loads((pytester.path / "run.json").read_text())["models"]
    backend = model["backend"]
    assert backend["architecture"] == "OpenAI-compatible server" and backend["engine"].startswith("transformers serve")
    assert not _alive(int(backend["engine_pid"])), "the engine outlived the run"
    assert not list(
        Path(os.environ.get("TMPDIR", "/tmp")).glob(
            f"vleval-engine-*-{backend['engine'].split('--port ')[1].split()[0]}.log"
        )
    )


def test_ctrl_c_stops_the_engine(pytester: pytest.Pytester, random_qwen3vl: Path) -> None:
    """SIGINT while the engine starts: pytest ends and the engine (its whole process group) is gone."""
    command = _transformers_serve()
    make_png(pytester.path / "images" / "red.png")
    pytester.makefile(".yaml", test_suite=SUITE)
    log_dir = Path(os.environ["TMPDIR"])
    before = set(log_dir.glob("vleval-engine-*.log"))
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", f"--vl-model={random_qwen3vl}", f"--vl-serve={command}", "--vl-no-cache",
         "-p", "no:cacheprovider"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(pytester.mkdir("hub"))},
    )  # fmt: skip

    def engines(port: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True)

    try:
        deadline = time.monotonic() + 120
        logs: set[Path] = set()
        while time.monotonic() < deadline and not logs:
            logs = set(log_dir.glob("vleval-engine-*.log")) - before
            time.sleep(0.2)
        assert logs, "the engine never started"
        (log,) = logs
        port = log.stem.rsplit("-", 1)[1]
        while time.monotonic() < deadline and engines(port).returncode != 0:
            time.sleep(0.2)
        assert engines(port).returncode == 0, "the engine process was not found while it started"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, output.decode(errors="replace")
    left = engines(port)
    assert left.returncode == 1, f"engine still running after Ctrl-C: {left.stdout}"


def test_a_managed_models_answers_are_cached_apart(tmp_path: Path) -> None:
    """An engine's answers are not the in-process ones: the engine command is part of the answer-cache key."""
    from pytest_vleval.backends.registry import resolve_model
    from pytest_vleval.predict.cache import AnswerCache
    from pytest_vleval.predict.fingerprints import ModelFingerprints

    from .conftest import vl_options

    spec, cache = resolve_model("tiny"), AnswerCache(tmp_path)

    def key(serve: str | None) -> str | None:
        never = lambda _: pytest.fail("a managed model is fingerprinted from its files, without starting it")  # noqa: E731
        return ModelFingerprints(vl_options(serve=serve), cache, never, lambda: False)(spec).key

    in_process, vllm, transformers = key(None), key(PRESETS["vllm"]), key(PRESETS["transformers"])
    assert None not in (in_process, vllm, transformers)
    assert len({in_process, vllm, transformers}) == 3
