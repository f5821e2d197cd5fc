"""What every dataset format shares: the ``source:`` block's keys, reading its files with errors that name the file
and the row, stable sampling, and a content-addressed store for images that come embedded in the data.

A format is a :class:`SourceFormat`: the keys it takes (files, folders, options), the case settings it implies
(its official scorer, its task prompt) and ``read``, a generator of raw case mappings in the very shape a YAML case
has (``id``, ``image``, ``question`` or ``refer``, ``answers``/``expected``/``box``, ``options``). Each mapping then
goes through the same validation as a hand-written case, so a source's cases are ordinary cases.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SOURCE_KEYS",
    "SourceContext",
    "SourceError",
    "SourceFormat",
    "case_id",
    "field_of",
    "stable_sample",
    "store_once",
    "unique_rows",
]

# Keys every source block takes besides its format's own.
SOURCE_KEYS = ("format", "sample", "seed")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


class SourceError(ValueError):
    """A dataset file or row that cannot be used; the message names the file (and the row)."""


@dataclass(frozen=True)
class SourceFormat:
    """One dataset layout."""

    name: str
    read: Callable[[SourceContext], Iterator[dict[str, Any]]]
    files: Mapping[str, str]  # required keys -> what they name (files or folders), for messages and docs
    optional: Mapping[str, Any] = field(default_factory=dict)  # optional keys -> default
    defaults: Mapping[str, Any] = field(default_factory=dict)  # case settings: scorer, task, threshold, ...
    origin: str = ""  # where the official files come from

    @property
    def keys(self) -> tuple[str, ...]:
        return (*SOURCE_KEYS, *self.files, *self.optional)


def case_id(prefix: str, dataset_id: object) -> str:
    """A case id from the dataset's own id: ``vqav2-262148000``; characters a case id cannot hold become '_'."""
    return f"{prefix}-{_ID_UNSAFE.sub('_', str(dataset_id)).strip('_') or 'row'}"


class SourceContext:
    """What a format reader gets: the block's settings, paths resolved against the case file's folder, JSON
    reading with errors that name the file, and the store for embedded images."""

    def __init__(self, settings: Mapping[str, Any], base: Path, image_store: Path, fmt: SourceFormat) -> None:
        self.settings = {**fmt.optional, **settings}
        self.base = base
        self.image_store = image_store
        self.format = fmt
        self.roots: list[Path] = []  # folders the source reads images from: its cases' images may lie there
        self._documents: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.settings.get(key)

    def path(self, key: str, *, folder: bool = False) -> Path:
        """The file (or folder) the block names under `key`, relative to the case file; it must exist."""
        raw = self.settings.get(key)
        if not isinstance(raw, str) or not raw.strip():
            raise SourceError(f"source key {key!r}: expected a path ({self.format.files.get(key, key)}), got {raw!r}")
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else (self.base / path)
        path = path.resolve()
        kind = "folder" if folder else "file"
        if not (path.is_dir() if folder else path.is_file()):
            exists = "is not a " + kind if path.exists() else "does not exist"
            raise SourceError(f"source key {key!r}: {path} {exists} ({self.format.files.get(key, key)})")
        if folder:
            self.roots.append(path)
        return path

    def image_folder(self, key: str) -> Path:
        """A folder the rows' images are in (allowed as a data root for them)."""
        return self.path(key, folder=True)

    def json(self, key: str) -> Any:
        """The JSON file under `key`, read once per expansion (a reader, or the stream fallback, may ask again)."""
        if key in self._documents:
            return self._documents[key]
        path = self.path(key)
        try:
            with path.open(encoding="utf-8") as handle:
                self._documents[key] = json.load(handle)
                return self._documents[key]
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: cannot read: {exc}") from None

    def json_list(self, key: str, shape: str) -> list[Any]:
        """The JSON file under `key`, which must be a list (`shape` says of what, for the message)."""
        rows = self.json(key)
        if not isinstance(rows, list):
            raise SourceError(f"{self.path(key)}: expected a list of {shape}")
        return rows

    def stream(self, key: str, prefix: str) -> Iterator[Any]:
        """The items of the JSON file under `key` at `prefix` (ijson's notation: ``questions.item`` is each element
        of the top-level "questions" list; ``data_subtype`` a top-level value), parsed incrementally with ijson
        when it is installed (the ``stream`` extra), so a file of 200,000 rows is never held whole; else read
        with json."""
        path = self.path(key)
        try:
            import ijson
        except ImportError:
            yield from _walk(self.json(key), prefix.split("."))
            return
        try:
            with path.open("rb") as handle:
                yield from ijson.items(handle, prefix, use_float=True)
        except ijson.JSONError as exc:
            first = (str(exc).strip().splitlines() or ["unreadable"])[0]
            raise SourceError(f"{path}: not valid JSON ({first})") from None
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc}") from None

    def kept_ids(self, ids: Iterable[str]) -> set[str] | None:
        """With ``sample``, the case ids :func:`stable_sample` will keep, found from the ids alone (a first pass
        over a large file, so that the rest of a row is read only for the rows kept); None without ``sample``."""
        size = self.settings.get("sample")
        if not isinstance(size, int) or isinstance(size, bool):
            return None
        seed = self.settings.get("seed", 0)
        return set(heapq.nsmallest(size, ids, key=lambda row_id: _rank(seed, row_id)))

    def store_image(self, data: bytes, suffix: str = ".png") -> Path:
        """Write embedded image bytes once, named by their content; the same bytes give the same file."""
        digest = hashlib.sha256(data).hexdigest()
        return store_once(self.image_store, digest, suffix, lambda partial: partial.write_bytes(data))[0]


def store_once(store: Path, digest: str, suffix: str, write: Callable[[Path], object]) -> tuple[Path, bool]:
    """The content-addressed file ``store/<2 hex>/<digest><suffix>`` (embedded images, the import command's
    copies), and whether this call wrote it: `write` fills a partial file that then takes the name, so a reader
    never sees half an image."""
    path = store / digest[:2] / f"{digest}{suffix}"
    if path.is_file():
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{digest[:8]}.part")
    write(partial)
    partial.replace(path)
    return path, True


def _walk(document: Any, parts: list[str]) -> Iterator[Any]:
    """json's stand-in for ijson.items: follow `parts` ("item" is every element of a list)."""
    if not parts or parts == [""]:
        yield document
        return
    head, rest = parts[0], parts[1:]
    if head == "item":
        for element in document if isinstance(document, list) else []:
            yield from _walk(element, rest)
    elif isinstance(document, Mapping) and head in document:
        yield from _walk(document[head], rest)


def unique_rows(rows: Iterable[dict[str, Any]], what: str = "rows") -> Iterator[dict[str, Any]]:
    """`rows`, passed through; a :class:`SourceError` when two have the same ``id`` (case ids must be unique)."""
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise SourceError(f"two {what} have the id {row['id']!r}: the dataset's ids must be unique")
        seen.add(row["id"])
        yield row


def field_of(row: Any, key: str, where: str) -> Any:
    """``row[key]``, or a :class:`SourceError` naming the row and the keys it has."""
    if not isinstance(row, Mapping):
        raise SourceError(f"{where}: expected an object, got {type(row).__name__}")
    if key not in row:
        raise SourceError(f"{where}: no {key!r} (it has {', '.join(map(str, row)) or 'no keys'})")
    return row[key]


def stable_sample(rows: Iterable[dict[str, Any]], size: int | None, seed: int) -> list[dict[str, Any]]:
    """`size` rows chosen by the hash of (seed, id), kept in dataset order: the same seed picks the same ids
    however the rows are ordered, and a row added later displaces one only when its hash ranks among the lowest.
    Memory grows with `size`, not with the dataset. None: every row."""
    if size is None:
        return list(rows)
    kept = heapq.nsmallest(
        size,
        ((_rank(seed, row["id"]), index, row) for index, row in enumerate(rows)),
        key=lambda entry: (entry[0], entry[1]),
    )
    return [row for _, _, row in sorted(kept, key=lambda entry: entry[1])]


def _rank(seed: int, row_id: str) -> str:
    return hashlib.sha256(f"{seed}\0{row_id}".encode()).hexdigest()
