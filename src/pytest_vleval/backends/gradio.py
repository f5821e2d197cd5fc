"""A Gradio app (``--vl-model=gradio://HOST:PORT/API_NAME``, ``gradio+https://`` for TLS) through the official
``gradio_client`` package (the optional extra ``pytest-vleval[gradio]``).

The endpoint description (``--vl-endpoint``) maps a case onto the API's parameters by name, as for an HTTP
service: ``image:`` the image parameter (a file; a list of files with ``several: true``), ``question:`` the text,
and ``system:``, ``max_tokens:``, ``history:``, ``fields:`` likewise; ``answer:`` is the path in the result (``0``
for the first of several outputs). The app's queue is the client's; an error the app raises (an exception in its
function, ``gr.Error``) is retried like an HTTP 5xx and then fails its case with the app's message; a lost
connection is retried like an HTTP request, a result later than the request timeout is not.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import tempfile
import threading
from pathlib import Path
from typing import Any

from pytest_vleval.backends.base import Conversation, GenerationFailure, ModelLoadError, UnsupportedConversation
from pytest_vleval.backends.http import Retry, TimedOut, Unreachable
from pytest_vleval.backends.openai_api import image_bytes
from pytest_vleval.backends.service import ServiceBackend, history_messages, unsupported_by
from pytest_vleval.backends.service_spec import answer_at, answer_text

__all__ = ["GradioBackend"]

INSTALL = "pip install 'pytest-vleval[gradio]'"


class GradioBackend(ServiceBackend):
    """A Gradio app's named API endpoint, called with ``Client.submit`` and waited for with the request timeout."""

    kind = "Gradio app"

    def _connect(self, headers: dict[str, str]) -> None:
        try:
            from gradio_client import Client
        except ImportError:
            raise ModelLoadError(f"{self.url} is a Gradio app: its client is not installed ({INSTALL})") from None
        self.api_name = "/" + self.url.split("://", 1)[1].split("/", 1)[1].strip("/")
        self._images = tempfile.TemporaryDirectory(prefix="vleval-gradio-")
        self._jobs: set[Any] = set()  # submitted and not yet answered: cancelled on close
        self._lock = threading.Lock()
        try:
            self.client = Client(
                self.origin + "/",
                verbose=False,
                headers=headers or None,
                download_files=False,
                analytics_enabled=False,
                httpx_kwargs={"timeout": self.http.request_timeout, "trust_env": False},
            )
        except Exception as exc:  # httpx's connection errors, the app's config that does not parse
            text = self.http.redact(f"{type(exc).__name__}: {exc}").splitlines()[0][:300]
            raise ModelLoadError(f"no Gradio app answers at {self.origin} ({text}); is it running?") from None
        self._check_parameters()

    def _check_parameters(self) -> None:
        """The API name exists and takes every parameter the description fills."""
        endpoints = self.client.view_api(print_info=False, return_format="dict") or {}
        named = endpoints.get("named_endpoints") or {}
        if self.api_name not in named:
            raise ModelLoadError(
                f"the Gradio app at {self.origin} has no API {self.api_name!r} (it has: {', '.join(named) or 'none'})"
            )
        known = {p.get("parameter_name") for p in named[self.api_name].get("parameters") or []}
        d = self.description
        wanted = [d.question, d.system, d.max_tokens, d.history, *d.fields, d.image.field if d.image else None]
        missing = [name for name in wanted if name is not None and name not in known]
        if missing:
            raise ModelLoadError(
                f"{d.origin}: the Gradio API {self.api_name} has no parameter {missing[0]!r} "
                f"(its parameters: {', '.join(sorted(str(k) for k in known))})"
            )

    def _image_file(self, path: Path, conv: Conversation) -> str:
        """The file as it is, or the upload the served backends make under the pixel limits (``image_bytes``: a
        resized PNG), written once into this backend's temporary folder."""
        if conv.min_pixels is None and conv.max_pixels is None:
            return str(path)
        mime, data = image_bytes(path, conv.min_pixels, conv.max_pixels)
        key = abs(hash((str(path), conv.min_pixels, conv.max_pixels)))
        target = Path(self._images.name) / f"{key}.{mime.split('/')[1]}"
        if not target.exists():
            target.write_bytes(data)
        return str(target)

    def _arguments(self, conv: Conversation) -> dict[str, Any]:
        from gradio_client import handle_file

        d = self.description
        arguments: dict[str, Any] = dict(d.fields)
        arguments[d.question] = conv.question
        if d.system and conv.system:
            arguments[d.system] = conv.system
        if d.max_tokens:
            arguments[d.max_tokens] = conv.max_new_tokens
        if d.history and conv.history:
            arguments[d.history] = history_messages(conv)
        if d.image is not None and conv.images:
            files = [handle_file(self._image_file(Path(p), conv)) for p in conv.images]
            arguments[d.image.field] = files if d.image.several else files[0]
        return arguments

    def _answer(self, conv: Conversation) -> str | GenerationFailure:
        reason = unsupported_by(self.description, conv)
        if reason:
            return UnsupportedConversation(reason)
        try:
            arguments = self._arguments(conv)
        except OSError as exc:
            return GenerationFailure(f"cannot read an image of the case: {exc}")
        where = self.url
        result = self.http.retry(where, lambda: self._call(where, arguments))
        if isinstance(result, GenerationFailure):
            return result
        try:
            return answer_text(answer_at(result, self.description.answer)).strip()
        except LookupError as exc:
            shown = self.http.redact(repr(result))[:300]
            return GenerationFailure(
                f"{where}: the result has no {exc.args[0]!r} (answer: {self.description.answer} in "
                f"{self.description.origin}): {shown}"
            )

    def _call(self, where: str, arguments: dict[str, Any]) -> Any:
        import httpx
        from gradio_client.exceptions import AppError

        job = self.client.submit(api_name=self.api_name, **arguments)
        with self._lock:
            self._jobs.add(job)
        timeout = self.http.request_timeout
        try:
            return job.result(timeout=timeout)
        except concurrent.futures.CancelledError:
            if self.http.stop.is_set():  # we cancelled it: Ctrl-C, the model closed
                return GenerationFailure(f"{where}: interrupted")
            # gradio_client drops a job now and then when its event stream is reopened under concurrent
            # submissions (seen once in a few hundred requests at 4 in flight): worth another try
            return Retry("the Gradio client dropped the job (CancelledError)")
        except (concurrent.futures.TimeoutError, TimeoutError):
            job.cancel()
            raise TimedOut(f"no answer within {timeout:g} s") from None
        except AppError as exc:  # an exception in the app's function: like an HTTP 500, worth retrying
            return Retry(f"the app raised an error: {self.http.redact(str(exc)) or 'no message'}")
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot connect: {exc}") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"connection lost: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # the client's own errors (a queue that is full, a result it cannot read)
            lines = self.http.redact(f"{type(exc).__name__}: {exc}").splitlines()
            return GenerationFailure(f"{where}: {lines[0][:300] if lines else type(exc).__name__}")
        finally:
            with self._lock:
                self._jobs.discard(job)

    def close(self) -> None:
        """Cancel the jobs still running (after Ctrl-C: the client's worker threads would otherwise keep the
        interpreter waiting for their answers), then close the client."""
        client = getattr(self, "client", None)
        if client is not None:
            with self._lock:
                jobs, self._jobs = list(self._jobs), set()
            for job in jobs:
                with contextlib.suppress(Exception):  # the app may be gone: cancelling must not fail the run
                    job.cancel()
            for executor in (client.executor, getattr(client, "stream_executor", None)):
                if executor is not None:
                    executor.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(Exception):
                client.close()
        images = getattr(self, "_images", None)
        if images is not None:
            images.cleanup()
        super().close()
