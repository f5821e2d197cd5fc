"""The HTTP backend: cases go to a served model through the OpenAI chat-completions API.

Any server that speaks ``POST /v1/chat/completions`` with image parts works: vLLM, SGLang, ``transformers serve``.
Select it with ``--vl-model=openai://HOST:PORT/v1/MODEL`` (plain HTTP) or ``openai+https://HOST[:PORT]/v1/MODEL``
(TLS). Everything after the first ``/v1/`` is the model name the server knows, slashes included:
``openai://gpu-box:8000/v1/Qwen/Qwen3-VL-8B-Instruct``.

Requests go through the shared HTTP layer (``http.py``: httpx, retries, redaction, concurrency); this module
knows the OpenAI protocol: the probe of ``/v1/models`` and ``/health``, chat completions, streaming.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from pytest_vleval.backends.base import (
    BackendBase,
    Conversation,
    GenerationFailure,
    ModelLoadError,
    ModelSpec,
    TimedAnswer,
)
from pytest_vleval.backends.http import HttpSession, Reply, TimedOut, Unreachable
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

__all__ = ["OpenAIBackend"]


class OpenAIBackend(BackendBase):
    """A model behind an OpenAI-compatible server. Loading probes the server; generating sends one
    chat-completions request per conversation, ``concurrency`` at a time."""

    probe_timeout = 10.0

    def __init__(self, spec: ModelSpec, options: VlOptions) -> None:
        started = time.perf_counter()
        self.spec = spec
        try:
            self.endpoint = parse_spec(spec.source)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
        self.concurrency = options.concurrency
        self._api_key_env = options.api_key_env
        self._api_key = os.environ.get(self._api_key_env, "").strip() or None
        if self._api_key is not None and not all(33 <= ord(ch) < 127 for ch in self._api_key):
            # An HTTP client would put the header, key included, in its exception message.
            raise ModelLoadError(f"the API key in ${self._api_key_env} has characters that cannot go in an HTTP header")
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self.http = HttpSession(
            request_timeout=options.request_timeout,
            concurrency=self.concurrency,
            headers=headers,
            secrets=[self._api_key or ""],
        )
        self._stream_usage = True  # ask for usage in streams until the server refuses stream_options
        try:
            card, listed = self._probe()
        except ModelLoadError:
            self.http.close()
            raise
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
            "request_timeout": options.request_timeout,
            "api_key": f"from ${self._api_key_env}" if self._api_key else "none",
            "load_seconds": round(time.perf_counter() - started, 3),
            # Limits are applied by resizing before upload; None: the server's own processing.
            "pixels": {"min_pixels": options.min_pixels, "max_pixels": options.max_pixels, "applied_by": "resize"},
        }
        # Enough conversations per batch to keep `concurrency` requests in flight across the batch's tail.
        self.preferred_batch_size = max(16, 4 * self.concurrency)

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.endpoint.base_url!r}, model={self.endpoint.model!r})"

    def _probe(self) -> tuple[dict[str, Any] | None, list[str] | None]:
        """Fail fast and clearly when nothing answers at the URL; read what the server says about the model."""
        base = self.endpoint.base_url
        try:
            reply = self.http.request("GET", base + "/models", timeout=self.probe_timeout)
        except (Unreachable, TimedOut) as exc:
            raise ModelLoadError(
                f"no OpenAI-compatible server answers at {base} (GET {base}/models: {exc}); is it running?"
            ) from None
        if reply.status in (401, 403):
            hint = "" if self._api_key else f", and ${self._api_key_env} is not set"
            raise ModelLoadError(
                f"the server at {base} refused the request (HTTP {reply.status}: "
                f"{self.http.redact(server_message(reply.body))}); the API key is read from ${self._api_key_env}{hint}"
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
            health = self.http.request("GET", health_url, timeout=self.probe_timeout)
        except (Unreachable, TimedOut) as exc:
            raise ModelLoadError(f"the server at {base} stopped answering (GET {health_url}: {exc})") from None
        if health.status >= 500:
            raise ModelLoadError(
                f"the server at {base} reports it is unhealthy (GET {health_url}: HTTP {health.status}: "
                f"{self.http.redact(server_message(health.body))})"
            )
        return card, listed

    def _not_listed(self, reply: Reply) -> str:
        if reply.status == 404 and self._listed and self.endpoint.model not in self._listed:
            return f" (the server lists: {', '.join(self._listed)})"
        return ""

    def _answer(self, conv: Conversation) -> str | GenerationFailure:
        url = f"{self.endpoint.base_url}/chat/completions"
        try:
            payload = chat_request(self.endpoint.model, conv)
        except OSError as exc:
            return GenerationFailure(f"cannot read an image of the case: {exc}")
        reply = self.http.call(
            "POST", url, json=payload, message=lambda r: server_message(r.body), hint=self._not_listed
        )
        if isinstance(reply, GenerationFailure):
            return reply
        try:
            content = json.loads(reply.body)["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            text = self.http.redact(reply.body.decode("utf-8", "replace"))[:300]
            return GenerationFailure(f"POST {url}: not a chat completion: {text}")
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
        except TimedOut as exc:
            failure = GenerationFailure(f"{url} (streamed): {exc} (--vl-request-timeout={self.http.request_timeout:g})")
            return {"answer": failure, "total_s": time.perf_counter() - started}
        except Unreachable as exc:
            return {"answer": GenerationFailure(f"{url} (streamed): {exc}"), "total_s": time.perf_counter() - started}
        finished = time.perf_counter()
        if status != 200:
            problem = f"HTTP {status}: {self.http.redact(str(result))}"
            return {"answer": GenerationFailure(f"{url} (streamed): {problem}"), "total_s": finished - started}
        assert isinstance(result, Streamed)
        if result.error is not None:
            failure = GenerationFailure(f"{url} (streamed): {self.http.redact(result.error)}")
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

        def read(response: httpx.Response) -> tuple[int, Streamed | str]:
            if response.status_code != 200:
                return response.status_code, server_message(response.read())
            # read_event_stream reads lines with their ends, b"" at the end of the stream only.
            lines = (line.encode() + b"\n" for line in response.iter_lines())
            return 200, read_event_stream(lambda: next(lines, b""))

        url = f"{self.endpoint.base_url}/chat/completions"
        return self.http.stream("POST", url, read, json=payload, headers={"Accept": "text/event-stream"})

    def generate(self, conversations: Sequence[Conversation]) -> list[str | GenerationFailure]:
        return self.http.map(self._answer, conversations)

    def close(self) -> None:
        self.http.close()
