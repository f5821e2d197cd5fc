"""A progress bar for the prediction pass: cases done / total and cases per second, per model.

The line is tqdm's (``tqdm.format_meter``). It is drawn only in an interactive terminal, after pytest's own
output on the current line, while a batch is generated, and erased before pytest writes again (the cursor is
saved and restored around it, so the dots and PASSED markers stay where they were): a tqdm instance would
return to the start of the line and overwrite them. In CI logs (``CI`` set), with ``-q``, on xdist workers or
when the output is not a terminal, nothing is drawn; the terminal summary has one line per model instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    import pytest

SAVE_CURSOR = "\x1b7"
RESTORE_AND_CLEAR = "\x1b8\x1b[K"
BAR_FORMAT = "{desc} [{bar:20}] {n_fmt}/{total_fmt} cases {rate_noinv_fmt}{note}"
_MIN_ROOM = 24  # columns left on the line below which nothing is drawn


class RunCounts(Protocol):
    total: int
    cached: int
    generated: int
    seconds: float

    @property
    def done(self) -> int: ...


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def render(label: str, run: RunCounts, busy: int = 0) -> str:
    """One line: ``tiny [####................] 48/200 cases  8.00 cases/s  (16 cached)  generating 8...``.

    The rate is cases generated per second of generation (cached answers take no time)."""
    note = f"  ({run.cached} cached)" if run.cached else ""
    if busy:
        note += f"  generating {busy}..."
    rate = run.generated / run.seconds if run.generated and run.seconds > 0 else None
    return tqdm.format_meter(
        run.done,
        max(run.total, run.done),
        run.seconds,
        prefix=label,
        unit=" cases",
        rate=rate,
        ascii=".#",
        bar_format=BAR_FORMAT,
        note=note,
    )


class PredictionProgress:
    """Draws the bar through `write`, a function that reaches the terminal; disabled, it does nothing."""

    def __init__(
        self,
        write: Callable[[str], None] | None,
        room: Callable[[], int] = lambda: 80,
        clock: Callable[[], float] = time.perf_counter,
        min_interval: float = 0.1,
    ) -> None:
        self._write = write
        self._room = room
        self._clock = clock
        self._min_interval = min_interval
        self._shown = False
        self._last = -1e9

    @property
    def enabled(self) -> bool:
        return self._write is not None

    def update(self, label: str, run: RunCounts, busy: int = 0) -> None:
        if self._write is None:
            return
        now = self._clock()
        if not busy and now - self._last < self._min_interval:
            return
        self._last = now
        room = self._room()
        if room < _MIN_ROOM:
            return
        text = render(label, run, busy)[: room - 1]
        self._write((RESTORE_AND_CLEAR if self._shown else SAVE_CURSOR) + " " + text)
        self._shown = True

    def clear(self) -> None:
        if self._write is not None and self._shown:
            self._write(RESTORE_AND_CLEAR)
            self._shown = False


def wanted(config: pytest.Config, stream: TextIO | None = None) -> bool:
    """A bar only for a person watching a terminal: not in CI, not with -q, not on an xdist worker."""
    if hasattr(config, "workerinput") or config.get_verbosity() < 0 or in_ci():
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def for_config(config: pytest.Config) -> PredictionProgress:
    """The bar for a pytest run, written to the terminal pytest reports on (capture is suspended meanwhile)."""
    if not wanted(config):
        return PredictionProgress(None)
    capture: Any = config.pluginmanager.get_plugin("capturemanager")

    @contextlib.contextmanager
    def uncaptured() -> Iterator[None]:
        # pytest's CaptureManager has no public way to write past capture; this one call is guarded.
        suspend = getattr(capture, "global_and_fixture_disabled", None)
        if not callable(suspend):
            yield
        else:
            with suspend():
                yield

    def write(text: str) -> None:
        with uncaptured():
            sys.stdout.flush()
            sys.stdout.write(text)
            sys.stdout.flush()

    def room() -> int:
        # Asked at each draw: pytest's terminal reporter registers after this plugin configures.
        if config.pluginmanager.get_plugin("terminalreporter") is None:  # -p no:terminal
            return 0
        used = config.get_terminal_writer().width_of_current_line
        return shutil.get_terminal_size().columns - used - 1

    return PredictionProgress(write, room)
