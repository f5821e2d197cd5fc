"""OCRBench in its official layout: ``OCRBench.json`` and the ``OCRBench_Images`` folder.

The file is a list of ``{dataset_name, id, image_path, question, answers, type}`` objects (1000 rows from 29
datasets); ``answers`` is one string or a list of them, and ``image_path`` is relative to the image folder (the
official script joins them: ``os.path.join(args.image_folder, data[i]['image_path'])``). The question is sent as
it is, with no task prompt (the official script and lmms-eval add none); the scorer is the official rule
(``scoring/ocrbench.py``), with ``hme: true`` on HME100k rows. ``id`` is unique only within a ``dataset_name``
(IIIT5K and IC13_857 both have an id 211), so a case id holds both: ``ocrbench-IIIT5K-2843``. Each row is tagged
with its OCRBench category (``type``, e.g. ``doc_oriented_vqa``), the grouping of the official sub-scores, so
``-m doc_oriented_vqa`` runs one category.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

from pytest_vleval.cases.sources.base import SourceContext, SourceError, SourceFormat, case_id, field_of

__all__ = ["FORMATS"]

# The official script's special case: handwritten LaTeX, compared with every space removed and case kept.
HME_DATASET = "HME100k"
_NOT_IDENTIFIER = re.compile(r"[^0-9a-z]+")


def _text(row: Mapping[str, Any], key: str, where: str) -> str:
    value = field_of(row, key, where)
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _answers(row: Mapping[str, Any], where: str) -> list[str]:
    value = field_of(row, "answers", where)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        raise SourceError(f"{where}: 'answers' must be a string or a non-empty list of strings, got {value!r}")
    return list(items)


def _image(folder: Path, row: Mapping[str, Any], where: str) -> str:
    relative = _text(row, "image_path", where)
    if PurePath(relative).is_absolute() or ".." in PurePath(relative).parts:
        raise SourceError(f"{where}: 'image_path' {relative!r} must be a path inside the image folder {folder}")
    return str(folder / relative)


def _tag(category: str, where: str) -> str:
    tag = _NOT_IDENTIFIER.sub("_", category.lower()).strip("_")
    if not tag.isidentifier():
        raise SourceError(f"{where}: 'type' {category!r} does not name an OCRBench category")
    return tag


def _row(folder: Path, row: Any, where: str) -> dict[str, Any]:
    dataset = _text(row, "dataset_name", where)
    dataset_id = field_of(row, "id", where)
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int | str) or not str(dataset_id).strip():
        raise SourceError(f"{where}: 'id' must be a number or a string, got {dataset_id!r}")
    where = f"{where} ({dataset} id {dataset_id})"
    case: dict[str, Any] = {
        "id": case_id("ocrbench", f"{dataset}-{dataset_id}"),
        "image": _image(folder, row, where),
        "question": _text(row, "question", where),
        "answers": _answers(row, where),
        "tags": [_tag(_text(row, "type", where), where)],
    }
    if dataset == HME_DATASET:
        case["options"] = {"hme": True}
    return case


def _ocrbench(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    file = ctx.path("file")
    folder = ctx.image_folder("images")
    rows = ctx.json_list("file", "{dataset_name, id, image_path, question, answers, type}")
    for index, row in enumerate(rows):
        yield _row(folder, row, f"{file}: row #{index}")


FORMATS: dict[str, SourceFormat] = {
    "ocrbench": SourceFormat(
        "ocrbench",
        _ocrbench,
        files={"file": "OCRBench/OCRBench.json", "images": "OCRBench_Images/ (image_path is relative to it)"},
        defaults={"scorer": "ocrbench"},
        origin="github.com/Yuliang-Liu/MultimodalOCR (OCRBench/OCRBench.json; OCRBench Images, linked there)",
    ),
}
