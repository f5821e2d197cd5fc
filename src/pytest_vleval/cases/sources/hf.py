"""Any local Hugging Face dataset as cases: a ``save_to_disk`` folder, a dataset folder of data files (a Hub
snapshot already in the user's cache, e.g. ``lmms-lab/textvqa``), or parquet / arrow / jsonl / json / csv files.

```yaml
source:
  format: hf
  path: data/textvqa_val                  # a folder, or data file(s); a glob is allowed for files
  split: validation                       # which split, when there are several
  columns: {id: question_id, question: question, answers: answers, image: image}
defaults: {scorer: vqa_accuracy, task: vqa}
```

``columns`` maps case keys to the dataset's columns; without it, columns named like a case key are used. Without
an ``id`` column a row's id is its index in the dataset, which changes when rows are added, removed or reordered:
map a column of the dataset's own ids when it has one. Images embedded in the data (an ``Image`` feature, read
without decoding pixels) are written once, named by their content; a column of paths is read relative to the
dataset's folder. The ``datasets`` library is an extra (``pip install 'pytest-vleval[datasets]'``), imported
only here, and never reaches the network: only local paths are read, in offline mode.
"""

from __future__ import annotations

import contextlib
import glob
import io
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vleval.cases.sources.base import SourceContext, SourceError, SourceFormat, case_id

__all__ = ["FORMATS", "TARGETS"]

# case keys a column can fill
TARGETS = ("id", "question", "refer", "answers", "expected", "box", "image", "images")
_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".csv": "csv"}
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
_BATCH_ROWS = 64
_MISSING = "the hf format needs the datasets library: pip install 'pytest-vleval[datasets]'"


def read(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise SourceError(_MISSING) from None
    folder, files = _located(ctx)
    label = str(folder if files is None else (files[0] if len(files) == 1 else folder))
    ctx.roots.append(folder)
    # streamed data files need a cache folder for their lock files only: a throwaway one, not the user's
    with _offline(), tempfile.TemporaryDirectory(prefix="vleval-hf-") as cache:
        dataset, label = _split(_loaded(folder, files, ctx.get("split"), cache), ctx.get("split"), label)
        mapping = _columns(ctx.get("columns"), _names(dataset, label), label)
        rows = _Rows(mapping, _prefix(ctx.get("prefix")), ctx, folder)
        index = 0
        for table in _tables(dataset.select_columns(list(dict.fromkeys(mapping.values()))), label):
            for row in table.to_pylist():
                yield rows.case(row, index, f"{label}: row {index}")
                index += 1


def _located(ctx: SourceContext) -> tuple[Path, list[Path] | None]:
    """The dataset's folder, and its data files (None: the folder is the dataset)."""
    raw = ctx.get("path")
    entries = raw if isinstance(raw, list) and raw else [raw]
    if not all(isinstance(entry, str) and entry.strip() for entry in entries):
        raise SourceError(f"source key 'path': expected a folder, a file or a list of files, got {raw!r}")
    files: list[Path] = []
    for entry in entries:
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else ctx.base / path
        if glob.has_magic(str(path)):
            matched = sorted(Path(hit).resolve() for hit in glob.glob(str(path)) if Path(hit).is_file())
            if not matched:
                raise SourceError(f"source key 'path': {path} matches no file")
            files += matched
        elif path.is_dir() and len(entries) == 1:
            return _snapshot(path.resolve()), None
        elif path.is_file():
            files.append(path.resolve())
        else:
            exists = "is a folder: give one folder alone" if path.is_dir() else "does not exist"
            raise SourceError(f"source key 'path': {path.resolve()} {exists}")
    kinds = {_BUILDERS.get(file.suffix.lower()) for file in files}
    if None in kinds or len(kinds) > 1:
        odd = next((file for file in files if file.suffix.lower() not in _BUILDERS), files[0])
        raise SourceError(
            f"source key 'path': {odd}: expected data files of one kind ({', '.join(sorted(_BUILDERS))}), "
            f"got {', '.join(sorted({file.suffix or '(no suffix)' for file in files}))}"
        )
    return files[0].parent, files


def _snapshot(folder: Path) -> Path:
    """A Hub cache folder (``datasets--owner--name``) stands for its current snapshot."""
    snapshots = folder / "snapshots"
    if not snapshots.is_dir() or (folder / "dataset_info.json").is_file():
        return folder
    ref = folder / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    found = sorted(path for path in snapshots.iterdir() if path.is_dir())
    if len(found) != 1:
        raise SourceError(f"source key 'path': {folder} holds {len(found)} snapshots and no refs/main: name one")
    return found[0]


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Offline mode for the load, whatever the environment says: only local paths are ever read."""
    import datasets.config
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _loaded(folder: Path, files: list[Path] | None, split: object, cache: str) -> Any:
    import datasets

    if split is not None and not isinstance(split, str):
        raise SourceError(f"source key 'split': expected a split name, got {split!r}")
    where = str(folder if files is None else files[0])
    try:
        if files is not None:
            builder = _BUILDERS[files[0].suffix.lower()]
            data_files = {split or "train": [str(file) for file in files]}
            return datasets.load_dataset(builder, data_files=data_files, streaming=True, cache_dir=cache)
        if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
            return datasets.load_from_disk(str(folder))
        return datasets.load_dataset(str(folder), streaming=True, cache_dir=cache)
    except Exception as exc:  # its errors vary by layout (OSError, ValueError, arrow's): all mean "unreadable"
        raise SourceError(f"{where}: cannot read it as a Hugging Face dataset: {type(exc).__name__}: {exc}") from None


def _split(loaded: Any, split: str | None, label: str) -> tuple[Any, str]:
    """The one split to read, and the label messages use for it."""
    if not isinstance(loaded, Mapping):
        own = getattr(loaded, "split", None)
        if split is not None and own is not None and str(own) != split:
            raise SourceError(f"source key 'split': {label} holds the split {str(own)!r} only, not {split!r}")
        return loaded, label
    splits = list(loaded)
    if split is None and len(splits) == 1:
        return loaded[splits[0]], label
    if split is None:
        raise SourceError(f"{label} has the splits {', '.join(splits)}: say which with 'split:'")
    if split not in loaded:
        raise SourceError(f"source key 'split': {label} has no split {split!r}; its splits: {', '.join(splits)}")
    return loaded[split], f"{label} [{split}]"


def _tables(dataset: Any, label: str) -> Iterator[Any]:
    """The rows as Arrow tables, a batch at a time: images stay ``{bytes, path}``, no pixels are decoded."""
    batches = iter(dataset.with_format("arrow").iter(batch_size=_BATCH_ROWS))
    while True:
        try:
            table = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a corrupt shard fails inside the library: name the dataset, not a traceback
            raise SourceError(f"{label}: cannot read: {type(exc).__name__}: {exc}") from None
        yield table


def _names(dataset: Any, label: str) -> list[str]:
    if dataset.column_names is not None:
        return list(dataset.column_names)
    first = next(_tables(dataset, label), None)  # csv streams know their columns only once read
    return list(first.column_names) if first is not None else []


def _columns(raw: object, names: list[str], label: str) -> dict[str, str]:
    """Case key -> column; without a mapping, the columns named like a case key."""
    has = f"its columns: {', '.join(names) or 'none'}"
    if raw is None:
        mapping = {target: target for target in TARGETS if target in names}
        if not any(target != "id" for target in mapping):
            raise SourceError(f"{label}: no column is named like a case key: map them with 'columns:' ({has})")
        return mapping
    if not isinstance(raw, Mapping) or not raw:
        raise SourceError(f"source key 'columns': expected a mapping of case keys to columns, got {raw!r}")
    unknown = [str(key) for key in raw if key not in TARGETS]
    if unknown:
        raise SourceError(
            f"source key 'columns': {', '.join(map(repr, unknown))} is not a case key a column can fill; "
            f"those are: {', '.join(TARGETS)}"
        )
    absent = [f"{key}: {column!r}" for key, column in raw.items() if not isinstance(column, str) or column not in names]
    if absent:
        raise SourceError(f"source key 'columns': {label} has no column for {', '.join(absent)}; {has}")
    return {str(key): str(column) for key, column in raw.items()}


def _prefix(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise SourceError(f"source key 'prefix': expected the text case ids start with, got {raw!r}")
    return raw.strip()


@dataclass(frozen=True)
class _Rows:
    """How a row becomes a raw case."""

    mapping: Mapping[str, str]  # case key -> column
    prefix: str
    ctx: SourceContext
    folder: Path  # paths in the data are relative to it

    def case(self, row: Mapping[str, Any], index: int, where: str) -> dict[str, Any]:
        own = row[self.mapping["id"]] if "id" in self.mapping else index
        if own is None or (isinstance(own, str) and not own.strip()):
            raise SourceError(f"{where}: column {self.mapping['id']!r} (the id) is empty")
        case: dict[str, Any] = {"id": case_id(self.prefix, own)}
        for key, column in self.mapping.items():
            value = row[column]
            at = f"{where}: column {column!r}"
            if key == "image":
                case[key] = _image(value, self.ctx, self.folder, at)
            elif key == "images":
                if not isinstance(value, list):
                    raise SourceError(f"{at}: expected a list of images, got {type(value).__name__}")
                case[key] = [_image(item, self.ctx, self.folder, f"{at}[{n}]") for n, item in enumerate(value)]
            elif key == "answers":
                case[key] = _answers(value)
            elif key != "id":
                case[key] = value
        return case


def _answers(value: Any) -> Any:
    """A list of answers, one answer, or VQAv2's ``[{answer: ...}, ...]``."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item["answer"] if isinstance(item, Mapping) and "answer" in item else item for item in value]
    return value


def _image(value: Any, ctx: SourceContext, folder: Path, where: str) -> str:
    """An image's path: embedded bytes stored by their content, or a path (relative to the dataset's folder)."""
    data, path = None, None
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str):
        path = value
    elif value is not None:
        raise SourceError(f"{where}: expected an image or a path, got {type(value).__name__}")
    if data:
        return str(ctx.store_image(data, _suffix(data, path, where)))
    if not path:
        raise SourceError(f"{where}: no image (neither bytes nor a path)")
    resolved = (folder / Path(path).expanduser()).resolve()
    if not resolved.is_file():
        raise SourceError(f"{where}: image {path} does not exist ({resolved})")
    return str(resolved)


def _suffix(data: bytes, path: str | None, where: str) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        named = f" ({path})" if path else ""
        raise SourceError(f"{where}: the embedded bytes{named} are not an image: {exc}") from None
    return _SUFFIXES.get(kind, f".{kind.lower()}" if kind else Path(path or "x.png").suffix or ".png")


FORMATS = {
    "hf": SourceFormat(
        name="hf",
        read=read,
        files={"path": "a save_to_disk folder, a dataset folder, or parquet/arrow/jsonl/json/csv files (or a glob)"},
        optional={"split": None, "columns": None, "prefix": "hf"},
        origin="any local Hugging Face dataset (datasets.load_from_disk / load_dataset, offline)",
    )
}
