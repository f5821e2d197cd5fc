"""Saved run records, laid out as pytest-benchmark lays out its runs.

    .vleval/runs/                       # --vl-storage, ini vl_storage
      Linux-CPython-3.11-64bit/         # one folder per machine kind (system, Python, bits)
        0001_before-upgrade.json        # --vl-save=before-upgrade
        0002_3f2a9c1d_20261122_061502.json   # --vl-autosave: commit, UTC time (+ "_uncommitted-changes")

Numbers grow per machine folder. A reference (``--vl-compare=REF``) is ``latest`` (the newest complete run: an
interrupted one is passed over), a number (``3``, ``0003``), a name (``before-upgrade``, or a whole file stem), or the
path of a JSON record anywhere.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pytest_vleval.records.run_info import incomplete_reason

_RUN_RE = re.compile(r"^(\d{4,})_(.+)\.json$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StorageError(Exception):
    """A run could not be found, read or written; the message says which and where it looked."""


def machine_id() -> str:
    """``Linux-CPython-3.11-64bit``: the machine folder name (as pytest-benchmark names it)."""
    return "-".join(
        (
            platform.system(),
            platform.python_implementation(),
            ".".join(platform.python_version_tuple()[:2]),
            platform.architecture()[0],
        )
    )


def check_name(name: str, flag: str = "--vl-save") -> str:
    """A run name must be usable as part of a file name on every system."""
    if not NAME_RE.match(name) or len(name) > 100:
        raise StorageError(
            f"{flag}={name!r}: a run name is letters, digits, '_', '-' and '.', starting with a letter or digit"
        )
    return name


def autosave_name(commit: dict[str, Any] | None, when: datetime) -> str:
    """``<commit8>_<YYYYmmdd_HHMMSS>[_uncommitted-changes]``, or the time alone outside a git checkout."""
    stamp = when.strftime("%Y%m%d_%H%M%S")
    if not commit or not commit.get("id"):
        return stamp
    name = f"{str(commit['id'])[:8]}_{stamp}"
    return name + "_uncommitted-changes" if commit.get("dirty") else name


@dataclass(frozen=True)
class StoredRun:
    number: int
    name: str
    path: Path

    @property
    def machine(self) -> str:
        return self.path.parent.name


class RunStorage:
    """A storage folder with one sub-folder per machine kind."""

    def __init__(self, root: Path, machine: str | None = None) -> None:
        self.root = Path(root)
        self.machine = machine or machine_id()

    @property
    def folder(self) -> Path:
        return self.root / self.machine

    def runs(self, *, all_machines: bool = False) -> list[StoredRun]:
        """Saved runs, oldest first (this machine's folder, or every machine folder)."""
        folders = sorted(p for p in self.root.iterdir() if p.is_dir()) if all_machines else [self.folder]
        found = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = _RUN_RE.match(path.name)
                if match and path.is_file():
                    found.append(StoredRun(int(match.group(1)), match.group(2), path))
        return sorted(found, key=lambda run: (run.number, run.path.stat().st_mtime, str(run.path)))

    def next_number(self) -> int:
        return max((run.number for run in self.runs()), default=0) + 1

    def save(self, record: dict[str, Any], name: str) -> Path:
        check_name(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.next_number():04d}_{name}.json"
        write_json(path, record)
        return path

    def latest(self) -> tuple[Path, list[tuple[StoredRun, str]]]:
        """This machine's newest complete run, and the newer incomplete runs passed over (each with why)."""
        here = self.runs()
        if not here:
            raise StorageError(
                f"no saved run in {self.folder} to compare with; save one first with --vl-save or --vl-autosave"
            )
        skipped: list[tuple[StoredRun, str]] = []
        for run in reversed(here):
            reason = _incomplete(run.path)
            if reason is None:
                return run.path, skipped
            skipped.append((run, reason))
        newest, why = skipped[0]
        raise StorageError(
            f"no complete saved run in {self.folder} to compare with: all {len(skipped)} are incomplete (the newest, "
            f"{newest.path.name}: {why}); re-run the whole suite and save it with --vl-save or --vl-autosave"
        )

    def find(self, ref: str) -> Path:
        """The record a ``--vl-compare`` reference names (see the module docstring)."""
        ref = ref.strip()
        here = self.runs()
        if ref in ("", "latest"):
            return self.latest()[0]
        for pool in (here, self.runs(all_machines=True) if self.root.is_dir() else []):
            matches = _matching(pool, ref)
            if len(matches) == 1 or (matches and pool is here):
                return matches[-1].path
            if matches:
                folders = ", ".join(sorted({run.machine for run in matches}))
                raise StorageError(
                    f"run {ref!r} is not in {self.folder} and is ambiguous across machine folders ({folders}); "
                    "pass the path of the JSON file"
                )
        where = f"{self.folder}" if not self.root.is_dir() else f"{self.root} (any machine folder)"
        raise StorageError(f"no saved run matches {ref!r} in {where}; use latest, a number, a name or a JSON path")


def _incomplete(path: Path) -> str | None:
    try:
        return incomplete_reason(read_json(path))
    except StorageError:
        return None  # an unreadable record stops the comparison later, with its own message


def _matching(runs: list[StoredRun], ref: str) -> list[StoredRun]:
    if ref.isdigit():
        return [run for run in runs if run.number == int(ref)]
    return [run for run in runs if ref in (run.name, run.path.stem, run.path.name)]


def write_text(path: Path, text: str | Iterable[str]) -> Path:
    """Write `text` (or its pieces, in order) so that readers see the old file or the whole new one (a
    half-written file never replaces a good one): through a temporary file beside it, renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            out.writelines([text] if isinstance(text, str) else text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


_CASES_HERE = "\u0000cases\u0000"  # where a record's cases go, one a line; no JSON value of a record is this


def write_json(path: Path, record: dict[str, Any]) -> None:
    write_text(path, record_pieces(record))


def record_pieces(record: dict[str, Any]) -> Iterator[str]:
    """The record as indented JSON, except its cases: one compact line each, in pieces, a case at a time (a
    200,000-case record is never one string in memory). Still one JSON document (a diff of two runs shows one line
    per changed case), and made by the json module's C encoder, which ``indent`` turns off: a 200,000-case record
    takes seconds, not minutes."""
    cases = record.get("cases")
    if not isinstance(cases, list) or not cases:
        yield json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        return
    head = json.dumps({**record, "cases": _CASES_HERE}, indent=2, ensure_ascii=False)
    placeholder = json.dumps(_CASES_HERE)
    assert head.count(placeholder) == 1, "a record holds the cases placeholder text"
    before, after = head.split(placeholder)
    encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    yield before + "[\n"
    for n, case in enumerate(cases):
        yield ("    " if n == 0 else ",\n    ") + encode(case)
    yield "\n  ]" + after + "\n"


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StorageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise StorageError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StorageError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
