"""``python -m pytest_vleval import coco-captions ... -o golden/coco/golden.yaml``: COCO captions as a golden
caption set (:mod:`pytest_vleval.cases.golden`), from either layout:

- the official captions file: ``--captions captions_val2014.json --images val2014/``
  (``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "id", "caption"}]}``);
- Karpathy's split file: ``--karpathy dataset_coco.json --split test --images coco/``
  (``{"images": [{"filepath", "filename", "cocoid", "split", "sentences": [{"raw", "sentid"}]}]}``; its
  ``test`` split, 5,000 val2014 images, is the one captioning papers report; an image is
  ``<images>/<filepath>/<filename>``).

It writes the manifest and, next to it, a COCO captions file holding only the sampled images, which
:func:`~pytest_vleval.cases.golden.load_golden_set` reads unchanged. A manifest does not name Karpathy's file
itself: that file holds every split's 123,287 images (about 140 MB), so a set would need a split and a sample
of its own and read the whole file at each collection; the import does that once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_vleval.cases.golden import load_golden_set
from pytest_vleval.cases.importer import FROZEN_NOTE, ImageFiles, ImportRequest, source_header, write_yaml
from pytest_vleval.cases.prompts import TASK_PROMPTS
from pytest_vleval.cases.sources.base import (
    SourceContext,
    SourceError,
    SourceFormat,
    field_of,
    stable_sample,
    unique_rows,
)

__all__ = ["CAPTIONS", "KARPATHY_PROMPT", "import_captions"]

# lmms-eval sends this for its coco_karpathy_test/val tasks (coco2014_cap_val sends TASK_PROMPTS["caption"]);
# both generate at most 64 new tokens.
KARPATHY_PROMPT = "Describe the image briefly."
MAX_NEW_TOKENS = 64
_LAYOUTS = ("captions", "karpathy")
_NO_THRESHOLDS = "No thresholds yet: the set records its scores; add e.g. thresholds: {CIDEr: 0.8} to gate on them."


def _rows(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    return _karpathy(ctx) if ctx.get("karpathy") is not None else _coco(ctx)


def _coco(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    file = ctx.path("captions")
    document = ctx.json("captions")
    by_image: dict[Any, list[tuple[Any, str]]] = {}
    for index, entry in enumerate(field_of(document, "annotations", str(file))):
        where = f"{file}: annotation #{index}"
        caption = _caption(field_of(entry, "caption", where), where)
        by_image.setdefault(field_of(entry, "image_id", where), []).append((entry.get("id"), caption))
    for index, entry in enumerate(field_of(document, "images", str(file))):
        where = f"{file}: image #{index}"
        image_id = field_of(entry, "id", where)
        if by_image.get(image_id):  # an image nobody captioned cannot be scored
            file_name = str(field_of(entry, "file_name", where))
            yield {"id": str(image_id), "image_id": image_id, "file_name": file_name, "captions": by_image[image_id]}


def _karpathy(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    file = ctx.path("karpathy")
    split = ctx.get("split")
    splits: set[str] = set()
    found = 0
    for index, entry in enumerate(field_of(ctx.json("karpathy"), "images", str(file))):
        where = f"{file}: image #{index}"
        splits.add(str(field_of(entry, "split", where)))
        if entry["split"] != split:
            continue
        image_id = field_of(entry, "cocoid", where)
        folder, name = field_of(entry, "filepath", where), field_of(entry, "filename", where)
        captions = [
            (sentence.get("sentid"), _caption(field_of(sentence, "raw", where), where))
            for sentence in field_of(entry, "sentences", where)
        ]
        if captions:
            found += 1
            yield {"id": str(image_id), "image_id": image_id, "file_name": f"{folder}/{name}", "captions": captions}
    if not found:
        raise SourceError(f"{file}: no captioned image in split {split!r} (its splits: {', '.join(sorted(splits))})")


def _caption(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{where}: expected a caption, got {value!r}")
    return value


CAPTIONS = SourceFormat(
    "coco-captions",
    _rows,
    files={"images": "the folder the images are in: val2014/ for --captions, the one holding val2014/ for --karpathy"},
    optional={"captions": None, "karpathy": None, "split": None, "prompt": None},
    origin="cocodataset.org (captions_val2014.json); cs.stanford.edu/people/karpathy/deepimagesent (dataset_coco.json)",
)


def import_captions(request: ImportRequest) -> str:
    """Write the golden set `request` describes: the manifest at ``request.output``, its references next to it."""
    settings = _checked(dict(request.keys))
    context = SourceContext(settings, Path.cwd(), request.image_store, CAPTIONS)
    images_root = context.image_folder("images")
    rows = stable_sample(unique_rows(CAPTIONS.read(context)), request.sample, request.seed)
    if request.sample is not None and len(rows) < request.sample:
        raise SourceError(f"--sample: {request.sample} images asked for, but the dataset has {len(rows)}")
    store = request.image_store if request.copy_images else None
    images = ImageFiles(store or images_root, store)
    references = request.output.with_name(f"{request.output.stem}.captions.json")
    document = _references(rows, images, images_root)
    images_dir = _relative(images.folder, request.folder)
    images.outside = images_dir.startswith("../") or Path(images_dir).is_absolute()
    karpathy = settings.get("karpathy") is not None
    manifest = {
        "name": f"coco-karpathy-{settings['split']}" if karpathy else f"coco-{Path(settings['captions']).stem}",
        "prompt": settings.get("prompt") or (KARPATHY_PROMPT if karpathy else _caption_prompt()),
        "references": references.name,
        "images_dir": images_dir,
        "max_new_tokens": MAX_NEW_TOKENS,
    }
    header = source_header(request, "references", images, [_NO_THRESHOLDS])
    references.parent.mkdir(parents=True, exist_ok=True)
    partial = references.with_name(references.name + ".part")
    partial.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    partial.replace(references)
    write_yaml(request.output, header, manifest, load_golden_set)
    captions = len(document["annotations"])
    return f"wrote a golden set of {len(rows)} images ({captions} captions) to {request.output}" + images.summary()


def _checked(settings: dict[str, Any]) -> dict[str, Any]:
    """The keys, checked as a source block's are, with the rule that exactly one caption file is named."""
    fmt = CAPTIONS
    unknown = [key for key in settings if key not in fmt.keys]
    if unknown:
        raise SourceError(f"source format {fmt.name!r} has no key {unknown[0]!r}; its keys: {', '.join(fmt.keys)}")
    named = [key for key in _LAYOUTS if settings.get(key) is not None]
    if len(named) != 1 or "images" not in settings:
        raise SourceError(
            f"source format {fmt.name!r} needs images: {fmt.files['images']}; and either captions: "
            "captions_val2014.json (official) or karpathy: dataset_coco.json with split: test (Karpathy's splits)"
        )
    if named == ["captions"] and settings.get("split") is not None:
        raise SourceError("source key 'split': only Karpathy's file has splits (give karpathy:, not captions:)")
    if named == ["karpathy"] and settings.get("split") is None:
        raise SourceError("source key 'split': which of Karpathy's splits to read (test, val, train, restval)")
    return settings


def _references(rows: list[dict[str, Any]], images: ImageFiles, images_root: Path) -> dict[str, Any]:
    """The sampled images as a COCO captions file; file names relative to the images folder (or the copies')."""
    entries: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for row in rows:
        file_name = images.place(str(images_root / row["file_name"]), f"image {row['image_id']!r}")
        entries.append({"id": row["image_id"], "file_name": file_name})
        for caption_id, caption in row["captions"]:
            number = caption_id if caption_id is not None else len(annotations) + 1
            annotations.append({"id": number, "image_id": row["image_id"], "caption": caption})
    return {
        "info": {"description": FROZEN_NOTE.format(what="references")},
        "images": entries,
        "annotations": annotations,
    }


def _relative(path: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:  # another drive
        return str(path)


def _caption_prompt() -> str:
    question = TASK_PROMPTS["caption"].question
    assert question is not None
    return question
