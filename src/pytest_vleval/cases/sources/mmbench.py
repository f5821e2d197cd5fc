"""MMBench (and MMBench-CN) in the TSV layout OpenCompass and VLMEvalKit publish (``MMBench_DEV_EN.tsv``,
``MMBench_DEV_CN.tsv``, ...).

Columns: ``index``, ``question``, ``hint``, ``A`` .. ``D`` (an empty cell: no such option), ``answer`` (the
letter), ``category``, ``image`` (base64; a cell of 64 characters or fewer names the ``index`` of the row whose
image it shares, as VLMEvalKit reads it). The hint goes before the question (``hint\\nquestion``, LLaVA's
``model_vqa_mmbench.py``); the options are rendered by the ``choice`` task, with its Chinese instruction for
MMBench-CN's Chinese questions. Rows whose index is 1,000,000 or more are the file's own rotated copies of a
question (OpenCompass's CircularEval layout): they are left out, because ``circular: true`` (on by default here,
as MMBench reports it) asks every rotation itself. Images are decoded once into the content-addressed store.
"""

from __future__ import annotations

import base64
import binascii
import csv
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_vleval.cases.sources.base import SourceContext, SourceError, SourceFormat, case_id

__all__ = ["FORMATS"]

_LETTERS = "ABCDEFGHI"
_CIRCULAR_COPY = 1_000_000
_REQUIRED = ("index", "question", "answer", "image", "A", "B")


def _rows(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(sys.maxsize)  # base64 images are far longer than csv's 128 KiB default
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: cannot read as a TSV file: {exc}") from None
    if not rows:
        raise SourceError(f"{path}: no rows")
    missing = [column for column in _REQUIRED if column not in rows[0]]
    if missing:
        raise SourceError(f"{path}: missing column(s) {', '.join(missing)}; MMBench TSV columns are index, question, "
                          "hint, A-D, answer, category, image")  # fmt: skip
    return rows


def _blank(value: str | None) -> bool:
    return value is None or not value.strip() or value.strip().lower() == "nan"  # pandas writes NaN as "nan"


def _image_bytes(row: Mapping[str, str], images: Mapping[str, str], where: str) -> bytes:
    cell = (row.get("image") or "").strip()
    if len(cell) <= 64:  # a reference to the row holding the image
        if cell not in images or len(images[cell]) <= 64:
            raise SourceError(f"{where}: 'image' {cell!r} names no row with an image")
        cell = images[cell]
    try:
        return base64.b64decode(cell, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SourceError(f"{where}: 'image' is not base64: {exc}") from None


def _suffix(data: bytes) -> str:
    return ".jpg" if data.startswith(b"\xff\xd8") else ".png" if data.startswith(b"\x89PNG") else ".img"


def _row(ctx: SourceContext, row: Mapping[str, str], images: Mapping[str, str], where: str) -> dict[str, Any]:
    choices = {letter: row[letter].strip() for letter in _LETTERS if not _blank(row.get(letter))}
    answer = (row.get("answer") or "").strip()
    if len(choices) < 2 or answer not in choices:
        raise SourceError(f"{where}: 'answer' {answer!r} must be one of its options {', '.join(choices) or '(none)'}")
    question = row["question"].strip()
    if not _blank(row.get("hint")):
        question = f"{row['hint'].strip()}\n{question}"
    data = _image_bytes(row, images, where)
    case: dict[str, Any] = {
        "id": case_id("mmbench", row["index"]),
        "image": str(ctx.store_image(data, _suffix(data))),
        "question": question,
        "choices": choices,
        "expected": answer,
    }
    if not _blank(row.get("category")):
        case["tags"] = [_tag(row["category"])]
    return case


def _tag(category: str) -> str:
    tag = "".join(ch if ch.isalnum() else "_" for ch in category.lower()).strip("_")
    return tag if tag.isidentifier() else f"category_{tag}"


def _mmbench(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    path = ctx.path("file")
    rows = _rows(path)
    images = {(row.get("index") or "").strip(): (row.get("image") or "").strip() for row in rows}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{path}: line {number} (index {row.get('index')!r})"
        index = (row.get("index") or "").strip()
        if not index.lstrip("-").isdigit():
            raise SourceError(f"{where}: 'index' must be a whole number")
        if int(index) >= _CIRCULAR_COPY:
            continue
        yield _row(ctx, row, images, where)


FORMATS: dict[str, SourceFormat] = {
    "mmbench": SourceFormat(
        "mmbench",
        _mmbench,
        files={"file": "MMBench_DEV_EN.tsv, MMBench_DEV_CN.tsv, ... (OpenCompass/VLMEvalKit TSV, images in base64)"},
        defaults={"task": "choice", "scorer": "choice", "circular": True},
        origin="opencompass.org.cn/mmbench (the TSVs VLMEvalKit downloads, e.g. MMBench_DEV_EN.tsv)",
    ),
}
