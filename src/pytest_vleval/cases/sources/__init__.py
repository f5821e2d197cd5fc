"""Standard benchmarks as case suites: a ``source:`` block in a case file names a dataset in its official file
layout, and each of its rows becomes a case at collection (docs: README "Using a standard benchmark").

Formats live one module each and are imported only when a file names them; :data:`FORMAT_MODULES` is the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vleval.cases.sources.base import (
    SOURCE_KEYS,
    SourceContext,
    SourceError,
    SourceFormat,
    stable_sample,
    unique_rows,
)

__all__ = [
    "FORMAT_MODULES",
    "Expanded",
    "SourceError",
    "SourceFormat",
    "check_format_name",
    "expand_source",
    "source_format",
]

# format name -> the module holding its FORMATS entry
FORMAT_MODULES: dict[str, str] = {
    "vqav2": "pytest_vleval.cases.sources.vqa",
    "textvqa": "pytest_vleval.cases.sources.vqa",
    "docvqa": "pytest_vleval.cases.sources.vqa",
    "chartqa": "pytest_vleval.cases.sources.vqa",
    "ocrbench": "pytest_vleval.cases.sources.ocrbench",
    "refcoco": "pytest_vleval.cases.sources.refcoco",
    "refcoco+": "pytest_vleval.cases.sources.refcoco",
    "refcocog": "pytest_vleval.cases.sources.refcoco",
    "hf": "pytest_vleval.cases.sources.hf",
    "mmbench": "pytest_vleval.cases.sources.mmbench",
}
# Formats the issue names that cannot be read yet, and why (said instead of "unknown format").
PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class Expanded:
    """A source block's rows as raw case mappings, the format's case settings, and the folders its images come
    from (allowed as data roots for those images)."""

    rows: list[dict[str, Any]]
    defaults: Mapping[str, Any]
    roots: tuple[Path, ...]
    format: SourceFormat


def source_format(name: object) -> SourceFormat:
    check_format_name(name)
    assert isinstance(name, str)
    module = importlib.import_module(FORMAT_MODULES[name])
    formats: Mapping[str, SourceFormat] = module.FORMATS
    return formats[name]


def check_format_name(name: object, *, noun: str = "source format", also_known: Sequence[str] = ()) -> None:
    """A :class:`SourceError` unless `name` is a format of :data:`FORMAT_MODULES` (or of `also_known`, formats
    read elsewhere: the import command's coco-captions): a pending format says why, an unknown one the nearest."""
    known = sorted([*FORMAT_MODULES, *also_known])
    if not isinstance(name, str) or not name:
        raise SourceError(f"source key 'format': expected one of {', '.join(known)}, got {name!r}")
    if name in PENDING:
        raise SourceError(f"{noun} {name!r}: {PENDING[name]}")
    if name not in known:
        from pytest_vleval.cases.checks import closest

        hint = closest(name, known)
        raise SourceError(
            f"unknown {noun} {name!r}{f' (did you mean {hint!r}?)' if hint else ''}; known: {', '.join(known)}"
        )


def expand_source(block: Any, base: Path, image_store: Path) -> Expanded:
    """Read the dataset a ``source:`` block names; raises :class:`SourceError` naming the key, file or row."""
    if not isinstance(block, Mapping):
        raise SourceError(f"expected a mapping with a 'format' key, got {type(block).__name__}")
    fmt = source_format(block.get("format"))
    unknown = [key for key in block if key not in fmt.keys]
    if unknown:
        raise SourceError(f"source format {fmt.name!r} has no key {unknown[0]!r}; its keys: {', '.join(fmt.keys)}")
    missing = [key for key in fmt.files if key not in block]
    if missing:
        needs = "; ".join(f"{key}: {fmt.files[key]}" for key in missing)
        raise SourceError(f"source format {fmt.name!r} needs {needs}")
    size, seed = _sampling(block)
    context = SourceContext(block, base, image_store, fmt)
    rows = stable_sample(unique_rows(fmt.read(context)), size, seed)
    if size is not None and len(rows) < size:
        raise SourceError(f"source key 'sample': {size} rows asked for, but the dataset has {len(rows)}")
    if not rows:
        raise SourceError(f"source format {fmt.name!r}: the dataset has no rows")
    return Expanded(rows, dict(fmt.defaults), tuple(context.roots), fmt)


def _sampling(block: Mapping[str, Any]) -> tuple[int | None, int]:
    size, seed = block.get("sample"), block.get("seed", 0)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise SourceError(f"source key 'sample': expected a positive number of rows, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SourceError(f"source key 'seed': expected an integer, got {seed!r}")
    return size, seed


__all__ += ["PENDING", "SOURCE_KEYS"]
