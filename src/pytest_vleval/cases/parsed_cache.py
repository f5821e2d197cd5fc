"""Large case files parsed once per content: the validated cases of a file of many cases are kept on disk
(``.vleval/collected/`` under the rootdir) and read back while nothing they came from has changed.

Parsing and validating YAML costs about 50 us a case (a 200,000-case VQAv2 file: ~10 s of every collection);
reading the kept cases back costs about 4 us. What is kept is exactly what :func:`load_case_file` returned, and
the key covers everything that result depends on besides the images: the file's bytes, its path, the folders
images may come from, where embedded images go, this Python and every source file of this package (so an
edited or upgraded plugin parses again). Images are checked again on every read (the same cheap, memoised checks
as a parse: present, inside the allowed folders, a readable header); when one fails or is large enough to
warn, the file is parsed as usual, so every error and warning is the parse's own, at its case and key. Files
with a ``source:`` block (their rows come from other files) and files of fewer than :data:`KEEP_FROM_CASES`
cases are never kept. Off with the ini key ``vl_collection_cache = false``. A kept file that cannot be read
(cut short, from another version) is parsed again and rewritten, never an error.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_vleval.cases.casefile import CaseFile, load_case_file
from pytest_vleval.cases.images import ImageProblem, check_image, resolved_roots

__all__ = ["FOLDER", "KEEP_FROM_CASES", "load_case_file_kept"]

FOLDER = Path(".vleval") / "collected"
KEEP_FROM_CASES = 1000  # smaller files parse in milliseconds: not worth a file on disk


def load_case_file_kept(
    path: Path, *, roots: Sequence[Path] | None, image_store: Path, folder: Path | None
) -> CaseFile:
    """:func:`load_case_file` (same arguments, same errors and warnings), through the kept copy in `folder`
    when it is current; `folder` None: always parse."""
    if folder is None:
        return load_case_file(path, roots=roots, image_store=image_store)
    try:
        content = Path(path).read_bytes()
    except OSError:
        return load_case_file(path, roots=roots, image_store=image_store)  # its own message
    key = _key(content, Path(path), roots, image_store)
    kept = folder / f"{key}.pickle"
    case_file = _read(kept, key)
    if case_file is not None and _images_still_fine(case_file, roots):
        return case_file
    case_file = load_case_file(path, roots=roots, image_store=image_store)
    if len(case_file.cases) >= KEEP_FROM_CASES and not case_file.sourced:
        _write(kept, key, case_file)
    return case_file


def _key(content: bytes, path: Path, roots: Sequence[Path] | None, image_store: Path) -> str:
    digest = hashlib.sha256(content)
    context = (str(path.resolve()), repr(resolved_roots(roots)), str(image_store), _code_fingerprint())
    digest.update(repr(context).encode())
    return digest.hexdigest()[:40]


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """This Python and every source file of the package (name, size, modification time): what parsing runs."""
    package = Path(__file__).resolve().parent.parent
    files = sorted(package.rglob("*.py"))
    parts = [sys.implementation.cache_tag or "", sys.version]
    for file in files:
        with contextlib.suppress(OSError):
            info = file.stat()
            parts.append(f"{file.relative_to(package)}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read(kept: Path, key: str) -> CaseFile | None:
    try:
        with open(kept, "rb") as handle:
            entry = pickle.load(handle)
    except Exception:  # none yet, cut short, written by another version: parse again (and rewrite)
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("case_file"), CaseFile):
        return None
    return entry["case_file"]


def _images_still_fine(case_file: CaseFile, roots: Sequence[Path] | None) -> bool:
    """Every image of every case passes the collection checks without a note (memoised per file, as in a parse)."""
    allowed = resolved_roots(roots)
    seen: set[Path] = set()
    for case in case_file.cases:
        for image in case.images:
            if image in seen:
                continue
            seen.add(image)
            try:
                if check_image(image, str(image), allowed) is not None:
                    return False
            except ImageProblem:
                return False
    return True


def _write(kept: Path, key: str, case_file: CaseFile) -> None:
    from pytest_vleval.predict.cache import write_atomic  # the answer cache's atomic write (xdist workers race)

    try:
        data = pickle.dumps({"key": key, "case_file": case_file}, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # something in a case that pickle cannot keep: parse every time, as without this
        return
    with contextlib.suppress(OSError):
        if not (kept.parent / ".gitignore").exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(kept.parent / ".gitignore", b"# created by pytest-vleval: parsed case files\n*\n")
        _drop_stale(kept)
        write_atomic(kept, data)


def _drop_stale(kept: Path, keep: int = 64) -> None:
    """At most `keep` kept files: the oldest go first (an edited suite leaves its earlier versions behind)."""
    with contextlib.suppress(OSError):
        files = sorted(kept.parent.glob("*.pickle"), key=lambda f: f.stat().st_mtime_ns)
        for old in files[: max(0, len(files) - keep + 1)]:
            with contextlib.suppress(OSError):
                os.unlink(old)
