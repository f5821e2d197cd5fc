"""What the test services answer with: the built-in model (``tiny``, through the plugin's own transformers
backend, one request at a time as a simple service would) or ``echo`` (answers 'say: X' with X; no torch), and
the small things every test service shares: a command line, readiness, and behaviours for the error tests."""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

Answer = Callable[[list[bytes], str, list[tuple[str, str]], "str | None", int], str]


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="echo", help="tiny (the built-in model) or echo")
    parser.add_argument("--api-key", default=None, help="require this X-Api-Key header")
    parser.add_argument("--delay", type=float, default=0.0, help="echo: seconds each answer takes (no lock)")
    return parser.parse_args()


def version(model: str) -> str:
    """What /version reports: the weights' digest for tiny, a constant for echo."""
    if model != "tiny":
        return "echo-1"
    from pytest_vleval.backends.registry import BUILTIN_MODELS

    weights = sorted(Path(BUILTIN_MODELS["tiny"]).glob("*.safetensors"))
    return hashlib.sha256(b"".join(p.read_bytes() for p in weights)).hexdigest()[:16]


def load(model: str, delay: float = 0.0) -> Answer:
    if model == "echo":
        if delay:

            def slowly(*request: object) -> str:
                print("answering", flush=True)  # the tests wait for this line before interrupting pytest
                time.sleep(delay)
                return _echo(*request)  # type: ignore[arg-type]

            return slowly
        return _echo
    if model != "tiny":
        raise SystemExit(f"unknown --model {model!r}")
    from pytest_vleval.backends.base import Conversation
    from pytest_vleval.backends.loader import load_backend
    from pytest_vleval.backends.registry import resolve_model
    from pytest_vleval.options import VlOptions

    options = VlOptions(
        models=("tiny",), device="cpu", dtype="auto", max_new_tokens=32, trust_remote_code=False,
        batch_size=None, case_files=(), golden_files=(),
    )  # fmt: skip
    backend = load_backend(resolve_model("tiny"), options)
    lock = threading.Lock()  # one generation at a time, as a plain Flask app in front of a model does

    def answer(images: list[bytes], prompt: str, history: list[tuple[str, str]], system: str | None, limit: int) -> str:
        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for n, data in enumerate(images):
                path = Path(folder) / f"upload{n}.png"
                path.write_bytes(data)
                paths.append(path)
            conv = Conversation(tuple(paths), prompt, tuple(history), system, limit)
            with lock:
                (text,) = backend.generate([conv])
        if not isinstance(text, str):
            raise RuntimeError(text.message)
        return text

    return answer


_seen: dict[str, int] = {}
_seen_lock = threading.Lock()


def _echo(images: list[bytes], prompt: str, history: list[tuple[str, str]], system: str | None, limit: int) -> str:
    """'say: X' -> X; 'slow' waits 3 s; 'flaky' fails the first time each prompt is seen (HTTP 500 upstream)."""
    if "slow" in prompt:
        time.sleep(3)
    if "flaky" in prompt:
        with _seen_lock:
            _seen[prompt] = _seen.get(prompt, 0) + 1
            if _seen[prompt] == 1:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
    text = prompt.split("say:", 1)[1] if "say:" in prompt else ""
    for control in ("count images", "echo history", "echo system"):
        text = text.replace(control, "")
    text = " ".join(text.split())
    extras = [f"images={len(images)}"] if "count images" in prompt else []
    if "echo history" in prompt:
        extras.append(" | ".join(f"{q} -> {a}" for q, a in history))
    if "echo system" in prompt:
        extras.append(system or "no system")
    return " ".join([text, *extras]).strip()
