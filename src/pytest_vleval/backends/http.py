"""One HTTP layer for every served backend (``openai://``, ``http://``): pooled httpx connections, timeouts,
retries with backoff, secrets kept out of messages, and bounded concurrency that Ctrl-C can always end.

What the backends share, and promise:

- a request that cannot connect, loses its connection, or gets HTTP 429 or 5xx is retried ``retries`` times,
  waiting ``backoff`` seconds, then twice that each time, or what the server's ``Retry-After`` says (at most
  ``max_wait``); a request that got no answer within the request timeout is not retried (the server is busy,
  not gone);
- once a request gave up on a dead server, later requests try once each (a dead server fails a suite in seconds);
- a request that finally fails is one :class:`GenerationFailure` naming the URL and what the server said: its
  case fails alone;
- every secret (an API key, a header read from the environment) is replaced by ``***`` in every message.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from pytest_vleval.backends.base import GenerationFailure

__all__ = ["HttpSession", "Reply", "Retry", "TimedOut", "Unreachable", "map_bounded"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class Unreachable(Exception):
    """The server could not be reached or dropped the connection: worth retrying."""


class TimedOut(Exception):
    """The server took the request but did not answer in time: retrying would only wait again."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return max(0.0, float(value)) if value is not None else None
        except ValueError:
            return None  # an HTTP date: fall back to our own backoff


@dataclass(frozen=True)
class Retry:
    """An attempt's answer that is worth another try (HTTP 429, 5xx, a busy queue): what went wrong, and how long
    the server asked us to wait (None: our own backoff)."""

    problem: str
    wait: float | None = None


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


class HttpSession:
    """A pooled httpx client for one served model, with the retry and redaction rules above."""

    retries = 3  # after the first attempt, on connection errors, 429 and 5xx
    backoff = 0.5  # seconds before the first retry; doubles each time
    max_wait = 30.0  # longest wait before a retry, also for a server's Retry-After
    connect_timeout = 10.0

    def __init__(
        self, *, request_timeout: float, concurrency: int, headers: dict[str, str], secrets: Sequence[str] = ()
    ) -> None:
        self.request_timeout = request_timeout
        self.concurrency = concurrency
        self._secrets = [s for s in secrets if s]
        self.unreachable = False  # set when a request gave up on a dead server: later ones try once
        self.stop = threading.Event()
        self._client = httpx.Client(
            headers={"User-Agent": "pytest-vleval", **headers},
            timeout=httpx.Timeout(request_timeout, connect=self.connect_timeout),
            limits=httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency),
            follow_redirects=False,
            # As before httpx: no proxy from the environment (a loopback server's traffic must not go through
            # one), and the system's certificates for TLS (ssl's defaults honour SSL_CERT_FILE).
            trust_env=False,
            verify=ssl.create_default_context(),
        )

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _send(
        self,
        method: str,
        url: str,
        read: Callable[[httpx.Response], _T],
        *,
        timeout: float | None = None,
        waiting_for: str = "answer",
        **request: Any,
    ) -> _T:
        """One request, its response read by ``read`` while the connection is open. Connection trouble becomes
        :class:`Unreachable`, a wait longer than the timeout :class:`TimedOut`."""
        limit = self.request_timeout if timeout is None else timeout
        try:
            with self._client.stream(
                method, url, timeout=httpx.Timeout(limit, connect=min(limit, self.connect_timeout)), **request
            ) as response:
                return read(response)
        except httpx.ConnectTimeout as exc:
            raise Unreachable(f"cannot connect: {exc or 'timed out'}") from None
        except httpx.TimeoutException:
            raise TimedOut(f"no {waiting_for} within {limit:g} s") from None
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot connect: {exc}") from None
        except httpx.TransportError as exc:
            raise Unreachable(f"connection lost: {type(exc).__name__}: {exc}") from None

    def request(self, method: str, url: str, *, timeout: float | None = None, **request: Any) -> Reply:
        """One request, read whole: the :class:`Reply`, whatever its status."""

        def read(response: httpx.Response) -> Reply:
            body = response.read()
            return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, body)

        return self._send(method, url, read, timeout=timeout, **request)

    def stream(self, method: str, url: str, read: Callable[[httpx.Response], _T], **request: Any) -> _T:
        """One request whose response ``read`` consumes as it arrives (server-sent events); no retries."""
        return self._send(method, url, read, waiting_for="data", **request)

    def call(
        self,
        method: str,
        url: str,
        *,
        message: Callable[[Reply], str],
        hint: Callable[[Reply], str] | None = None,
        **request: Any,
    ) -> Reply | GenerationFailure:
        """A request with the retries above: the 2xx :class:`Reply`, or a failure saying ``METHOD URL: what went
        wrong`` (``message`` reads a reply's error text; ``hint`` may add to a client error's)."""
        where = f"{method} {url}"

        def attempt() -> Reply | Retry | GenerationFailure:
            reply = self.request(method, url, **request)
            if 200 <= reply.status < 300:
                return reply
            problem = f"HTTP {reply.status}: {self.redact(message(reply))}"
            if reply.status != 429 and reply.status < 500:
                return GenerationFailure(f"{where}: {problem}{hint(reply) if hint is not None else ''}")
            return Retry(problem, reply.retry_after)

        return self.retry(where, attempt)

    def retry(self, where: str, attempt: Callable[[], _R | Retry | GenerationFailure]) -> _R | GenerationFailure:
        """``attempt()`` until it returns something other than :class:`Retry` or raises :class:`Unreachable`, at
        most ``1 + retries`` times (once while the server is known to be gone), waiting between attempts; the
        last problems become the failure's message, prefixed by ``where``."""
        attempts = 1 if self.unreachable else 1 + self.retries
        delay = self.backoff
        problems: list[str] = []  # distinct, in order: "connection lost" then "cannot connect" tells a story
        unreachable = False
        count = 0
        for count in range(1, attempts + 1):
            unreachable = False
            try:
                outcome = attempt()
            except TimedOut as exc:
                return GenerationFailure(f"{where}: {exc} (--vl-request-timeout={self.request_timeout:g})")
            except Unreachable as exc:
                problem, wait, unreachable = str(exc), delay, True
            else:
                if not isinstance(outcome, Retry):
                    self.unreachable = False
                    return outcome
                problem, wait = outcome.problem, outcome.wait if outcome.wait is not None else delay
            if problem not in problems:
                problems.append(problem)
            if count == attempts or self.stop.wait(min(wait, self.max_wait)):
                break
            delay *= 2
        if unreachable:
            # The server is gone: later requests try once instead of each waiting through the backoff.
            self.unreachable = True
        gave_up = f" (gave up after {count} attempts)" if count > 1 else ""
        return GenerationFailure(f"{where}: {'; then '.join(problems)}{gave_up}")

    def map(self, func: Callable[[_T], str | GenerationFailure], items: Sequence[_T]) -> list[str | GenerationFailure]:
        """``func`` over ``items``, ``concurrency`` at a time, in order; an exception in ``func`` (a bug) fails
        its item alone, redacted; items not reached after Ctrl-C are failures "interrupted"."""
        if self.stop.is_set():
            raise RuntimeError("the HTTP session is closed")

        def guarded(item: _T) -> str | GenerationFailure:
            try:
                return func(item)
            except Exception as exc:  # a bug here must fail one case, not kill a worker thread silently
                return GenerationFailure(self.redact(f"{type(exc).__name__}: {exc}"))

        answers = map_bounded(guarded, items, self.concurrency, self.stop)
        return [GenerationFailure("interrupted") if a is None else a for a in answers]

    def close(self) -> None:
        self.stop.set()
        self._client.close()
