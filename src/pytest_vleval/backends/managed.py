"""Managed inference engines (``--vl-serve``): the plugin starts an OpenAI-compatible server for each model as it
loads (one at a time, like every model), waits until it is ready, asks it through the ``openai://`` backend, and
stops it when the model is closed: after its cases, at the end of the session, on Ctrl-C and on failure.

The engine runs in its own process group on a free local port; on Linux it also gets SIGTERM when pytest dies
(``PR_SET_PDEATHSIG``), so not even a killed pytest leaves it behind. An engine that exits or is not ready in time
is a load error of its model that shows the engine's last log lines."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vleval.backends.base import ModelLoadError, ModelSpec
from pytest_vleval.backends.openai import OpenAIBackend

if TYPE_CHECKING:
    from pytest_vleval.options import VlOptions

__all__ = ["PRESETS", "ManagedBackend", "ManagedEngine", "engine_command", "stop_process_group"]

# {model}: the model's local directory or hub id; {port}: a free local port chosen by the plugin.
PRESETS: dict[str, str] = {
    "transformers": "transformers serve {model} --host 127.0.0.1 --port {port}",
    "vllm": "vllm serve {model} --host 127.0.0.1 --port {port}",
    "sglang": "python -m sglang.launch_server --model-path {model} --host 127.0.0.1 --port {port}",
}
LOG_TAIL_LINES = 25


def engine_command(value: str) -> str:
    """A preset's command, or the user's own; it must hold ``{port}`` (ValueError otherwise)."""
    command = PRESETS.get(value.strip(), value.strip())
    if "{port}" not in command:
        raise ValueError(
            f"{value!r} is neither a preset ({', '.join(PRESETS)}) nor a command holding {{port}} (and usually "
            "{model}), e.g. 'vllm serve {model} --port {port} --tensor-parallel-size 2'"
        )
    return command


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _executable(args: list[str]) -> list[str]:
    """The command with its program found on PATH, else next to this Python (a venv that is not activated)."""
    if args and shutil.which(args[0]) is None:
        beside = Path(sys.executable).with_name(args[0])
        if beside.exists():
            return [str(beside), *args[1:]]
        if args[0] in ("python", "python3"):
            return [sys.executable, *args[1:]]
    return args


class ManagedEngine:
    """One engine process: started on a free port, ready when ``/health`` answers 200, stopped with its group."""

    def __init__(self, template: str, model: str, timeout: float) -> None:
        self.port = _free_port()
        self.command = template.format(model=shlex.quote(model), port=self.port)
        self.timeout = timeout
        self.log = Path(tempfile.gettempdir()) / f"vleval-engine-{os.getpid()}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(the engine printed nothing)"

    def start(self) -> None:
        args = _executable(shlex.split(self.command))
        with self.log.open("wb") as log:
            try:
                self.process = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )  # fmt: skip
            except OSError as exc:
                raise ModelLoadError(f"--vl-serve: cannot start {self.command!r}: {exc}") from None
        try:
            self._wait_ready()
        except BaseException:  # not ready, or Ctrl-C while waiting: no engine is left behind
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.timeout
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ModelLoadError(
                    f"--vl-serve: the engine exited with status {code} before it was ready ({self.command}); "
                    f"its last lines ({self.log}):\n{self.tail()}"
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            time.sleep(0.25)
        raise ModelLoadError(
            f"--vl-serve: the engine was not ready within {self.timeout:g} s (GET {url}; --vl-serve-timeout to wait "
            f"longer) ({self.command}); its last lines ({self.log}):\n{self.tail()}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the process group of ``process`` (started with ``start_new_session``), SIGKILL after ``grace``
    seconds; returns once the process is gone."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class ManagedBackend(OpenAIBackend):
    """The ``openai://`` backend in front of an engine this plugin started for the model; closing it stops it."""

    def __init__(self, spec: ModelSpec, options: VlOptions) -> None:
        assert options.serve is not None
        self.engine = ManagedEngine(options.serve, spec.source, options.serve_timeout)
        self.engine.start()
        served = ModelSpec(
            spec.requested, f"openai://127.0.0.1:{self.engine.port}/v1/{spec.source}", spec.label, is_local=False
        )
        try:
            super().__init__(served, options)
        except BaseException:
            self.engine.stop()
            raise
        pid = self.engine.process.pid if self.engine.process is not None else None
        self.info.update({"engine": self.engine.command, "engine_pid": pid})

    def close(self) -> None:
        """Stop the engine; its log is kept only where an error message named it (it did not start)."""
        try:
            super().close()
        finally:
            self.engine.stop()
            self.engine.log.unlink(missing_ok=True)
