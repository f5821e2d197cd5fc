"""The persistent answer cache: fingerprints of models and cases, the answers in one SQLite database.

An answer is reused only when everything that could change it is unchanged: the model's files (weights hashed
by content), the device and dtype asked for, the library versions, and the case itself (image bytes, system
prompt, questions, generation budget). Nothing here imports torch: a fully cached run never loads a model.

Layout under the cache folder (default ``.vleval/cache`` in the rootdir)::

    answers.sqlite3 (-wal, -shm)   table ``answers``: a row per answered case, key = sha256(model label, model
                                   fingerprint, case fingerprint), ``entry`` = the JSON of what was stored;
                                   table ``verdicts``: a row per judge reply (predict/judging.py)
    file-hashes/<sha256 of the path>.json   content hashes of big files, reused while (size, mtime_ns) match

One database, not a file per answer: a 200,000-case suite stored 200,000 small files, and a store cost ~170 us an
answer. The database is in WAL mode: readers never wait, xdist workers' writes take turns (a busy timeout), and a
batch's answers are committed together right after the batch (:meth:`AnswerCache.batch`), so a killed run keeps
every batch it finished, and no reader sees half an entry. Caches from before (``answers/<label>-<fp>/<key>.json``
and ``verdicts/...`` files) are still read where the database has no row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pytest_vleval.predict.fingerprints import ModelFingerprint

__all__ = [
    "CACHE_FORMAT",
    "MEMO_MIN_BYTES",
    "STORE_NAME",
    "AnswerCache",
    "VerdictKey",
    "sha256_file",
    "sha256_text",
    "write_atomic",
]

# Bump when the meaning of an entry changes (e.g. how prompts are built), so old entries are never reused.
CACHE_FORMAT = 1
# Files at least this big have their content hash memoised on disk; smaller ones are hashed each run.
MEMO_MIN_BYTES = 1 << 20
_CHUNK = 1 << 22
STORE_NAME = "answers.sqlite3"
_TABLES = ("answers", "verdicts")
# How long a worker waits for another's write to finish before giving up on a store (then: "could not write").
_BUSY_SECONDS = 60.0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.

    The temporary file lives in the same folder, so ``os.replace`` is an atomic rename even when several
    processes (xdist workers) write the same entry at once: the last rename wins and each one is complete.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class VerdictKey(NamedTuple):
    """Where one judge reply is kept: the judge's label and fingerprint, and the digest of what was asked."""

    judge: str
    judge_key: str
    digest: str

    @property
    def row(self) -> str:
        """The row's key: the judge's label too (two judges of the same files are each asked)."""
        return sha256_text(f"{self.judge}\0{self.digest}")


class AnswerCache:
    """Answers on disk, a row per (model fingerprint, case fingerprint) in ``answers.sqlite3``.

    Nothing here raises for a store that cannot be opened, read or written: a read is a miss, and the first
    failure to write is kept in ``write_error`` for the run's summary (with the fix, for a damaged file).
    """

    def __init__(self, root: Path, *, read: bool = True) -> None:
        self.root = Path(root)
        self.read = read  # False with --vl-refresh: regenerate and overwrite
        self.hits = 0
        self.writes = 0
        self.write_error: str | None = None
        self._file_hashes: dict[tuple[str, int, int], str] = {}
        self._db: sqlite3.Connection | None = None
        self._db_pid = 0  # a forked child opens its own connection
        self._unusable = False
        self._absent_at = -2.0  # when the store was last found absent (time.monotonic)
        self._lock = threading.Lock()
        self._batching = False
        self._pending = 0  # answers written in the open batch, counted in `writes` once committed
        self._legacy: set[str] | None = None  # folders of a cache from before the database

    @property
    def store(self) -> Path:
        return self.root / STORE_NAME

    def _prepare_root(self) -> None:
        if (self.root / ".gitignore").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / "CACHEDIR.TAG", b"Signature: 8a477f597d28d172789f06886806bc55\n")
        write_atomic(self.root / ".gitignore", b"# created by pytest-vleval: answers of models under test\n*\n")

    def file_hash(self, path: Path) -> str:
        """sha256 of a file's content; a big file's hash is reused while its path, size and mtime_ns match."""
        real = Path(os.path.realpath(path))
        stat = real.stat()
        memo_key = (str(real), stat.st_size, stat.st_mtime_ns)
        if memo_key in self._file_hashes:
            return self._file_hashes[memo_key]
        if stat.st_size < MEMO_MIN_BYTES:
            digest = sha256_file(real)
        else:
            memo = self.root / "file-hashes" / f"{sha256_text(str(real))[:32]}.json"
            digest = ""
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(memo.read_text())
                if [data["path"], data["size"], data["mtime_ns"]] == list(memo_key):
                    digest = str(data["sha256"])
            if not digest:
                digest = sha256_file(real)
                record = {"path": str(real), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
                with contextlib.suppress(OSError):
                    self._prepare_root()
                    write_atomic(memo, json.dumps(record).encode())
        self._file_hashes[memo_key] = digest
        return digest

    # -- the database ---------------------------------------------------------------------------------------------

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        """The open store; None when it cannot be used, or when it does not exist and `create` is false (a
        lookup never creates one)."""
        if self._db is not None and self._db_pid == os.getpid():
            return self._db
        if self._unusable or not (create or self._exists()):
            return None
        try:
            if create:
                self._prepare_root()
            db = sqlite3.connect(self.store, timeout=_BUSY_SECONDS, isolation_level=None, check_same_thread=False)
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # WAL: each commit survives a killed process
                for table in _TABLES:
                    db.execute(
                        f"CREATE TABLE IF NOT EXISTS {table} "
                        "(key TEXT PRIMARY KEY, label TEXT NOT NULL, entry TEXT NOT NULL) WITHOUT ROWID"
                    )
            except BaseException:
                db.close()
                raise
        except (OSError, sqlite3.Error) as exc:
            self._unusable = True
            self._failed(exc)
            return None
        self._db, self._db_pid = db, os.getpid()
        return db

    def _exists(self) -> bool:
        """Whether the store exists; an absent one is looked for once a second, not at each of a run's lookups
        (another xdist worker may create it meanwhile)."""
        now = time.monotonic()
        if now - self._absent_at < 1.0:
            return False
        if self.store.exists():
            return True
        self._absent_at = now
        return False

    def _failed(self, exc: BaseException) -> None:
        """Remember the first failure for the summary, with the fix where the file itself is damaged."""
        if self.write_error is not None:
            return
        message = f"{self.store}: {type(exc).__name__}: {exc}"
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            message += " (the file is damaged: delete it and the next run starts an empty answer cache)"
        self.write_error = message

    def _row(self, table: str, key: str) -> dict[str, Any] | None:
        db = self._connect(create=False)
        if db is None:
            return None
        try:
            with self._lock:
                row = db.execute(f"SELECT entry FROM {table} WHERE key = ?", (key,)).fetchone()
            data = json.loads(row[0]) if row is not None else None
        except (sqlite3.Error, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, table: str, key: str, label: str, entry: dict[str, Any]) -> bool:
        db = self._connect(create=True)
        if db is None:
            return False
        try:
            with self._lock:
                if self._batching and not db.in_transaction:
                    db.execute("BEGIN IMMEDIATE")  # take the write lock now: other workers wait their turn
                db.execute(
                    f"INSERT OR REPLACE INTO {table} (key, label, entry) VALUES (?, ?, ?)",
                    (key, label, json.dumps(entry, ensure_ascii=False)),
                )
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        return True

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside are one transaction, committed on the way out (also when an exception leaves): a batch's
        answers cost one commit, not one each."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            self._commit()

    def _commit(self) -> None:
        pending, self._pending = self._pending, 0
        db = self._db if self._db_pid == os.getpid() else None  # never a connection a forked parent opened
        if db is None or not db.in_transaction:
            return
        try:
            with self._lock:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(exc)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return
        self.writes += pending

    def close(self) -> None:
        """Commit what is open and close the store (the next run reopens it)."""
        self._commit()
        if self._db is not None and self._db_pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def _legacy_entry(self, kind: str, label: str, folder_key: str, key: str) -> dict[str, Any] | None:
        """An entry of a cache written before the database (a JSON file per entry), or None."""
        if self._legacy is None:
            self._legacy = {kind for kind in _TABLES if (self.root / kind).is_dir()}
        if kind not in self._legacy:
            return None
        folder = self.root / kind / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', label)[:60]}-{folder_key[:16]}"
        try:
            data = json.loads((folder / f"{key}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- answers and verdicts -------------------------------------------------------------------------------------

    @staticmethod
    def answer_key(model: ModelFingerprint, case_fingerprint: str) -> str:
        """A row's key: the model's label too, so that two models of the same files (a copy under another
        name) are each asked, as they were when each label had its own folder of files."""
        assert model.key is not None
        return sha256_text(f"{model.label}\0{model.key}:{case_fingerprint}")

    def entries(self, kind: str = "answers") -> Iterator[dict[str, Any]]:
        """Every entry the database holds of `kind` (``answers`` or ``verdicts``), for tools and tests."""
        if kind not in _TABLES:
            raise ValueError(f"no such kind of entry: {kind!r} (one of {', '.join(_TABLES)})")
        db = self._connect(create=False)
        if db is None:
            return
        for (entry,) in db.execute(f"SELECT entry FROM {kind} ORDER BY key").fetchall():
            with contextlib.suppress(ValueError):
                yield json.loads(entry)

    def get(self, model: ModelFingerprint, case_fingerprint: str, turns: int) -> dict[str, Any] | None:
        """The stored entry, or None (absent, unreadable, or not for exactly this model and case)."""
        if not self.read or model.key is None:
            return None
        data = self._row("answers", self.answer_key(model, case_fingerprint)) or self._legacy_entry(
            "answers", model.label, model.key, sha256_text(model.key + ":" + case_fingerprint)
        )
        answers = data.get("answers") if data is not None else None
        if (
            data is None
            or data.get("format") != CACHE_FORMAT
            or data.get("model_fingerprint") != model.key
            or data.get("case_fingerprint") != case_fingerprint
            or not isinstance(answers, list)
            or len(answers) != turns
            or not all(isinstance(a, str) for a in answers)
        ):
            return None
        self.hits += 1
        return data

    def put(self, model: ModelFingerprint, case_fingerprint: str, record: dict[str, Any]) -> None:
        """Store one answered case; a failure to write is remembered for the summary, never raised."""
        if model.key is None:
            return
        entry = {
            "format": CACHE_FORMAT,
            "model_fingerprint": model.key,
            "case_fingerprint": case_fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **record,
        }
        if self._write("answers", self.answer_key(model, case_fingerprint), model.label, entry):
            if self._batching:
                self._pending += 1
            else:
                self.writes += 1

    def verdict_key(self, judge: str, judge_key: str, content: dict[str, Any]) -> VerdictKey:
        """Where the judge's reply to `content` (template, prompt, settings, images: what could change it) lives."""
        digest = sha256_text(json.dumps({"format": CACHE_FORMAT, "judge": judge_key, **content}, sort_keys=True))
        return VerdictKey(judge, judge_key, digest)

    def get_verdict(self, key: VerdictKey) -> str | None:
        """The stored reply, or None (absent, unreadable, or --vl-refresh)."""
        if not self.read:
            return None
        data = self._row("verdicts", key.row) or self._legacy_entry("verdicts", *key)
        reply = data.get("reply") if data is not None else None
        return reply if isinstance(reply, str) else None

    def put_verdict(self, key: VerdictKey, reply: str) -> None:
        """Store one judge reply; a failure to write is remembered for the summary, never raised."""
        record = {"format": CACHE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reply": reply}
        self._write("verdicts", key.row, key.judge, record)
