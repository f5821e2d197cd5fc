"""The persistent answer cache: fingerprints of models and cases, one JSON file per answered case.

An answer is reused only when everything that could change it is unchanged: the model's files (weights hashed
by content), the device and dtype asked for, the library versions, and the case itself (image bytes, system
prompt, questions, generation budget). Nothing here imports torch: a fully cached run never loads a model.

Layout under the cache folder (default ``.vleval/cache`` in the rootdir)::

    answers/<model label>-<model fingerprint[:16]>/<entry key>.json   one answered case
    verdicts/<judge label>-<judge fingerprint[:16]>/<key>.json        one judge reply (predict/judging.py)
    file-hashes/<sha256 of the path>.json                              content hashes of big files,
                                                                       reused while (size, mtime_ns) match
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_vleval.predict.fingerprints import ModelFingerprint

__all__ = ["CACHE_FORMAT", "MEMO_MIN_BYTES", "AnswerCache", "sha256_file", "sha256_text", "write_atomic"]

# Bump when the meaning of an entry changes (e.g. how prompts are built), so old entries are never reused.
CACHE_FORMAT = 1
# Files at least this big have their content hash memoised on disk; smaller ones are hashed each run.
MEMO_MIN_BYTES = 1 << 20
_CHUNK = 1 << 22


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


class AnswerCache:
    """Answers on disk, one file per (model fingerprint, case fingerprint)."""

    def __init__(self, root: Path, *, read: bool = True) -> None:
        self.root = Path(root)
        self.read = read  # False with --vl-refresh: regenerate and overwrite
        self.hits = 0
        self.writes = 0
        self.write_error: str | None = None
        self._file_hashes: dict[tuple[str, int, int], str] = {}

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

    def _folder(self, kind: str, label: str, key: str) -> Path:
        return self.root / kind / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', label)[:60]}-{key[:16]}"

    def entry_path(self, model: ModelFingerprint, case_fingerprint: str) -> Path:
        assert model.key is not None
        key = sha256_text(model.key + ":" + case_fingerprint)
        return self._folder("answers", model.label, model.key) / f"{key}.json"

    def verdict_path(self, judge: str, judge_key: str, content: dict[str, Any]) -> Path:
        """Where the judge's reply to `content` (template, prompt, settings, images: what could change it) lives."""
        digest = sha256_text(json.dumps({"format": CACHE_FORMAT, "judge": judge_key, **content}, sort_keys=True))
        return self._folder("verdicts", judge, judge_key) / f"{digest}.json"

    def get_verdict(self, path: Path) -> str | None:
        """The stored reply, or None (absent, unreadable, or --vl-refresh)."""
        if not self.read:
            return None
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        reply = data.get("reply") if isinstance(data, dict) else None
        return reply if isinstance(reply, str) else None

    def put_verdict(self, path: Path, reply: str) -> None:
        """Store one judge reply; a failure to write is remembered for the summary, never raised."""
        record = {"format": CACHE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reply": reply}
        try:
            self._prepare_root()
            write_atomic(path, json.dumps(record, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"

    def get(self, model: ModelFingerprint, case_fingerprint: str, turns: int) -> dict[str, Any] | None:
        """The stored entry, or None (absent, unreadable, or not for exactly this model and case)."""
        if not self.read or model.key is None:
            return None
        try:
            data = json.loads(self.entry_path(model, case_fingerprint).read_bytes())
        except (OSError, ValueError):
            return None
        answers = data.get("answers") if isinstance(data, dict) else None
        if (
            data.get("format") != CACHE_FORMAT
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
        try:
            self._prepare_root()
            write_atomic(self.entry_path(model, case_fingerprint), json.dumps(entry, indent=1).encode())
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            return
        self.writes += 1
