"""The HTTP backend: cases go to a served model through the OpenAI chat-completions API.

Any server that speaks ``POST /v1/chat/completions`` with image parts works: vLLM, SGLang, ``transformers serve``.
Select it with ``--vl-model=openai://HOST:PORT/v1/MODEL`` (plain HTTP) or ``openai+https://HOST[:PORT]/v1/MODEL``
(TLS). Everything after the first ``/v1/`` is the model name the server knows, slashes included:
``openai://gpu-box:8000/v1/Qwen/Qwen3-VL-8B-Instruct``.

Standard library only (``http.client`` and threads): no torch, no HTTP client dependency.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_vleval.backends.base import (
    BackendBase,
    Conversation,
    GenerationFailure,
    ModelLoadError,
    ModelSpec,
    TimedAnswer,
)
from pytest_vleval.backends.openai_api import (
    Streamed,
    chat_request,
    fingerprint,
    parse_spec,
    read_event_stream,
    server_message,
)

if TYPE_CHECKING:
    from pytest_vleval.options import VlOptions

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class _Reply:
    status: int
    retry_after: float | None
    body: bytes


class _Unreachable(Exception):
    """The server could not be reached or dropped the connection: worth retrying."""


class _TimedOut(Exception):
    """The server took the request but did not answer in time: retrying would only wait again."""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def map_bounded(func: Callable[[_T], _R], items: Sequence[_T], workers: int, stop: threading.Event) -> list[_R | None]:
    """``[func(x) for x in items]`` with at most ``workers`` calls at once, in order. ``func`` must not raise;
    items not reached once ``stop`` is set stay None.

    Daemon threads, not a ThreadPoolExecutor: on Ctrl-C the main thread leaves at once instead of the
    interpreter waiting at exit for requests in flight (up to the request timeout each).
    """
    results: list[Any] = [None] * len(items)
    indices = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            with lock:
                i = next(indices, None)
            if i is None:
                return
            results[i] = func(items[i])

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        stop.set()  # no new requests; those in flight end with their timeout
        raise
    return results


class OpenAIBackend(BackendBase):
    """A model behind an OpenAI-compatible server. Loading probes the server; generating sends one
    chat-completions request per conversation, ``concurrency`` at a time."""

    retries = 3  # after the first attempt, on connection errors, 429 and 5xx
    backoff = 0.5  # seconds before the first retry; doubles each time
    max_wait = 30.0  # longest wait before a retry, also for a server's Retry-After
    connect_timeout = 10.0
    probe_timeout = 10.0

    def __init__(self, spec: ModelSpec, options: VlOptions) -> None:
        started = time.perf_counter()
        self.spec = spec
        try:
            self.endpoint = parse_spec(spec.source)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
        self.concurrency = options.concurrency
        self.request_timeout = options.request_timeout
        self._api_key_env = options.api_key_env
        self._api_key = os.environ.get(self._api_key_env, "").strip() or None
        if self._api_key is not None and not all(33 <= ord(ch) < 127 for ch in self._api_key):
            # http.client would put the header, key included, in its exception message.
            raise ModelLoadError(f"the API key in ${self._api_key_env} has characters that cannot go in an HTTP header")
        self._unreachable = False  # set when a request gave up on a dead server: later ones try once
        self._stop = threading.Event()
        self._stream_usage = True  # ask for usage in streams until the server refuses stream_options
        card, listed = self._probe()
        self.fingerprint, fingerprint_parts = fingerprint(self.endpoint, card, now=time.time())
        self._listed = listed
        self.info: dict[str, object] = {
            "source": spec.source,
            "architecture": "OpenAI-compatible server",
            "device": self.endpoint.base_url,
            "dtype": "served",
            "server_model": self.endpoint.model,
            "fingerprint": self.fingerprint,
            "fingerprint_parts": fingerprint_parts,
            "concurrency": self.concurrency,
            "request_timeout": self.request_timeout,
            "api_key": f"from ${self._api_key_env}" if self._api_key else "none",
            "load_seconds": round(time.perf_counter() - started, 3),
            # Limits are applied by resizing before upload; None: the server's own processing.
            "pixels": {"min_pixels": options.min_pixels, "max_pixels": options.max_pixels, "applied_by": "resize"},
        }
        # Enough conversations per batch to keep `concurrency` requests in flight across the batch's tail.
        self.preferred_batch_size = max(16, 4 * self.concurrency)

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.endpoint.base_url!r}, model={self.endpoint.model!r})"

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        """A connected connection whose reads wait at most `timeout` seconds."""
        endpoint = self.endpoint
        connection: http.client.HTTPConnection
        if endpoint.scheme == "https":
            connection = http.client.HTTPSConnection(
                endpoint.host, endpoint.port, timeout=self.connect_timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise _Unreachable(f"cannot connect: {exc}") from None
        assert connection.sock is not None
        connection.sock.settimeout(timeout)
        return connection

    def _headers(self, payload: dict[str, Any] | None, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": "pytest-vleval"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _exchange(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        timeout: float,
        read: Callable[[http.client.HTTPResponse], _T],
        *,
        accept: str = "application/json",
        waiting_for: str = "answer",
    ) -> _T:
        """Send one request on a fresh connection and `read` its response; connection trouble becomes
        `_Unreachable` (worth retrying), a read that waits longer than `timeout` `_TimedOut`."""
        body = None if payload is None else json.dumps(payload).encode()
        connection = self._connection(timeout)
        try:
            try:
                connection.request(method, path, body=body, headers=self._headers(payload, accept))
                return read(connection.getresponse())
            except TimeoutError:
                raise _TimedOut(f"no {waiting_for} within {timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                raise _Unreachable(f"connection lost: {type(exc).__name__}: {exc}") from None
        finally:
            connection.close()

    def _request(self, method: str, path: str, payload: dict[str, Any] | None, timeout: float) -> _Reply:
        def read(response: http.client.HTTPResponse) -> _Reply:
            return _Reply(response.status, _retry_after(response.getheader("Retry-After")), response.read())

        return self._exchange(method, path, payload, timeout, read)

    def _probe(self) -> tuple[dict[str, Any] | None, list[str] | None]:
        """Fail fast and clearly when nothing answers at the URL; read what the server says about the model."""
        base = self.endpoint.base_url
        try:
            reply = self._request("GET", self.endpoint.base_path + "/models", None, self.probe_timeout)
        except (_Unreachable, _TimedOut) as exc:
            raise ModelLoadError(
                f"no OpenAI-compatible server answers at {base} (GET {base}/models: {exc}); is it running?"
            ) from None
        if reply.status in (401, 403):
            hint = "" if self._api_key else f", and ${self._api_key_env} is not set"
            raise ModelLoadError(
                f"the server at {base} refused the request (HTTP {reply.status}: "
                f"{self._redact(server_message(reply.body))}); the API key is read from ${self._api_key_env}{hint}"
            )
        card, listed = None, None
        if reply.status == 200:
            try:
                entries = json.loads(reply.body).get("data") or []
                listed = [str(e.get("id")) for e in entries if isinstance(e, dict)]
                card = next((e for e in entries if isinstance(e, dict) and e.get("id") == self.endpoint.model), None)
            except (ValueError, AttributeError):
                listed = None
        # /health exists on vLLM, SGLang and transformers serve; elsewhere a 404 is fine.
        health_url = self.endpoint.origin + self.endpoint.base_path.removesuffix("/v1") + "/health"
        try:
            health = self._request(
                "GET", self.endpoint.base_path.removesuffix("/v1") + "/health", None, self.probe_timeout
            )
        except (_Unreachable, _TimedOut) as exc:
            raise ModelLoadError(f"the server at {base} stopped answering (GET {health_url}: {exc})") from None
        if health.status >= 500:
            raise ModelLoadError(
                f"the server at {base} reports it is unhealthy (GET {health_url}: HTTP {health.status}: "
                f"{self._redact(server_message(health.body))})"
            )
        return card, listed

    def _answer(self, conv: Conversation) -> str | GenerationFailure:
        url = f"POST {self.endpoint.base_url}/chat/completions"
        try:
            payload = chat_request(self.endpoint.model, conv)
        except OSError as exc:
            return GenerationFailure(f"cannot read an image of the case: {exc}")
        attempts = 1 if self._unreachable else 1 + self.retries
        delay = self.backoff
        problems: list[str] = []  # distinct, in order: "connection lost" then "cannot connect" tells a story
        for attempt in range(1, attempts + 1):
            unreachable = False
            try:
                reply = self._request(
                    "POST", self.endpoint.base_path + "/chat/completions", payload, self.request_timeout
                )
            except _TimedOut as exc:
                return GenerationFailure(f"{url}: {exc} (--vl-request-timeout={self.request_timeout:g})")
            except _Unreachable as exc:
                problem, wait, unreachable = str(exc), delay, True
            else:
                if reply.status == 200:
                    self._unreachable = False
                    return self._parse(url, reply.body)
                problem = f"HTTP {reply.status}: {self._redact(server_message(reply.body))}"
                if reply.status != 429 and reply.status < 500:
                    if reply.status == 404 and self._listed and self.endpoint.model not in self._listed:
                        problem += f" (the server lists: {', '.join(self._listed)})"
                    return GenerationFailure(f"{url}: {problem}")
                wait = reply.retry_after if reply.retry_after is not None else delay
            if problem not in problems:
                problems.append(problem)
            if attempt == attempts or self._stop.wait(min(wait, self.max_wait)):
                break
            delay *= 2
        if unreachable:
            # The server is gone: later requests try once instead of each waiting through the backoff.
            self._unreachable = True
        gave_up = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
        return GenerationFailure(f"{url}: {'; then '.join(problems)}{gave_up}")

    def _parse(self, url: str, body: bytes) -> str | GenerationFailure:
        try:
            content = json.loads(body)["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return GenerationFailure(
                f"{url}: not a chat completion: {self._redact(body.decode('utf-8', 'replace'))[:300]}"
            )
        return (content or "").strip()

    def generate_timed(self, conversation: Conversation) -> TimedAnswer:  # type: ignore[override]
        """One conversation alone, streamed (server-sent events), for the latency benchmarks (``latency.py``).

        ``ttft_s`` runs from the request's start (images encoded, request sent) to the first chunk with text;
        ``prepare_s`` is building the request (reading and base64-encoding the images); ``generate_s`` from
        sending it to the end of the stream. Token counts are the server's own ``usage`` (requested with
        ``stream_options.include_usage``; a server that refuses that option with HTTP 400/422 is asked again
        without it, and then reports usage anyway or not at all; transformers serve ignores the option and
        reports usage in its last chunk). No retries: a failed request fails the item.
        """
        url = f"POST {self.endpoint.base_url}/chat/completions"
        started = time.perf_counter()
        try:
            payload = chat_request(self.endpoint.model, conversation)
        except OSError as exc:
            return {"answer": GenerationFailure(f"cannot read an image of the case: {exc}"), "total_s": 0.0}
        payload["stream"] = True
        if self._stream_usage:
            payload["stream_options"] = {"include_usage": True}
        prepared = time.perf_counter()
        try:
            status, result = self._stream(payload)
            if status in (400, 422) and self._stream_usage and "stream_options" in str(result):
                self._stream_usage = False
                del payload["stream_options"]
                prepared = time.perf_counter()
                status, result = self._stream(payload)
        except _TimedOut as exc:
            failure = GenerationFailure(f"{url} (streamed): {exc} (--vl-request-timeout={self.request_timeout:g})")
            return {"answer": failure, "total_s": time.perf_counter() - started}
        except _Unreachable as exc:
            return {"answer": GenerationFailure(f"{url} (streamed): {exc}"), "total_s": time.perf_counter() - started}
        finished = time.perf_counter()
        if status != 200:
            problem = f"HTTP {status}: {self._redact(str(result))}"
            return {"answer": GenerationFailure(f"{url} (streamed): {problem}"), "total_s": finished - started}
        assert isinstance(result, Streamed)
        if result.error is not None:
            failure = GenerationFailure(f"{url} (streamed): {self._redact(result.error)}")
            return {"answer": failure, "total_s": finished - started}
        return {
            "answer": result.text.strip(),
            "total_s": finished - started,
            "prepare_s": prepared - started,
            "generate_s": finished - prepared,
            "ttft_s": None if result.first_text_at is None else result.first_text_at - started,
            "input_tokens": result.prompt_tokens,
            "output_tokens": result.completion_tokens,
        }

    def _stream(self, payload: dict[str, Any]) -> tuple[int, Streamed | str]:
        """POST a streaming chat completion; (200, what streamed) or (status, the server's message)."""

        def read(response: http.client.HTTPResponse) -> tuple[int, Streamed | str]:
            if response.status != 200:
                return response.status, server_message(response.read())
            return 200, read_event_stream(response.readline)

        return self._exchange(
            "POST",
            self.endpoint.base_path + "/chat/completions",
            payload,
            self.request_timeout,
            read,
            accept="text/event-stream",
            waiting_for="data",
        )

    def generate(self, conversations: Sequence[Conversation]) -> list[str | GenerationFailure]:
        if self._stop.is_set():
            raise RuntimeError(f"{self!r} is closed")
        answers = map_bounded(self._guarded_answer, conversations, self.concurrency, self._stop)
        return [GenerationFailure("interrupted") if a is None else a for a in answers]

    def _guarded_answer(self, conv: Conversation) -> str | GenerationFailure:
        try:
            return self._answer(conv)
        except Exception as exc:  # a bug here must fail one case, not kill a worker thread silently
            return GenerationFailure(self._redact(f"{type(exc).__name__}: {exc}"))

    def close(self) -> None:
        self._stop.set()
