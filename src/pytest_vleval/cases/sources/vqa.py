"""Open-ended VQA sets in their official layouts: VQAv2, TextVQA, DocVQA and ChartQA.

Each yields one case per question, with the dataset's own question id in the case id, the image's path (not
opened) and the references the official evaluation compares with; the format's scorer is that evaluation's
metric (``vqa_accuracy``, ``anls``, ``relaxed_accuracy``) and its task the format instruction the reference
evaluations send (``cases/prompts.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_vleval.cases.sources.base import SourceContext, SourceError, SourceFormat, case_id, field_of

__all__ = ["FORMATS"]


def _vqav2(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """v2_OpenEnded_mscoco_<subtype>_questions.json + v2_mscoco_<subtype>_annotations.json; the images are
    COCO_<subtype>_<image id, 12 digits>.jpg in the `images` folder (subtype from the questions file).

    The files are streamed (``SourceContext.stream``): with ``sample``, a first pass over the question ids picks
    the rows, and only their answers are kept, so memory follows the rows kept, not the 200,000 in the files."""
    questions_file, annotations_file = ctx.path("questions"), ctx.path("annotations")
    folder = ctx.image_folder("images")
    subtype = ctx.get("subtype") or next(ctx.stream("questions", "data_subtype"), None)
    if subtype is None:
        raise SourceError(f"{questions_file}: no 'data_subtype' (e.g. val2014); give the source key 'subtype'")
    pattern = ctx.get("image_pattern") or f"COCO_{subtype}_{{image_id:012d}}.jpg"
    kept = ctx.kept_ids(
        case_id("vqav2", field_of(entry, "question_id", f"{questions_file}: question #{index}"))
        for index, entry in enumerate(ctx.stream("questions", "questions.item"))
    )
    answers_of: dict[Any, list[Any]] = {}
    for index, entry in enumerate(ctx.stream("annotations", "annotations.item")):
        question_id = field_of(entry, "question_id", f"{annotations_file}: annotation #{index}")
        if kept is None or case_id("vqav2", question_id) in kept:
            located = f"{annotations_file}: question_id {question_id}"
            answers_of[question_id] = [field_of(a, "answer", located) for a in field_of(entry, "answers", located)]
    for index, entry in enumerate(ctx.stream("questions", "questions.item")):
        where = f"{questions_file}: question #{index}"
        question_id = field_of(entry, "question_id", where)
        row_id = case_id("vqav2", question_id)
        if kept is not None and row_id not in kept:
            continue
        if question_id not in answers_of:
            raise SourceError(f"{where} (question_id {question_id}): no annotation in {annotations_file}")
        yield {
            "id": row_id,
            "image": str(folder / _format(pattern, field_of(entry, "image_id", where), where)),
            "question": field_of(entry, "question", where),
            "answers": answers_of.pop(question_id),
        }


def _format(pattern: str, image_id: Any, where: str) -> str:
    try:
        return pattern.format(image_id=image_id)
    except (ValueError, KeyError, IndexError) as exc:
        raise SourceError(f"{where}: image_pattern {pattern!r} does not fit image id {image_id!r}: {exc}") from None


def _textvqa(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """TextVQA_0.5.1_<split>.json ({"data": [...]}); images are <image_id>.jpg in `images` (train_images, which
    also holds the val images)."""
    file = ctx.path("file")
    folder = ctx.image_folder("images")
    for index, entry in enumerate(field_of(ctx.json("file"), "data", str(file))):
        where = f"{file}: row #{index}"
        question_id = field_of(entry, "question_id", where)
        yield {
            "id": case_id("textvqa", question_id),
            "image": str(folder / f"{field_of(entry, 'image_id', where)}.jpg"),
            "question": field_of(entry, "question", where),
            "answers": list(field_of(entry, "answers", where)),
        }


def _docvqa(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """val_v1.0.json ({"data": [...]}, each row's "image" relative to the file's folder, e.g.
    documents/xxx.png); `images` overrides that folder."""
    file = ctx.path("file")
    folder = ctx.image_folder("images") if ctx.get("images") else file.parent
    for index, entry in enumerate(field_of(ctx.json("file"), "data", str(file))):
        where = f"{file}: row #{index}"
        question_id = field_of(entry, "questionId", where)
        answers = field_of(entry, "answers", where)
        yield {
            "id": case_id("docvqa", question_id),
            "image": str(folder / field_of(entry, "image", where)),
            "question": field_of(entry, "question", where),
            "expected": [str(a) for a in answers] if isinstance(answers, list) else [str(answers)],  # anls reads it
        }


def _chartqa(ctx: SourceContext) -> Iterator[dict[str, Any]]:
    """test_human.json or test_augmented.json (a list of {imgname, query, label}); images in `images` (png/).
    ChartQA has no question ids: a case id is the image name and a hash of the question (stable under
    reordering)."""
    file = ctx.path("file")
    folder = ctx.image_folder("images")
    for index, entry in enumerate(ctx.json_list("file", "{imgname, query, label} objects")):
        where = f"{file}: row #{index}"
        image = str(field_of(entry, "imgname", where))
        query = str(field_of(entry, "query", where))
        digest = hashlib.sha256(query.encode()).hexdigest()[:8]
        yield {
            "id": case_id("chartqa", f"{Path(image).stem}-{digest}"),
            "image": str(folder / image),
            "question": query,
            "expected": str(field_of(entry, "label", where)),
        }


FORMATS: dict[str, SourceFormat] = {
    "vqav2": SourceFormat(
        "vqav2",
        _vqav2,
        files={
            "questions": "v2_OpenEnded_mscoco_val2014_questions.json",
            "annotations": "v2_mscoco_val2014_annotations.json",
            "images": "the COCO image folder, e.g. val2014/",
        },
        optional={"subtype": None, "image_pattern": None},
        defaults={"task": "vqa", "scorer": "vqa_accuracy"},
        origin="visualqa.org/download.html (Questions, Annotations; images from cocodataset.org)",
    ),
    "textvqa": SourceFormat(
        "textvqa",
        _textvqa,
        files={"file": "TextVQA_0.5.1_val.json", "images": "train_images/ (it holds the val images too)"},
        defaults={"task": "ocr", "scorer": "vqa_accuracy"},
        origin="textvqa.org/dataset (TextVQA 0.5.1 json and train_val_images.zip)",
    ),
    "docvqa": SourceFormat(
        "docvqa",
        _docvqa,
        files={"file": "val/val_v1.0.json"},
        optional={"images": None},
        defaults={"task": "ocr", "scorer": "anls"},
        origin="rrc.cvc.uab.es/?ch=17 (DocVQA, Single Document VQA: val_v1.0.json and documents/)",
    ),
    "chartqa": SourceFormat(
        "chartqa",
        _chartqa,
        files={"file": "test/test_human.json or test/test_augmented.json", "images": "test/png/"},
        defaults={"task": "chart", "scorer": "relaxed_accuracy"},
        origin="github.com/vis-nlp/ChartQA (ChartQA Dataset/test)",
    ),
}
