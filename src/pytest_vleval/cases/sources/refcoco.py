"""RefCOCO, RefCOCO+ and RefCOCOg in their official layout (lichengunc/refer, ``REFER``): one grounding case per
referring expression, as RefCOCO accuracy is counted.

A dataset folder holds ``refs(unc).p`` (``refs(umd).p`` or ``refs(google).p`` for RefCOCOg), a Python 2 pickle of
a list of refs ``{ref_id, ann_id, image_id, split, sentences: [{sent_id, sent, raw, tokens}], ...}``, and
``instances.json``, COCO-style ``images`` and ``annotations`` (``bbox`` is ``[x, y, w, h]`` in pixels). As in
``REFER``, the image is ``instances.json``'s ``file_name`` for the ref's ``image_id`` in COCO ``train2014`` (the
ref's own ``file_name`` carries an ``_<ann_id>`` suffix and names no file), the box is the annotation's for the
ref's ``ann_id``, and the expression is the sentence's ``sent`` (the cleaned, lower-cased text ``REFER`` shows;
``raw`` is the annotator's own typing).
A case is named by its ``sent_id``: ``refcoco-12345``, ``refcocoplus-12345``, ``refcocog-12345``.

The pickle is read by an unpickler that resolves no class or function at all: the official files hold only
lists, dicts, strings and numbers, and anything else (a crafted file that would run code) is refused unloaded.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pytest_vleval.cases.sources.base import SourceContext, SourceError, SourceFormat, case_id, field_of

__all__ = ["FORMATS", "load_refs"]

ORIGIN = (
    "lichengunc/refer (data/<dataset>/refs(unc).p, refs(umd).p for RefCOCOg, and instances.json) with the "
    "COCO train2014 images"
)
# Acc@0.5, the official RefCOCO metric: a prediction is right when its IoU with the box is >= 0.5. The
# bundled grounding suite's budget: a JSON box with its label outgrows the 32-token default.
DEFAULTS = {"task": "grounding", "scorer": "iou", "threshold": 0.5, "max_new_tokens": 128}

# Case id prefixes: a case id cannot hold '+'.
ID_PREFIX = {"refcoco": "refcoco", "refcoco+": "refcocoplus", "refcocog": "refcocog"}


class _PlainUnpickler(pickle.Unpickler):
    """Loads containers, strings and numbers only: every class or function the pickle names is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it names {module}.{name}; only plain lists, dicts, strings and numbers load")


def load_refs(path: Path) -> Any:
    """The refs pickle at `path`, through :class:`_PlainUnpickler` (Python 2 strings read as UTF-8)."""
    try:
        with path.open("rb") as handle:
            return _PlainUnpickler(handle, encoding="utf-8").load()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    except Exception as exc:  # a malformed pickle raises almost anything (struct.error, KeyError, ...)
        raise SourceError(f"{path}: refused as a refs pickle: {type(exc).__name__}: {exc}") from None


def _format(name: str, splits: str, refs_file: str) -> SourceFormat:
    return SourceFormat(
        name=name,
        read=_read,
        files={
            "refs": f"the {refs_file} pickle of {name}'s refs",
            "instances": f"{name}'s instances.json (COCO images and annotations)",
            "images": "the COCO train2014 image folder",
            "split": f"the split to read: {splits}",
        },
        defaults=DEFAULTS,
        origin=ORIGIN,
    )


def _read(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    refs_path = ctx.path("refs")
    instances_path = ctx.path("instances")
    folder = ctx.image_folder("images")
    refs = load_refs(refs_path)
    if not isinstance(refs, list):
        raise SourceError(f"{refs_path}: expected a list of refs, got {type(refs).__name__}")
    split = _split(ctx.get("split"), refs, refs_path)
    instances = ctx.json("instances")
    images = _index(instances, "images", instances_path)
    annotations = _index(instances, "annotations", instances_path)
    prefix = ID_PREFIX[ctx.format.name]
    for index, ref in enumerate(refs):
        if field_of(ref, "split", f"{refs_path}: ref #{index + 1}") != split:
            continue
        ref_id = field_of(ref, "ref_id", f"{refs_path}: ref #{index + 1}")
        where = f"{refs_path}: ref {ref_id}"
        image = folder / _image_file(ref, images, where, instances_path)
        box = _box(ref, ref_id, annotations, refs_path, instances_path)
        for sentence in _sentences(ref, where):
            yield {"id": case_id(prefix, sentence[0]), "image": str(image), "refer": sentence[1], "box": list(box)}


def _split(split: Any, refs: list[Any], path: Path) -> str:
    present = sorted({str(field_of(ref, "split", f"{path}: ref #{n + 1}")) for n, ref in enumerate(refs)})
    if not isinstance(split, str) or split not in present:
        raise SourceError(f"source key 'split': {split!r} is not a split of {path}; its splits: {', '.join(present)}")
    return split


def _index(instances: Any, key: str, path: Path) -> dict[Any, Mapping[str, Any]]:
    """``instances[key]`` by id: the images or the annotations."""
    rows = field_of(instances, key, str(path))
    if not isinstance(rows, list):
        raise SourceError(f"{path}: {key!r}: expected a list, got {type(rows).__name__}")
    index: dict[Any, Mapping[str, Any]] = {}
    for n, row in enumerate(rows):
        row_id = field_of(row, "id", f"{path}: {key}[{n}]")
        if isinstance(row_id, bool) or not isinstance(row_id, (int, str)):
            raise SourceError(f"{path}: {key}[{n}]: id: expected a number, got {row_id!r}")
        index[row_id] = row
    return index


def _find(table: Mapping[Any, Mapping[str, Any]], key: Any) -> Mapping[str, Any] | None:
    try:
        return table.get(key)
    except TypeError:  # an unhashable id (a list where a number belongs) is simply not there
        return None


def _image_file(ref: Any, images: Mapping[Any, Mapping[str, Any]], where: str, path: Path) -> str:
    image_id = field_of(ref, "image_id", where)
    image = _find(images, image_id)
    if image is None:
        raise SourceError(f"{where}: image_id {image_id!r} is not among {path}'s images")
    name = field_of(image, "file_name", f"{path}: image {image_id}")
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not parts or name.startswith(("/", "\\")) or any(part in ("..", ".") for part in parts) or "\\" in name:
        raise SourceError(f"{path}: image {image_id}: file_name {name!r} is not a file name inside the image folder")
    return name


def _box(ref: Any, ref_id: Any, annotations: Mapping[Any, Mapping[str, Any]], refs: Path, path: Path) -> list[float]:
    """The referred annotation's COCO ``[x, y, w, h]`` as ``[x1, y1, x2, y2]``."""
    ann_id = field_of(ref, "ann_id", f"{refs}: ref {ref_id}")
    ann = _find(annotations, ann_id)
    if ann is None:
        raise SourceError(f"{refs}: ref {ref_id}: ann_id {ann_id!r} is not among {path}'s annotations")
    at = f"{path}: annotation {ann_id} (ref {ref_id})"
    if field_of(ann, "image_id", at) != ref.get("image_id"):
        raise SourceError(f"{at}: it lies on image {ann['image_id']!r}, the ref on image {ref.get('image_id')!r}")
    bbox = field_of(ann, "bbox", at)
    numbers = isinstance(bbox, list) and len(bbox) == 4
    if not numbers or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        raise SourceError(f"{at}: bbox: expected [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise SourceError(f"{at}: bbox: expected a finite [x, y, w, h] with w > 0 and h > 0, got {bbox!r}")
    return [x, y, x + w, y + h]


def _sentences(ref: Any, where: str) -> Iterator[tuple[Any, str]]:
    sentences = field_of(ref, "sentences", where)
    if not isinstance(sentences, list) or not sentences:
        raise SourceError(f"{where}: sentences: expected a non-empty list, got {sentences!r}")
    for n, sentence in enumerate(sentences):
        at = f"{where}: sentence #{n + 1}"
        sent_id = field_of(sentence, "sent_id", at)
        text = field_of(sentence, "sent", f"{where}: sentence {sent_id}")
        if not isinstance(text, str) or not text.strip():
            raise SourceError(f"{where}: sentence {sent_id}: sent: expected the referring expression, got {text!r}")
        yield sent_id, text.strip()


FORMATS: dict[str, SourceFormat] = {
    "refcoco": _format("refcoco", "val, testA or testB", "refs(unc).p"),
    "refcoco+": _format("refcoco+", "val, testA or testB", "refs(unc).p"),
    "refcocog": _format("refcocog", "val or test", "refs(umd).p"),
}
