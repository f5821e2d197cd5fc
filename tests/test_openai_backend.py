"""The OpenAI-compatible HTTP backend.

Protocol details against a stub server (stdlib ``http.server`` on 127.0.0.1) and the real round trip against
``transformers serve`` on 127.0.0.1 with a locally built random Qwen3-VL. Loopback only; every request loop is
bounded in count and time.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.backends.openai import OpenAIBackend
from pytest_vleval.backends.openai_api import fingerprint, parse_spec
from pytest_vleval.models import Conversation, GenerationFailure, ModelLoadError, resolve_model

from .conftest import make_png
from .conftest import vl_options as options

SECRET = "sk-test-5f1e0c9a7b3d-never-print-me"

Reply = tuple[int, Any, dict[str, str]]  # status, JSON body (or str), headers


def completion(text: str) -> Reply:
    return (
        200,
        {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]},
        {},
    )


class Events(list):
    """A streamed reply: the events of a server-sent event stream, sent `gap` seconds apart."""

    gap = 0.05


def streamed(text: str, *, usage: bool = True, prompt_tokens: int = 31) -> Reply:
    """How vLLM streams `text`: a role chunk, one chunk per word, a finish chunk, usage, [DONE]."""
    words = text.split(" ")
    chunks: list = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        chunks.append({"choices": [{"index": 0, "delta": {"content": piece}}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        chunks.append({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words)}})
    chunks.append("[DONE]")
    return 200, Events(chunks), {}


def last_user_text(body: dict) -> str:
    user = [m for m in body["messages"] if m["role"] == "user"][-1]
    return next(part["text"] for part in user["content"] if part["type"] == "text")


def say(body: dict) -> Reply:
    """Answer 'say: X' with X, like the fake in-process backend of conftest.py."""
    text = last_user_text(body)
    return completion(text.split("say:", 1)[1].strip() if "say:" in text else "")


@dataclass
class StubServer:
    """An OpenAI-compatible server in a thread: records requests; ``respond`` decides each chat reply."""

    respond: Callable[[dict], Reply] = say
    models: list[dict] = field(default_factory=lambda: [{"id": "stub-vlm", "object": "model", "owned_by": "tests"}])
    require_key: str | None = None
    health: Reply = (200, {"status": "ok"}, {})
    requests: list[dict] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def start(self) -> StubServer:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, reply: Reply) -> None:
                status, body, headers = reply
                if isinstance(body, Events):
                    self._send_events(status, body)
                    return
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def _send_events(self, status: int, events: Events) -> None:
                """A server-sent event stream, one event per write, `events.gap` seconds apart; then close."""
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in events:
                    time.sleep(events.gap)
                    line = event if isinstance(event, str) else json.dumps(event)
                    self.wfile.write(f"data: {line}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

            def _authorized(self) -> bool:
                if stub.require_key and self.headers.get("Authorization") != f"Bearer {stub.require_key}":
                    self._send((401, {"error": {"message": "Incorrect API key provided"}}, {}))
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path == "/v1/models":
                    self._send((200, {"object": "list", "data": stub.models}, {}))
                elif self.path == "/health":
                    self._send(stub.health)
                else:
                    self._send((404, {"detail": "Not Found"}, {}))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    if self._authorized():
                        self._send(stub.respond(body))
                finally:
                    with stub.lock:
                        stub.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spec(self, model: str = "stub-vlm") -> str:
        return f"openai://127.0.0.1:{self.port}/v1/{model}"

    def chat_bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests if r["path"] == "/v1/chat/completions"]


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer().start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_backend(spec: str, *, backoff: float = 0.01, **overrides: object) -> OpenAIBackend:
    backend = OpenAIBackend(resolve_model(spec), options(**overrides))
    backend.http.backoff = backoff
    return backend


# --- spec syntax -------------------------------------------------------------------------------------------


def test_spec_syntax() -> None:
    plain = parse_spec("openai://127.0.0.1:8000/v1/Qwen/Qwen3-VL-8B-Instruct")
    assert (plain.scheme, plain.host, plain.port, plain.base_path) == ("http", "127.0.0.1", 8000, "/v1")
    assert plain.model == "Qwen/Qwen3-VL-8B-Instruct"
    assert plain.base_url == "http://127.0.0.1:8000/v1"
    tls = parse_spec("openai+https://models.example.org/serving/v1/my-vlm")
    assert tls.base_url == "https://models.example.org:443/serving/v1" and tls.model == "my-vlm"
    assert parse_spec("openai://[::1]:9000/v1/m").base_url == "http://[::1]:9000/v1"
    assert parse_spec("openai://h:1/v1//abs/path/model").model == "/abs/path/model"  # transformers serve, local dir

    spec = resolve_model("openai://127.0.0.1:8000/v1/Qwen/Qwen3-VL-8B-Instruct")
    assert (spec.label, spec.is_local, spec.source) == ("Qwen3-VL-8B-Instruct", False, spec.requested)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("openai://127.0.0.1:8000/v1/", "no model name"),
        ("openai://127.0.0.1:8000/chat/model", "no model name"),
        ("openai://127.0.0.1:port/v1/m", "port is not a number"),
        ("openai://127.0.0.1:8000/v1/m?x=1", "no query string"),
        ("openai:///v1/m", "no host"),
    ],
)
def test_malformed_specs_are_usage_errors(pytester: pytest.Pytester, bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec(bad)
    result = pytester.runpytest(f"--vl-model={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--vl-model: *{message}*openai://HOST:PORT/v1/MODEL*"])


def test_credentials_in_the_spec_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="must not contain credentials") as info:
        parse_spec(f"openai://user:{SECRET}@127.0.0.1:8000/v1/m")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vl-concurrency=0"], "--vl-concurrency='0': expected a positive integer"),
        (["--vl-request-timeout=soon"], "--vl-request-timeout='soon': expected a positive number of seconds"),
        (["--vl-api-key-env=MY-KEY"], "--vl-api-key-env='MY-KEY': expected an environment variable name"),
    ],
)
def test_option_validation(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_help_lists_the_http_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = " ".join(result.stdout.str().split())
    assert (
        "--vl-concurrency=N Requests in flight at once to an openai://, http:// or gradio:// model. Default: ini "
        "vl_concurrency, else 4." in text
    )
    assert "--vl-request-timeout=SECONDS Seconds to wait" in text and "else 120." in text
    assert "--vl-api-key-env=NAME Environment variable holding the API key" in text
    assert "openai://HOST:PORT/v1/MODEL" in text


def test_importing_the_backend_does_not_import_torch() -> None:
    code = "import sys, pytest_vleval.backends.openai; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- protocol details against the stub ---------------------------------------------------------------------


def test_request_shape_follows_the_prompt_contract(stub: StubServer, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLEVAL_API_KEY", SECRET)
    red = make_png(tmp_path / "red.png", (32, 16), (220, 20, 20))
    blue = make_png(tmp_path / "blue.png", color=(20, 20, 220))
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "odd.tiff")
    backend = http_backend(stub.spec())
    conv = Conversation(
        images=(red, blue),
        question="say: red",
        history=(("What is it?", "a circle"),),
        system="Answer briefly.",
        max_new_tokens=7,
    )
    assert backend.generate([conv, Conversation(images=(tmp_path / "odd.tiff",), question="say: x")]) == ["red", "x"]

    # The two went out concurrently: tell them apart by their question.
    first, second = sorted(stub.requests, key=lambda r: last_user_text(r["body"]) != "say: red")
    assert first["headers"]["Authorization"] == f"Bearer {SECRET}"
    body = first["body"]
    assert body["model"] == "stub-vlm"
    assert body["temperature"] == 0 and body["max_tokens"] == 7 and body["stream"] is False
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == "Answer briefly."
    opening = body["messages"][1]["content"]
    assert [p["type"] for p in opening] == ["image_url", "image_url", "text"]
    assert opening[2]["text"] == "What is it?"
    for part, path in zip(opening[:2], (red, blue), strict=True):
        url = part["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == path.read_bytes()  # the file as it is, no re-encoding
    assert body["messages"][2]["content"] == "a circle"
    assert body["messages"][3]["content"] == [{"type": "text", "text": "say: red"}]
    # A format servers may not read is re-encoded losslessly as PNG.
    tiff_url = second["body"]["messages"][0]["content"][0]["image_url"]["url"]
    assert tiff_url.startswith("data:image/png;base64,")
    assert backend.info["fingerprint"].startswith("openai:")
    assert SECRET not in repr(backend.info) and SECRET not in repr(backend)


def test_http_urls_pass_through() -> None:
    from pytest_vleval.backends.openai_api import chat_messages

    conv = Conversation(images=("https://example.org/cat.png",), question="What?")  # type: ignore[arg-type]
    assert chat_messages(conv)[0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": "https://example.org/cat.png"},
    }


def test_retries_on_429_and_5xx_then_succeeds(stub: StubServer) -> None:
    script = iter([(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}), (503, "busy", {})])
    stub.respond = lambda body: next(script, None) or say(body)
    backend = http_backend(stub.spec())
    started = time.perf_counter()
    assert backend.generate([Conversation(images=(), question="say: fine")]) == ["fine"]
    assert len(stub.chat_bodies()) == 3
    assert time.perf_counter() - started < 2


def test_client_errors_are_not_retried_and_name_the_served_models(stub: StubServer) -> None:
    stub.respond = lambda body: (
        404,
        {"object": "error", "message": f"The model `{body['model']}` does not exist."},
        {},
    )
    backend = http_backend(stub.spec("no-such-model"))
    (answer,) = backend.generate([Conversation(images=(), question="say: x")])
    assert isinstance(answer, GenerationFailure)
    assert answer.message == (
        f"POST http://127.0.0.1:{stub.port}/v1/chat/completions: HTTP 404: "
        "The model `no-such-model` does not exist. (the server lists: stub-vlm)"
    )
    assert len(stub.chat_bodies()) == 1


def test_timeout_fails_that_conversation_only(stub: StubServer) -> None:
    def slow(body: dict) -> Reply:
        if "slow" in last_user_text(body):
            time.sleep(1.5)
        return say(body)

    stub.respond = slow
    backend = http_backend(stub.spec(), request_timeout=0.3, concurrency=2)
    started = time.perf_counter()
    answers = backend.generate(
        [Conversation(images=(), question="say: slow"), Conversation(images=(), question="say: quick")]
    )
    assert time.perf_counter() - started < 1.4  # did not wait for the slow answer (1.5 s)
    assert isinstance(answers[0], GenerationFailure)
    assert "no answer within 0.3 s (--vl-request-timeout=0.3)" in answers[0].message
    assert answers[1] == "quick"
    assert len(stub.chat_bodies()) == 2  # a timeout is not retried: the server is busy, not gone


def test_concurrency_bounds_requests_in_flight(stub: StubServer) -> None:
    def pause(body: dict) -> Reply:
        time.sleep(0.2)
        return say(body)

    stub.respond = pause
    backend = http_backend(stub.spec(), concurrency=3)
    conversations = [Conversation(images=(), question=f"say: {n}") for n in range(9)]
    assert backend.generate(conversations) == [str(n) for n in range(9)]  # in order
    assert stub.max_in_flight == 3
    assert backend.preferred_batch_size >= 12


def test_a_dead_server_fails_fast_after_the_first_gave_up(stub: StubServer) -> None:
    backend = http_backend(stub.spec())
    assert backend.generate([Conversation(images=(), question="say: ok")]) == ["ok"]
    stub.stop()
    first = backend.generate([Conversation(images=(), question="say: a")] * 2)
    assert all(isinstance(a, GenerationFailure) and "gave up after 4 attempts" in a.message for a in first)
    assert f"POST http://127.0.0.1:{stub.port}/v1/chat/completions: cannot connect" in first[0].message
    started = time.perf_counter()
    later = backend.generate([Conversation(images=(), question="say: b")] * 4)
    assert all(isinstance(a, GenerationFailure) and "gave up" not in a.message for a in later)
    assert time.perf_counter() - started < 1


def test_fingerprint_is_stable_and_ignores_a_reply_time_created() -> None:
    endpoint = parse_spec("openai://127.0.0.1:8000/v1/m")
    now = 1_800_000_000.0
    vllm_card = {"id": "m", "owned_by": "vllm", "root": "/models/m", "created": int(now)}
    a, parts = fingerprint(endpoint, vllm_card, now=now)
    b, _ = fingerprint(endpoint, {**vllm_card, "created": int(now) + 5}, now=now + 5)
    assert a == b and "created" not in parts and parts["root"] == "/models/m"
    c, parts = fingerprint(endpoint, {**vllm_card, "created": 1_700_000_000}, now=now)
    assert c != a and parts["created"] == 1_700_000_000
    assert fingerprint(parse_spec("openai://127.0.0.1:8001/v1/m"), vllm_card, now=now)[0] != a
    assert fingerprint(endpoint, None, now=now)[0] != a


# --- through pytest -----------------------------------------------------------------------------------------

SAY_SUITE = """
defaults: {scorer: exact, max_new_tokens: 8}
cases:
  - {id: one, image: images/red.png, question: 'say: red', expected: red}
  - {id: doomed, image: images/red.png, question: 'say: doomed', expected: doomed}
  - id: dialogue
    images: [images/red.png, images/blue.png]
    turns:
      - {question: 'say: circle', expected: circle}
      - {question: 'say: blue', expected: blue}
"""


def test_a_case_whose_request_finally_fails_fails_alone(fake_project: pytest.Pytester, stub: StubServer) -> None:
    def flaky(body: dict) -> Reply:
        if "doomed" in last_user_text(body):
            return 500, {"error": {"message": "CUDA error: an illegal memory access"}}, {"Retry-After": "0"}
        return say(body)

    stub.respond = flaky
    fake_project.makefile(".yaml", test_suite=SAY_SUITE)
    result = fake_project.runpytest(f"--vl-model={stub.spec()}", "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_suite.yaml::one[[]stub-vlm[]] PASSED*",
            "*test_suite.yaml::doomed[[]stub-vlm[]] FAILED*",
            "*test_suite.yaml::dialogue[[]stub-vlm[]] PASSED*",
            "*HTTP 500: CUDA error: an illegal memory access (gave up after 4 attempts)*",
            f"*model stub-vlm (OpenAI-compatible server, http://127.0.0.1:{stub.port}/v1, served, loaded 1x*): 2/3*",
        ]
    )
    assert len([b for b in stub.chat_bodies() if "doomed" in last_user_text(b)]) == 4


def test_under_xdist_each_worker_talks_to_the_server(fake_project: pytest.Pytester, stub: StubServer) -> None:
    fake_project.makefile(".yaml", test_suite=SAY_SUITE.replace("say: doomed", "say: doomed-not"))
    result = fake_project.runpytest(f"--vl-model={stub.spec()}", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)  # 'doomed-not' is answered, and is not 'doomed'
    asked = {last_user_text(b) for b in stub.chat_bodies()}
    assert asked == {"say: red", "say: doomed-not", "say: circle", "say: blue"}  # every case and turn


def test_api_key_is_sent_but_never_printed_or_stored(
    fake_project: pytest.Pytester, stub: StubServer, monkeypatch
) -> None:
    stub.require_key = SECRET

    def leaky(body: dict) -> Reply:
        if "doomed" in last_user_text(body):  # a server that echoes the credentials in its error
            return 400, {"error": {"message": f"bad request (key Bearer {SECRET})"}}, {}
        return say(body)

    stub.respond = leaky
    monkeypatch.setenv("MY_VLM_KEY", SECRET)
    monkeypatch.delenv("VLEVAL_API_KEY", raising=False)
    fake_project.makefile(".yaml", test_suite=SAY_SUITE)
    junit = fake_project.path / "junit.xml"
    args = [f"--vl-model={stub.spec()}", "-vv", "-rA", "-l", f"--junitxml={junit}"]
    result = fake_project.runpytest(*args, "--vl-api-key-env=MY_VLM_KEY")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*HTTP 400: bad request (key Bearer ***)*"])
    assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in stub.requests)
    assert SECRET not in result.stdout.str() + result.stderr.str()
    assert SECRET not in junit.read_text()  # the case records (user_properties) included

    # Without the key the server refuses: every case fails with a message naming the variable, not the key.
    result = fake_project.runpytest(*args)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*refused the request (HTTP 401: Incorrect API key provided)*$VLEVAL_API_KEY*"])
    assert SECRET not in result.stdout.str() + result.stderr.str() + junit.read_text()


def test_server_not_running_fails_every_case_naming_the_url(fake_project: pytest.Pytester) -> None:
    port = free_port()
    fake_project.makefile(".yaml", test_suite=SAY_SUITE)
    started = time.perf_counter()
    result = fake_project.runpytest(f"--vl-model=openai://127.0.0.1:{port}/v1/stub-vlm")
    assert time.perf_counter() - started < 10
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            f"*model 'stub-vlm' could not be loaded: no OpenAI-compatible server answers "
            f"at http://127.0.0.1:{port}/v1 (GET http://127.0.0.1:{port}/v1/models: cannot connect*is it running?*"
        ]
    )


def test_unhealthy_server_fails_at_load(stub: StubServer) -> None:
    stub.health = (503, {"status": "unhealthy", "reason": "cb_worker_dead"}, {})
    with pytest.raises(ModelLoadError, match=r"reports it is unhealthy \(GET http://127.0.0.1:\d+/health: HTTP 503"):
        http_backend(stub.spec())


# --- the real thing: transformers serve on 127.0.0.1 ----------------------------------------------------------

SERVED_SUITE = """
defaults: {scorer: regex, max_new_tokens: 10}
cases:
  - {id: one-image, image: images/red.png, question: 'What colour is the shape?', expected: '^.*$'}
  - {id: other-image, image: images/blue.png, question: 'What colour is the shape?', expected: '^.*$'}
  - {id: two-images, images: [images/red.png, images/blue.png], question: 'Which one is blue?', expected: '^.*$', max_new_tokens: 6}
  - {id: with-system, image: images/blue.png, question: 'Count the shapes.', system: 'Answer with a number.', expected: '^.*$'}
  - id: dialogue
    image: images/red.png
    turns:
      - {question: 'What shape is it?', expected: '^.*$'}
      - {question: 'And its colour?', expected: '^.*$'}
"""


def _serve_command() -> list[str]:
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError:
        pytest.skip("transformers is not installed")
    if not is_serve_available():
        pytest.skip("`transformers serve` needs its serving extras: pip install fastapi uvicorn openai")
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists():
        pytest.skip(f"no `transformers` command next to {sys.executable}")
    return [str(exe), "serve"]


@dataclass
class Served:
    process: subprocess.Popen
    port: int
    model_dir: Path
    log: Path

    @property
    def spec(self) -> str:
        return f"openai://127.0.0.1:{self.port}/v1/{self.model_dir.name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(timeout=15)


def serve(model_dir: Path, workdir: Path, timeout: float = 120.0) -> Served:
    """Start `transformers serve` pinned to `model_dir` on 127.0.0.1 and wait (bounded) for /health."""
    command = _serve_command()
    port = free_port()
    log = workdir / f"serve-{port}.log"
    cache = workdir / "empty-hub-cache"
    cache.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # /v1/models lists the hub cache; an empty one answers [] instead of a 500 for a missing folder.
        "HF_HUB_CACHE": str(cache),
    }
    # Pinned by its folder name, relative to the working directory: that name is the model name clients send.
    args = [model_dir.name, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    with log.open("wb") as out:
        process = subprocess.Popen([*command, *args], cwd=model_dir.parent, env=env, stdout=out, stderr=out)
    served = Served(process, port, model_dir, log)
    deadline = time.monotonic() + timeout
    import http.client

    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"transformers serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return served
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.25)
    served.stop()
    pytest.fail(f"transformers serve was not ready within {timeout:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(random_qwen3vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = serve(random_qwen3vl, tmp_path_factory.mktemp("serve"))
    yield server
    server.stop()


def suite_project(pytester: pytest.Pytester) -> pytest.Pytester:
    make_png(pytester.path / "images" / "red.png", (64, 64), (220, 20, 20))
    make_png(pytester.path / "images" / "blue.png", (96, 48), (20, 20, 220))
    pytester.makefile(".yaml", test_suite=SERVED_SUITE)
    return pytester


def recorded_answers(reprec: Any) -> dict[str, list[str] | str]:
    answers: dict[str, list[str] | str] = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        if report.when == "call":
            record = report.vleval_case  # the case's record entry (the recorder takes the result off the report)
            answers[record["case_id"]] = record["error"] or [t["answer"] for t in record["turns"]]
    return answers


def test_transformers_serve_answers_like_the_in_process_backend(
    pytester: pytest.Pytester, served: Served, random_qwen3vl: Path
) -> None:
    """Same model, same greedy tokens; what differs is transformers serve's post-processing, which a client
    cannot turn off. For Qwen model types (``_RESPONSE_TEMPLATE_FALLBACKS`` in transformers/cli/serving/utils.py)
    the reply is parsed with a response template: text from ``<think>`` on goes to ``reasoning_content``, not
    ``content``, and ``content`` is cut from the decode *with* special tokens, so a special token the model emits
    mid-answer (here ``<|vision_start|>``) stays in it, where the in-process backend decodes with
    ``skip_special_tokens=True``. Comparable, then: every answer as scored (``strip_thinking``), with the
    tokenizer's special tokens removed; and every answer exactly where neither quirk applies."""
    from transformers import AutoTokenizer

    from pytest_vleval.scoring import strip_thinking

    suite_project(pytester)
    over_http = pytester.inline_run(f"--vl-model={served.spec}", "--vl-concurrency=3", "-p", "no:cacheprovider")
    over_http.assertoutcome(passed=5)
    in_process = pytester.inline_run(f"--vl-model={random_qwen3vl}", "-p", "no:cacheprovider")
    in_process.assertoutcome(passed=5)
    http_answers, local_answers = recorded_answers(over_http), recorded_answers(in_process)
    assert len({a[0] for a in local_answers.values()}) > 1, "the random model should answer differently"

    special = AutoTokenizer.from_pretrained(random_qwen3vl).all_special_tokens

    def comparable(answer: str) -> str:
        for token in special:
            answer = answer.replace(token, "")
        return strip_thinking(answer)

    assert http_answers.keys() == local_answers.keys()
    exact = 0
    for case_id, local in local_answers.items():
        remote = http_answers[case_id]
        assert [comparable(a) for a in remote] == [comparable(a) for a in local], case_id
        for r, loc in zip(remote, local, strict=True):
            if "<think>" not in loc and not any(token in r for token in special):
                assert r == loc, case_id
                exact += 1
    assert exact >= 4


def test_transformers_serve_streams_for_latency(served: Served, tmp_path: Path) -> None:
    """The streamed answer is the non-streamed one; TTFT and the server's token counts come back
    (transformers serve ignores stream_options with a warning and sends usage in its last chunk)."""
    image = make_png(tmp_path / "red.png", (64, 64), (220, 20, 20))
    backend = OpenAIBackend(resolve_model(served.spec), options())
    try:
        conv = Conversation(images=(image,), question="What colour is the shape?", max_new_tokens=8)
        (plain,) = backend.generate([conv])
        sample = backend.generate_timed(conv)
        again = backend.generate_timed(conv)
    finally:
        backend.close()
    assert isinstance(plain, str) and sample["answer"] == plain == again["answer"]
    assert 0 < sample["ttft_s"] <= sample["total_s"]
    assert 1 <= sample["output_tokens"] <= 8 and sample["input_tokens"] > 16  # the image's tokens included


def test_transformers_serve_killed_mid_run(
    pytester: pytest.Pytester, random_qwen3vl: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = serve(random_qwen3vl, tmp_path_factory.mktemp("serve-killed"))
    try:
        pytester.makeconftest(
            f"""
            import os, signal, threading, time

            LOG = {str(server.log)!r}

            def requests_seen():
                with open(LOG, encoding="utf-8", errors="replace") as log:
                    return log.read().count("[Request received]")

            def kill_during_the_next_request(seen):
                deadline = time.monotonic() + 20
                while requests_seen() <= seen and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(0.05)
                os.kill({server.process.pid}, signal.SIGKILL)

            def pytest_runtest_logreport(report):
                # After the first case, kill the server while it generates an answer of the next batch.
                if report.when == "call" and not getattr(pytest_runtest_logreport, "armed", False):
                    pytest_runtest_logreport.armed = True
                    threading.Thread(target=kill_during_the_next_request, args=(requests_seen(),)).start()
            """
        )
        make_png(pytester.path / "images" / "red.png", (64, 64), (220, 20, 20))
        cases = "\n".join(
            f"  - {{id: case-{n}, image: images/red.png, question: 'Describe picture {n}.', expected: '^.*$'}}"
            for n in range(8)
        )
        pytester.makefile(".yaml", test_suite=f"defaults: {{scorer: regex, max_new_tokens: 48}}\ncases:\n{cases}")
        started = time.perf_counter()
        result = pytester.runpytest(f"--vl-model={server.spec}", "--vl-batch-size=2", "--vl-concurrency=2", "-v")
        elapsed = time.perf_counter() - started
        server.process.wait(timeout=15)
        assert server.process.returncode == -signal.SIGKILL
    finally:
        server.stop()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 2 and outcomes.get("failed", 0) >= 2
    assert outcomes["passed"] + outcomes["failed"] == 8  # no case lost
    verdicts = [
        line.rsplit(" ", 2)[-2]
        for line in result.outlines
        if "test_suite.yaml::case-" in line
        and "[" in line
        and ("PASSED" in line or "FAILED" in line)
        and " - " not in line
    ]
    assert verdicts == sorted(verdicts, key=lambda v: v != "PASSED")  # passed until the kill, failed after
    url = f"POST http://127.0.0.1:{server.port}/v1/chat/completions"
    failures = [line for line in result.outlines if line.strip().startswith("error:") and url in line]
    assert len(failures) == outcomes["failed"], result.stdout.str()
    assert all("cannot connect" in line or "connection lost" in line for line in failures)
    # Requests in flight when it died lost their connection, were retried, then gave up.
    assert any("connection lost" in line and "then cannot connect" in line for line in failures), failures
    result.stdout.fnmatch_lines(
        [f"*model rand-qwen3vl (OpenAI-compatible server*): {outcomes['passed']}/8 cases passed*"]
    )
    assert elapsed < 30, f"the run took {elapsed:.1f} s after the server died"


# --- streamed latency (--vl-benchmark over HTTP) ----------------------------------------------------------


def test_event_stream_parsing() -> None:
    from pytest_vleval.backends.openai_api import read_event_stream

    lines = iter(
        [
            b": ping\n",
            b'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n',
            b"\n",
            b'data: {"choices": [{"delta": {"content": "a red"}}]}\n',
            b'data: {"choices": [{"delta": {"content": " circle"}}]}\n',
            b'data: {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}}\n',
            b"data: [DONE]\n",
            b'data: {"choices": [{"delta": {"content": "after done"}}]}\n',
        ]
    )
    ticks = iter(range(100))
    out = read_event_stream(lambda: next(lines, b""), clock=lambda: float(next(ticks)))
    assert (out.text, out.first_text_at, out.prompt_tokens, out.completion_tokens) == ("a red circle", 0.0, 12, 3)
    failed = iter([b'data: {"choices": [{"delta": {"content": "x"}}]}\n', b'data: {"error": "CUDA out of memory"}\n'])
    out = read_event_stream(lambda: next(failed, b""))
    assert out.error == "CUDA out of memory" and out.text == "x"
    thinking = iter([b'data: {"choices": [{"delta": {"reasoning_content": "hmm"}}]}\n'])
    assert read_event_stream(lambda: next(thinking, b"")).first_text_at is not None  # first token, no content


def test_generate_timed_streams_and_times_the_first_token(stub: StubServer) -> None:
    stub.respond = lambda body: streamed("a red circle on the left") if body.get("stream") else say(body)
    backend = http_backend(stub.spec())
    conv = Conversation(images=(), question="Describe.", max_new_tokens=16)
    sample = backend.generate_timed(conv)
    body = stub.chat_bodies()[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert sample["answer"] == "a red circle on the left"
    # Six events 50 ms apart: the first text (2nd event) comes about 100 ms in, the end about 350 ms in.
    assert 0.08 <= sample["ttft_s"] < sample["total_s"] and sample["total_s"] >= 0.3
    assert sample["prepare_s"] + sample["generate_s"] == pytest.approx(sample["total_s"], abs=1e-3)
    assert (sample["input_tokens"], sample["output_tokens"]) == (31, 6)


def test_a_server_refusing_stream_options_is_asked_again_without(stub: StubServer) -> None:
    """Servers with strict request validation answer HTTP 400/422 to fields they do not know."""

    def respond(body: dict) -> Reply:
        if "stream_options" in body:
            return (422, {"error": {"message": "Unsupported fields in the request: {'stream_options'}"}}, {})
        return streamed("blue", prompt_tokens=9)

    stub.respond = respond
    backend = http_backend(stub.spec())
    conv = Conversation(images=(), question="Colour?", max_new_tokens=4)
    assert backend.generate_timed(conv)["answer"] == "blue"
    assert backend.generate_timed(conv)["output_tokens"] == 1
    assert ["stream_options" in b for b in stub.chat_bodies()] == [True, False, False]  # asked once, remembered


def test_generate_timed_reports_failures(stub: StubServer) -> None:
    stub.respond = lambda body: (500, {"error": {"message": "engine died"}}, {})
    backend = http_backend(stub.spec())
    sample = backend.generate_timed(Conversation(images=(), question="x", max_new_tokens=4))
    assert isinstance(sample["answer"], GenerationFailure)
    assert "(streamed): HTTP 500: engine died" in sample["answer"].message
    stub.respond = lambda body: (200, Events(['{"error": {"message": "out of memory"}}']), {})
    sample = backend.generate_timed(Conversation(images=(), question="x", max_new_tokens=4))
    assert sample["answer"].message.endswith("(streamed): out of memory")
    stub.respond = lambda body: time.sleep(1) or streamed("late")
    backend.http.request_timeout = 0.3
    sample = backend.generate_timed(Conversation(images=(), question="x", max_new_tokens=4))
    assert sample["answer"].message.endswith("(streamed): no data within 0.3 s (--vl-request-timeout=0.3)")


def test_vl_benchmark_over_http_records_time_to_first_token(fake_project: pytest.Pytester, stub: StubServer) -> None:
    def respond(body: dict) -> Reply:
        text = say(body)[1]["choices"][0]["message"]["content"]
        return streamed(text) if body.get("stream") else completion(text)

    stub.respond = respond
    fake_project.makefile(".yaml", test_suite=SAY_SUITE.replace("doomed", "fine"))
    result = fake_project.runpytest(
        f"--vl-model={stub.spec()}", "--vl-benchmark=1", "--vl-benchmark-rounds=2", "--vl-json=run.json",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] >= 2 and not outcomes.get("failed"), result.stdout.str()
    record = json.loads((fake_project.path / "run.json").read_text())
    (bench,) = record["benchmarks"]
    assert bench["rounds"] == 2 and bench["ttft"]["n"] == 2
    assert 0 < bench["ttft"]["p50"] < bench["latency"]["p50"]
    assert bench["output_tokens"] >= 1 and bench["input_tokens"] == 31 and bench["tokens_per_s"] > 0
