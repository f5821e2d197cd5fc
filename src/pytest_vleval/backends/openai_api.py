"""The OpenAI chat-completions wire format: server specs, request bodies, image parts, replies and event streams.

Pure functions on plain data (no sockets here; the backend that sends them is ``openai.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pytest_vleval.backends.base import Conversation

SCHEMES = {"openai": "http", "openai+https": "https"}
DEFAULT_API_KEY_ENV = "VLEVAL_API_KEY"  # the environment variable the API key is read from (--vl-api-key-env)
SYNTAX = "openai://HOST:PORT/v1/MODEL or openai+https://HOST[:PORT]/v1/MODEL"


def is_openai_spec(requested: str) -> bool:
    return requested.split("://", 1)[0].lower() in SCHEMES and "://" in requested


@dataclass(frozen=True)
class Endpoint:
    """Where a served model answers: ``{scheme}://{host}:{port}{base_path}/chat/completions`` for ``model``."""

    scheme: str  # http or https
    host: str
    port: int
    base_path: str  # "/v1", or "/some/prefix/v1" behind a proxy
    model: str

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.base_path


def parse_spec(requested: str) -> Endpoint:
    """Parse ``openai://HOST:PORT/v1/MODEL``; a malformed spec raises ValueError saying what is wrong."""
    parts = urlsplit(requested.strip())
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"{requested!r} is not an OpenAI-compatible server spec: expected {SYNTAX}")
    if "@" in parts.netloc:
        # The spec is echoed in messages and test ids, so it must not carry a secret (nor is it echoed here).
        raise ValueError(
            f"a server spec must not contain credentials (user:password@); put the API key in the "
            f"environment variable named by --vl-api-key-env (default {DEFAULT_API_KEY_ENV})"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{requested!r}: no query string or fragment allowed; expected {SYNTAX}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{requested!r}: the port is not a number; expected {SYNTAX}") from None
    if not parts.hostname:
        raise ValueError(f"{requested!r}: no host; expected {SYNTAX}")
    marker = parts.path.find("/v1/")
    model = unquote(parts.path[marker + 4 :]) if marker >= 0 else ""
    if not model.strip("/"):
        raise ValueError(f"{requested!r}: no model name after /v1/; expected {SYNTAX}")
    return Endpoint(
        scheme=scheme,
        host=parts.hostname,
        port=port or (443 if scheme == "https" else 80),
        base_path=parts.path[: marker + 3],
        model=model,
    )


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@lru_cache(maxsize=64)
def _image(path: str, mtime_ns: int, low: int | None, high: int | None) -> tuple[str, bytes]:
    """(mime type, bytes) of the image as it is uploaded. PNG, JPEG, GIF and WebP go as they are (servers decode
    them to the same pixels the in-process backend sees); anything else is re-encoded losslessly as PNG. With
    pixel limits, an image whose area lies outside them is resized (aspect kept) and sent as PNG."""
    import io

    if low is not None or high is not None:
        from PIL import Image

        from pytest_vleval.backends.pixels import effective_size, resize_within

        with Image.open(path) as image:
            if effective_size(image.width, image.height, low, high) == image.size:
                return _image(path, mtime_ns, None, None)
            buffer = io.BytesIO()
            resize_within(image.convert("RGB"), low, high).save(buffer, format="PNG")
        return "image/png", buffer.getvalue()
    data = Path(path).read_bytes()
    mime = next((m for magic, m in _MAGIC if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    return mime, data


def image_bytes(image: Path | str, min_pixels: int | None = None, max_pixels: int | None = None) -> tuple[str, bytes]:
    """A local image file as uploaded: (mime type, bytes), resized to the pixel limits when they are set (a
    server's own processor is out of reach, so the limits apply here). One place for every served backend."""
    path = Path(image)
    return _image(str(path.resolve()), path.stat().st_mtime_ns, min_pixels, max_pixels)


@lru_cache(maxsize=64)
def _data_url(path: str, mtime_ns: int, low: int | None, high: int | None) -> str:
    mime, data = _image(path, mtime_ns, low, high)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_url(image: Path | str, min_pixels: int | None = None, max_pixels: int | None = None) -> str:
    """An http(s) URL passes through (the server fetches it); a local file becomes a data URL of
    :func:`image_bytes`."""
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
        return image
    path = Path(image)
    return _data_url(str(path.resolve()), path.stat().st_mtime_ns, min_pixels, max_pixels)


def chat_messages(conv: Conversation) -> list[dict[str, Any]]:
    """The conversation in the order docs/CONTRACTS.md fixes: images first, in the first user turn only;
    earlier turns followed by the model's own answers."""
    messages: list[dict[str, Any]] = []
    if conv.system:
        messages.append({"role": "system", "content": conv.system})
    turns: list[tuple[str, str | None]] = [*conv.history, (conv.question, None)]
    for n, (question, answer) in enumerate(turns):
        content: list[dict[str, Any]] = (
            [
                {"type": "image_url", "image_url": {"url": image_url(p, conv.min_pixels, conv.max_pixels)}}
                for p in conv.images
            ]
            if n == 0
            else []
        )
        content.append({"type": "text", "text": question})
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
    return messages


def chat_request(model: str, conv: Conversation) -> dict[str, Any]:
    """Greedy settings: temperature 0 is greedy decoding on vLLM, SGLang and transformers serve."""
    return {
        "model": model,
        "messages": chat_messages(conv),
        "temperature": 0,
        "max_tokens": conv.max_new_tokens,
        "stream": False,
    }


def server_message(body: bytes) -> str:
    """The error text a server put in its reply: OpenAI/vLLM ``{"error": {"message"}}``, vLLM's older
    ``{"message"}``, FastAPI's ``{"detail"}``, else the body itself (shortened)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500] or "(empty reply)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("message", "detail", "error"):
            if data.get(key):
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value)[:500]
    return text[:500]


def fingerprint(endpoint: Endpoint, card: dict[str, Any] | None, *, now: float) -> tuple[str, dict[str, object]]:
    """A stable identity for what answers: the server URL, the model name, and what the server says about the
    model in ``/v1/models`` (id, owned_by, root, parent, and ``created``). vLLM and SGLang fill ``created`` with
    the time of the reply, so a ``created`` within a day of now says nothing about the model and is left out;
    transformers serve (the cache's last-modified time) and OpenAI (the model's creation) give a real one."""
    parts: dict[str, object] = {"server": endpoint.base_url, "model": endpoint.model}
    if card:
        for key in ("id", "owned_by", "root", "parent"):
            if card.get(key) is not None:
                parts[key] = card[key]
        created = card.get("created")
        if isinstance(created, (int, float)) and abs(now - created) > 86400:
            parts["created"] = int(created)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return f"openai:{digest}", parts


@dataclass
class Streamed:
    """What a streamed chat completion sent: the text, when its first piece arrived, the server's usage."""

    text: str = ""
    first_text_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


def read_event_stream(readline: Callable[[], bytes], clock: Callable[[], float] = time.perf_counter) -> Streamed:
    """Read an OpenAI chat-completions event stream (``data: {...}`` lines up to ``data: [DONE]`` or the end).

    The time of the first chunk carrying text (``delta.content``, or ``reasoning_content`` from a thinking
    model) is the time to first token; the role-only opening chunk does not count. An ``error`` event (vLLM,
    transformers serve) ends the stream with its message.
    """
    out = Streamed()
    pieces: list[str] = []
    while True:
        line = readline()
        if not line:
            break
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("data:"):
            continue  # blank separators, comments (": ping"), event names
        data = text[5:].strip()
        if data == "[DONE]":
            break
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("error"):
            error = event["error"]
            out.error = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            break
        for choice in event.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            piece = delta.get("content") or ""
            if (piece or delta.get("reasoning_content")) and out.first_text_at is None:
                out.first_text_at = clock()
            if piece:
                pieces.append(piece)
        usage = event.get("usage")
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            out.prompt_tokens = prompt if isinstance(prompt, int) else out.prompt_tokens
            out.completion_tokens = completion if isinstance(completion, int) else out.completion_tokens
    out.text = "".join(pieces)
    return out
