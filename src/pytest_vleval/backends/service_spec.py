"""The endpoint description of a service (``--vl-endpoint``): how a case becomes a request to a team's own HTTP
route or Gradio app, and where the answer is in the reply.

A small YAML mapping, in its own file or inline in the ini file::

    body: multipart              # multipart | json | form (default json)
    image: image                 # the image's field; or {field: image, as: file|base64|data_url, several: false}
    question: prompt             # the question's field (required)
    system: system_prompt        # optional: the system prompt's field (without it, cases with one are skipped)
    max_tokens: max_new_tokens   # optional: the case's max_new_tokens
    history: messages            # optional: the earlier turns [{role, content}] (without it, dialogues are skipped)
    fields: {temperature: 0}     # sent with every request
    headers: {X-Api-Key: "${SERVICE_KEY}"}   # secrets only as ${ENVIRONMENT_VARIABLE}
    answer: result               # the answer's path in the JSON reply (choices.0.message.content); none: the reply
    family: Qwen3-VL             # optional: the model family behind it (grounding prompt, box convention)
    identity: {url: /version, path: version}  # what keys the answer cache (off without it)

Pure data and functions: no sockets here (``service.py`` sends the requests, ``gradio.py`` calls Gradio apps).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DescriptionError",
    "Identity",
    "ImageField",
    "ServiceDescription",
    "answer_at",
    "answer_text",
    "expand_headers",
    "header_source",
    "is_service_spec",
    "parse_description",
    "read_description",
    "service_label",
    "set_path",
]

BODIES = ("json", "multipart", "form")
ENCODINGS = ("file", "base64", "data_url")
KEYS = ("method", "body", "image", "question", "system", "max_tokens", "history", "fields", "headers", "answer",
        "identity", "family")  # fmt: skip
SCHEMES = ("http", "https", "gradio", "gradio+https")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A header whose name says it carries a credential must take its value from the environment.
_SECRET_NAME_RE = re.compile(r"auth|key|token|secret|password|cookie|signature", re.IGNORECASE)


def is_service_spec(requested: str) -> bool:
    """``http://``, ``https://``, ``gradio://`` or ``gradio+https://``: a model behind a team's own service."""
    scheme, sep, _ = requested.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


SYNTAX = "http(s)://HOST:PORT/PATH or gradio://HOST:PORT/API_NAME"


def service_label(requested: str) -> str:
    """A service's test-id label: the last part of its path (the Gradio API name), else its host; a malformed
    URL raises ValueError."""
    from urllib.parse import urlsplit

    parts = urlsplit(requested.strip())
    if "@" in parts.netloc:
        # The URL is echoed in messages and test ids, so it must not carry a secret (nor is it echoed here).
        raise ValueError("a service URL must not contain credentials (user:password@); send them as a header "
                         "read from an environment variable (headers: in --vl-endpoint)")  # fmt: skip
    if parts.fragment:
        raise ValueError(f"{requested!r}: no fragment allowed; expected {SYNTAX}")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise ValueError(f"{requested!r}: the port is not a number; expected {SYNTAX}") from None
    if not parts.hostname:
        raise ValueError(f"{requested!r}: no host; expected {SYNTAX}")
    last = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if parts.scheme.lower().startswith("gradio") and not last:
        raise ValueError(f"{requested!r}: no API name (e.g. gradio://127.0.0.1:7860/predict); expected {SYNTAX}")
    return re.sub(r"[\[\]\s]", "_", last or parts.hostname)


class DescriptionError(ValueError):
    """A description that cannot be used; the message names the file (or ini key) and the key."""


@dataclass(frozen=True)
class ImageField:
    field: str
    encoding: str = "file"  # file (multipart only), base64, data_url
    several: bool = False  # a list (json) or the field repeated (multipart, form); else one image per case


@dataclass(frozen=True)
class Identity:
    """Where the service says what answers: ``GET url``, then ``path`` in its JSON or the ``header`` named."""

    url: str
    path: str | None = None
    header: str | None = None


@dataclass(frozen=True, eq=False)
class ServiceDescription:
    origin: str  # the file it was read from, or "ini vl_endpoint"
    question: str
    image: ImageField | None = None
    method: str = "POST"
    body: str = "json"
    system: str | None = None
    max_tokens: str | None = None
    history: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # as written: ${NAME} not expanded
    answer: str | None = None
    identity: Identity | None = None
    family: str | None = None  # the model family behind the service: its grounding words and box convention

    def canonical(self) -> str:
        """Everything that shapes a request or reads a reply, as written (secrets are ${NAME}, never values)."""
        data = {k: v for k, v in self.__dict__.items() if k != "origin"}
        return json.dumps(data, sort_keys=True, default=lambda o: o.__dict__)

    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    def env_names(self) -> list[str]:
        return sorted({name for value in self.headers.values() for name in _ENV_RE.findall(value)})


def read_description(value: str, rootdir: Path) -> ServiceDescription:
    """``value`` is a YAML file (relative to the rootdir) or the YAML itself (inline in the ini file)."""
    from pytest_vleval.cases.yaml_loader import YamlError, load_yaml

    text, origin = value, "ini vl_endpoint"
    stripped = value.strip()
    if "\n" not in stripped and stripped.endswith((".yaml", ".yml")):
        path = Path(stripped).expanduser()
        path = path if path.is_absolute() else rootdir / path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DescriptionError(f"cannot read the endpoint description {path}: {exc}") from None
        origin = str(path)
    try:
        data = load_yaml(text, Path(origin))
    except YamlError as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise DescriptionError(f"{origin}: not valid YAML{where}: {exc.problem}") from None
    return parse_description(data, origin)


def _text(data: Mapping[str, Any], key: str, origin: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise DescriptionError(f"{origin}: {key}: required (the field the {key} goes in, e.g. {key}: prompt)")
        return None
    if not isinstance(value, str) or not value.strip():
        raise DescriptionError(f"{origin}: {key}: expected a field name or dotted path, got {value!r}")
    return value.strip()


def _choice(data: Mapping[str, Any], key: str, origin: str, choices: tuple[str, ...], default: str) -> str:
    value = str(data.get(key, default)).strip()
    if value not in choices:
        raise DescriptionError(f"{origin}: {key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _image(value: Any, body: str, origin: str) -> ImageField | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"field": value}
    if not isinstance(value, Mapping):
        raise DescriptionError(f"{origin}: image: expected a field name or {{field, as, several}}, got {value!r}")
    unknown = sorted(set(value) - {"field", "as", "several"})
    if unknown:
        raise DescriptionError(f"{origin}: image: unknown key {unknown[0]!r} (known: field, as, several)")
    name = _text(value, "field", f"{origin}: image", required=True)
    encoding = _choice(value, "as", f"{origin}: image", ENCODINGS, "file" if body == "multipart" else "base64")
    if encoding == "file" and body != "multipart":
        raise DescriptionError(
            f"{origin}: image.as: file needs body: multipart; a {body} body takes base64 or data_url"
        )
    several = value.get("several", False)
    if not isinstance(several, bool):
        raise DescriptionError(f"{origin}: image.several: expected true or false, got {several!r}")
    assert name is not None
    return ImageField(name, encoding, several)


def _headers(value: Any, origin: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DescriptionError(f"{origin}: headers: expected a mapping of header names to values")
    headers: dict[str, str] = {}
    for name, raw in value.items():
        text = str(raw)
        if _SECRET_NAME_RE.search(str(name)) and not _ENV_RE.search(text):
            raise DescriptionError(
                f"{origin}: headers.{name}: a credential must not be written in the description; put it in an "
                f'environment variable and write {name}: "${{SERVICE_KEY}}" (or "Bearer ${{SERVICE_KEY}}")'
            )
        headers[str(name)] = text
    return headers


def _identity(value: Any, origin: str) -> Identity | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, Mapping) or not value.get("url"):
        raise DescriptionError(f"{origin}: identity: expected {{url: /version, path: version}} or {{url, header}}")
    unknown = sorted(set(value) - {"url", "path", "header"})
    if unknown:
        raise DescriptionError(f"{origin}: identity: unknown key {unknown[0]!r} (known: url, path, header)")
    path, header = value.get("path"), value.get("header")
    return Identity(str(value["url"]), None if path is None else str(path), None if header is None else str(header))


def _family(value: Any, origin: str) -> str | None:
    if value is None:
        return None
    from pytest_vleval.backends.families import ADAPTERS, adapter_by_name

    adapter = adapter_by_name(str(value))
    if adapter is None:
        raise DescriptionError(
            f"{origin}: family: {value!r} is not a known family (known: {', '.join(a.name for a in ADAPTERS)})"
        )
    return adapter.name


def parse_description(data: Any, origin: str) -> ServiceDescription:
    if not isinstance(data, Mapping):
        raise DescriptionError(f"{origin}: expected a mapping (question:, image:, answer: ...), got {data!r}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise DescriptionError(f"{origin}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    body = _choice(data, "body", origin, BODIES, "json")
    fields = data.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise DescriptionError(f"{origin}: fields: expected a mapping of extra fields, got {fields!r}")
    method = str(data.get("method", "POST")).upper()
    if method not in ("POST", "PUT"):
        raise DescriptionError(f"{origin}: method: {method!r}: a request with a body is POST or PUT")
    question = _text(data, "question", origin, required=True)
    assert question is not None
    return ServiceDescription(
        origin=origin,
        question=question,
        image=_image(data.get("image"), body, origin),
        method=method,
        body=body,
        system=_text(data, "system", origin),
        max_tokens=_text(data, "max_tokens", origin),
        history=_text(data, "history", origin),
        fields=dict(fields),
        headers=_headers(data.get("headers"), origin),
        answer=None if data.get("answer") in (None, "") else str(data["answer"]),
        identity=_identity(data.get("identity"), origin),
        family=_family(data.get("family"), origin),
    )


def expand_headers(description: ServiceDescription, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The headers with ``${NAME}`` replaced from the environment; a missing variable raises KeyError(name)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not environ.get(name):
            raise KeyError(name)
        return environ[name]

    return {name: _ENV_RE.sub(value, text) for name, text in description.headers.items()}


def header_source(value: str) -> str:
    """What a record may say about a header's value: where its secrets come from, never what they are."""
    names = _ENV_RE.findall(value)
    return "from $" + ", $".join(names) if names else value


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    """``body["a"]["b"] = value`` for the path ``a.b`` (mappings made on the way)."""
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def answer_at(reply: Any, path: str | None) -> Any:
    """The value at a dotted ``path`` (numbers index lists: ``choices.0.message.content``); raises
    LookupError(the part not found)."""
    if not path:
        return reply
    node = reply
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise LookupError(part)
    return node


def answer_text(value: Any) -> str:
    """A found answer as text: a string as it is, anything else (a list of boxes) as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
