"""A team's own HTTP service (``--vl-model=http://HOST:PORT/PATH`` with ``--vl-endpoint``): one request per
conversation, shaped by the endpoint description (``service_spec.py``), through the shared HTTP layer
(``http.py``: concurrency, timeouts, retries, redaction), the answer read at the description's path.

What ships is the service (its preprocessing, prompt and decoding settings), so that is what is asked; the
plugin only fills the fields the description names. The answer cache is off unless the description names an
``identity`` (a URL's model can change behind it); the record says which (``info["cache"]``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from pytest_vleval.backends.base import (
    BackendBase,
    Conversation,
    GenerationFailure,
    ModelLoadError,
    ModelSpec,
    UnsupportedConversation,
)
from pytest_vleval.backends.http import HttpSession, Reply, TimedOut, Unreachable
from pytest_vleval.backends.openai_api import image_bytes, server_message
from pytest_vleval.backends.service_spec import (
    ServiceDescription,
    answer_at,
    answer_text,
    expand_headers,
    header_source,
    set_path,
)

if TYPE_CHECKING:
    from pytest_vleval.options import VlOptions

__all__ = ["ServiceBackend", "history_messages", "service_request", "unsupported_by"]

SYNTAX = "http://HOST:PORT/PATH or https://HOST[:PORT]/PATH, with --vl-endpoint describing the request"


def unsupported_by(description: ServiceDescription, conv: Conversation) -> str | None:
    """Why the described service cannot take ``conv`` as the plugin would send it, or None."""
    origin = description.origin
    if conv.history and description.history is None:
        return (
            f"a dialogue: the service is stateless as described ({origin} has no history: field to send the "
            "earlier turns in)"
        )
    if conv.system and description.system is None:
        return f"the case has a system prompt and {origin} has no system: field for it"
    if conv.images and description.image is None:
        return f"the case has an image and {origin} has no image: field for it"
    if len(conv.images) > 1 and (description.image is None or not description.image.several):
        return f"the case has {len(conv.images)} images and {origin} takes one (image.several: false)"
    return None


def history_messages(conv: Conversation) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for question, answer in conv.history:
        turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return turns


def service_request(description: ServiceDescription, conv: Conversation) -> dict[str, Any]:
    """httpx keyword arguments (``json=``, or ``data=`` and ``files=``) for one conversation."""
    values: dict[str, Any] = json.loads(json.dumps(description.fields))
    text_fields: list[tuple[str, Any]] = [(description.question, conv.question)]
    if description.system and conv.system:
        text_fields.append((description.system, conv.system))
    if description.max_tokens:
        text_fields.append((description.max_tokens, conv.max_new_tokens))
    if description.history and conv.history:
        history = history_messages(conv)
        text_fields.append((description.history, history if description.body == "json" else json.dumps(history)))
    image = description.image
    files: list[tuple[str, tuple[str, bytes, str]]] = []
    if image is not None and conv.images:
        parts = [image_bytes(path, conv.min_pixels, conv.max_pixels) for path in conv.images]
        if image.encoding == "file":
            for n, (mime, data) in enumerate(parts):
                files.append((image.field, (f"image{n}.{mime.split('/')[1]}", data, mime)))
        else:
            encoded = [
                base64.b64encode(data).decode("ascii")
                if image.encoding == "base64"
                else f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
                for mime, data in parts
            ]
            text_fields.append((image.field, encoded if image.several else encoded[0]))
    if description.body == "json":
        for path, value in text_fields:
            set_path(values, path, value)
        return {"json": values}
    form: dict[str, Any] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    for name, value in text_fields:
        form[name] = value if isinstance(value, (str, list)) else str(value)
    return {"data": form, "files": files} if description.body == "multipart" else {"data": form}


class ServiceBackend(BackendBase):
    """A model behind a team's own HTTP route, asked as its endpoint description says."""

    probe_timeout = 10.0

    kind = "HTTP service"

    def __init__(self, spec: ModelSpec, options: VlOptions) -> None:
        started = time.perf_counter()
        self.spec = spec
        self.url = spec.source
        parts = urlsplit(self.url)
        if not parts.hostname:
            raise ModelLoadError(f"{self.url!r}: no host; expected {SYNTAX}")
        self.origin = f"{'https' if parts.scheme.lower().endswith('https') else 'http'}://{parts.netloc}"
        if options.endpoint is None:
            raise ModelLoadError(
                f"{self.url} is a service: describe its request with --vl-endpoint=service.yaml (or the ini key "
                "vl_endpoint): which field takes the image and the question, and where the answer is "
                "(README: Testing a deployed service)"
            )
        self.description = options.endpoint
        try:
            headers = expand_headers(self.description)
        except KeyError as exc:
            raise ModelLoadError(
                f"{self.description.origin}: headers need ${exc.args[0]}, which is not set in the environment"
            ) from None
        self.http = HttpSession(
            request_timeout=options.request_timeout,
            concurrency=options.concurrency,
            headers=headers,
            secrets=[os.environ.get(name, "") for name in self.description.env_names()],
        )
        try:
            self._connect(headers)
            identity = self._identity()
        except BaseException:
            self.close()
            raise
        self.fingerprint = None if identity is None else self._fingerprint(identity)
        self.info: dict[str, object] = {
            "source": self.url,
            "architecture": self.kind,
            "device": self.origin,
            "dtype": "served",
            "endpoint": self.description.origin,
            "endpoint_digest": self.description.digest(),
            **({"family": self.description.family} if self.description.family else {}),
            "headers": {name: header_source(value) for name, value in self.description.headers.items()},
            "fingerprint": self.fingerprint,
            "cache": self._cache_note(identity),
            "concurrency": options.concurrency,
            "request_timeout": options.request_timeout,
            "load_seconds": round(time.perf_counter() - started, 3),
            "pixels": {"min_pixels": options.min_pixels, "max_pixels": options.max_pixels, "applied_by": "resize"},
        }
        self.preferred_batch_size = max(16, 4 * options.concurrency)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _connect(self, headers: dict[str, str]) -> None:
        """Fail fast and clearly when nothing answers at the service's origin (any HTTP status will do)."""
        self._get(self.origin + "/", "probing it:")

    def _get(self, url: str, what: str) -> Reply:
        try:
            return self.http.request("GET", url, timeout=self.probe_timeout)
        except (Unreachable, TimedOut) as exc:
            raise ModelLoadError(
                f"no service answers at {self.url} ({what} GET {url}: {exc}); is it running?"
            ) from None

    def _identity(self) -> str | None:
        """What the service says about itself (``identity:``), or None."""
        identity = self.description.identity
        if identity is None:
            return None
        url = urljoin(self.origin + "/", identity.url)
        reply = self._get(url, "reading its identity:")
        if reply.status != 200:
            raise ModelLoadError(
                f"{self.description.origin}: identity: GET {url} answered HTTP {reply.status}: "
                f"{self.http.redact(server_message(reply.body))}"
            )
        if identity.header:
            value = reply.headers.get(identity.header.lower())
            if value is None:
                raise ModelLoadError(f"{self.description.origin}: identity: GET {url} sent no {identity.header} header")
            return f"{identity.header}: {value}"
        if identity.path:
            try:
                return f"{identity.path}={answer_text(answer_at(json.loads(reply.body), identity.path))}"
            except (ValueError, LookupError):
                text = self.http.redact(reply.body.decode("utf-8", "replace"))[:200]
                raise ModelLoadError(
                    f"{self.description.origin}: identity: GET {url} has no {identity.path!r} in its reply: {text}"
                ) from None
        return "sha256:" + hashlib.sha256(reply.body).hexdigest()[:16]

    def _fingerprint(self, identity: str) -> str:
        parts = json.dumps([self.url, self.description.canonical(), identity])
        return "service:" + hashlib.sha256(parts.encode()).hexdigest()[:16]

    def _cache_note(self, identity: str | None) -> str:
        if identity is None:
            return (
                f"off: {self.description.origin} names no identity (a URL's model can change behind it; "
                "identity: {url: /version, path: version} keys the cache on what the service reports)"
            )
        assert self.description.identity is not None
        return f"keyed on GET {self.description.identity.url}: {identity}"

    def unsupported(self, conversation: Conversation) -> str | None:
        return unsupported_by(self.description, conversation)

    def _answer(self, conv: Conversation) -> str | GenerationFailure:
        reason = unsupported_by(self.description, conv)
        if reason:
            return UnsupportedConversation(reason)
        try:
            request = service_request(self.description, conv)
        except OSError as exc:
            return GenerationFailure(f"cannot read an image of the case: {exc}")
        method = self.description.method
        reply = self.http.call(method, self.url, message=lambda r: server_message(r.body), **request)
        if isinstance(reply, GenerationFailure):
            return reply
        return self._read(reply)

    def _read(self, reply: Reply) -> str | GenerationFailure:
        where = f"{self.description.method} {self.url}"
        text = reply.body.decode("utf-8", "replace")
        path = self.description.answer
        try:
            data = json.loads(text)
        except ValueError:
            if path is None:
                return text.strip()  # a plain-text reply is the answer
            shown = self.http.redact(text)[:300]
            return GenerationFailure(
                f"{where}: the reply is not JSON (answer: {path} in {self.description.origin}): {shown}"
            )
        if path is None and not isinstance(data, str):
            shown = self.http.redact(text)[:300]
            return GenerationFailure(
                f"{where}: the reply is JSON; say where the answer is with answer: in {self.description.origin} "
                f"(e.g. answer: result): {shown}"
            )
        try:
            return answer_text(answer_at(data, path)).strip()
        except LookupError as exc:
            shown = self.http.redact(text)[:300]
            return GenerationFailure(
                f"{where}: the reply has no {exc.args[0]!r} (answer: {path} in {self.description.origin}): {shown}"
            )

    def generate(self, conversations: Sequence[Conversation]) -> list[str | GenerationFailure]:
        return self.http.map(self._answer, conversations)

    def close(self) -> None:
        self.http.close()
