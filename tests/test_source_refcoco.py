"""RefCOCO, RefCOCO+ and RefCOCOg read from their official layout (lichengunc/refer): refs(unc).p, a Python 2
pickle of refs, next to a COCO-style instances.json, with the COCO train2014 images."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.cases.sources import SourceError, expand_source
from pytest_vleval.cases.sources.refcoco import load_refs

from .conftest import make_png

TRAIN2014 = Path("data/images/mscoco/images/train2014")
SIZES = {9: (640, 480), 25: (500, 375)}
BOXES = {  # ann_id -> (image_id, COCO [x, y, w, h])
    1001: (9, [10, 20, 100, 50]),
    1002: (25, [200.5, 100.25, 80, 120]),
    1003: (9, [300, 200, 150, 100]),
    1004: (25, [0, 0, 50, 60]),
    1005: (25, [320, 40, 100, 90]),
}


def _ref(ref_id: int, ann_id: int, split: str, *sentences: tuple[int, str]) -> dict[str, Any]:
    image_id = BOXES[ann_id][0]
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "split": split,
        "category_id": 1,
        # The ref's own file_name carries the ann id; the image file is instances.json's file_name.
        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
        "sent_ids": [sent_id for sent_id, _ in sentences],
        "sentences": [
            {"sent_id": sent_id, "sent": sent, "raw": sent.capitalize() + ".", "tokens": sent.split()}
            for sent_id, sent in sentences
        ],
    }


REFCOCO = [
    _ref(0, 1001, "testA", (10, "man on the left"), (11, "left guy")),
    _ref(1, 1002, "testA", (12, "woman in red")),
    _ref(2, 1003, "testB", (13, "red car")),
    _ref(3, 1004, "val", (14, "dog")),
    _ref(4, 1005, "testA", (16, "blue umbrella")),
    _ref(5, 1001, "train", (15, "man")),
]
REFCOCOG = [
    _ref(0, 1001, "val", (20, "a man standing on the left of the picture")),
    _ref(1, 1003, "test", (21, "the red car parked at the bottom")),
    _ref(2, 1004, "train", (22, "a dog")),
]


def _instances() -> dict[str, Any]:
    return {
        "images": [
            {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": w, "height": h}
            for i, (w, h) in SIZES.items()
        ],
        "annotations": [
            {"id": a, "image_id": i, "bbox": bbox, "category_id": 1, "area": bbox[2] * bbox[3], "iscrowd": 0}
            for a, (i, bbox) in BOXES.items()
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }


def write_refer(root: Path, refs: list[Any] = REFCOCO, dataset: str = "refcoco", split_by: str = "unc") -> Path:
    """The official layout under `root`: data/<dataset>/refs(<split_by>).p + instances.json, and the images."""
    folder = root / "data" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"refs({split_by}).p").open("wb") as handle:
        pickle.dump(refs, handle, protocol=2)  # the official files are protocol-2 pickles of plain data
    (folder / "instances.json").write_text(json.dumps(_instances()))
    for image_id, size in SIZES.items():
        if not (root / TRAIN2014 / f"COCO_train2014_{image_id:012d}.jpg").exists():
            make_png(root / TRAIN2014 / f"COCO_train2014_{image_id:012d}.jpg", size=size)
    return folder


def _block(dataset: str = "refcoco", split: Any = "testA", split_by: str = "unc", **extra: Any) -> dict[str, Any]:
    block = {
        "format": dataset,
        "refs": f"data/{dataset}/refs({split_by}).p",
        "instances": f"data/{dataset}/instances.json",
        "images": str(TRAIN2014),
        "split": split,
    }
    return {**block, **extra}


def _expand(root: Path, block: dict[str, Any]) -> Any:
    return expand_source(block, root, root / "store")


def test_one_case_per_sentence_with_its_box_as_corners(tmp_path: Path) -> None:
    write_refer(tmp_path)
    expanded = _expand(tmp_path, _block())
    rows = expanded.rows
    assert [row["id"] for row in rows] == ["refcoco-10", "refcoco-11", "refcoco-12", "refcoco-16"]
    assert [row["refer"] for row in rows] == ["man on the left", "left guy", "woman in red", "blue umbrella"]
    # COCO [x, y, w, h] -> [x1, y1, x2, y2], original pixels; both sentences of a ref share its box.
    assert [row["box"] for row in rows] == [
        [10, 20, 110, 70],
        [10, 20, 110, 70],
        [200.5, 100.25, 280.5, 220.25],
        [320, 40, 420, 130],
    ]
    train2014 = (tmp_path / TRAIN2014).resolve()
    assert [Path(row["image"]) for row in rows] == [
        train2014 / "COCO_train2014_000000000009.jpg",
        train2014 / "COCO_train2014_000000000009.jpg",
        train2014 / "COCO_train2014_000000000025.jpg",
        train2014 / "COCO_train2014_000000000025.jpg",
    ]
    assert all(Path(row["image"]).is_file() for row in rows)
    assert set(rows[0]) == {"id", "image", "refer", "box"}
    assert expanded.defaults["scorer"] == "iou" and expanded.defaults["threshold"] == 0.5
    assert expanded.roots == (train2014,)


@pytest.mark.parametrize(
    ("split", "ids"), [("testB", ["refcoco-13"]), ("val", ["refcoco-14"]), ("train", ["refcoco-15"])]
)
def test_each_split_reads_only_its_refs(tmp_path: Path, split: str, ids: list[str]) -> None:
    write_refer(tmp_path)
    assert [row["id"] for row in _expand(tmp_path, _block(split=split)).rows] == ids


def test_refcoco_plus_ids_hold_no_plus(tmp_path: Path) -> None:
    write_refer(tmp_path, dataset="refcoco+")
    rows = _expand(tmp_path, _block("refcoco+", split="testB")).rows
    assert [row["id"] for row in rows] == ["refcocoplus-13"]


def test_refcocog_umd_splits(tmp_path: Path) -> None:
    write_refer(tmp_path, REFCOCOG, dataset="refcocog", split_by="umd")
    test = _expand(tmp_path, _block("refcocog", split="test", split_by="umd")).rows
    assert [(row["id"], row["refer"], row["box"]) for row in test] == [
        ("refcocog-21", "the red car parked at the bottom", [300, 200, 450, 300])
    ]
    val = _expand(tmp_path, _block("refcocog", split="val", split_by="umd")).rows
    assert [row["id"] for row in val] == ["refcocog-20"]
    with pytest.raises(SourceError, match=r"'testA' is not a split of .*refs\(umd\)\.p; its splits: test, train, val"):
        _expand(tmp_path, _block("refcocog", split="testA", split_by="umd"))


@pytest.mark.parametrize("split", ["testC", "TESTA", None, 1])
def test_an_unknown_split_names_the_splits_there_are(tmp_path: Path, split: Any) -> None:
    write_refer(tmp_path)
    with pytest.raises(SourceError) as error:
        _expand(tmp_path, _block(split=split))
    message = str(error.value)
    assert f"source key 'split': {split!r} is not a split of " in message
    assert message.endswith("refs(unc).p; its splits: testA, testB, train, val")


def test_split_is_required(tmp_path: Path) -> None:
    write_refer(tmp_path)
    block = _block()
    del block["split"]
    with pytest.raises(SourceError, match="needs split: the split to read: val, testA or testB"):
        _expand(tmp_path, block)


class _RunsCode:
    """What a crafted pickle does: calls a function on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path, protocol: int) -> None:
    folder = write_refer(tmp_path)
    marker = tmp_path / "ran"
    evil = [{**REFCOCO[0], "sentences": _RunsCode(marker)}]
    (folder / "refs(unc).p").write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(SourceError) as error:
        _expand(tmp_path, _block())
    message = str(error.value)
    assert str((folder / "refs(unc).p").resolve()) in message
    assert f"it names {os.system.__module__}.system; only plain lists, dicts, strings and numbers load" in message
    assert not marker.exists()


def test_a_class_instance_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Path("x")], protocol=2))
    with pytest.raises(SourceError, match=r"refs\(unc\)\.p: refused as a refs pickle: .*pathlib"):
        load_refs(path)


# Written by Python 2.7's cPickle (protocols 2 and 0): byte strings for str, unicode for u'...', as the official
# files were made.
PY2_PROTOCOL_2 = (
    b"\x80\x02]q\x01}q\x02(U\x05splitq\x03U\x05testAq\x04U\x08image_idq\x05K\tU\tsentencesq\x06]q\x07}q\x08("
    b"U\x03rawq\tX\x0b\x00\x00\x00Caf\xc3\xa9 sign.q\nU\x07sent_idq\x0bK\nU\x04sentq\x0cU\ncaf\xc3\xa9 signq\r"
    b"uaU\x06ann_idq\x0eM\xe9\x03U\x06ref_idq\x0fK\x00ua."
)
PY2_PROTOCOL_0 = (
    b"(lp1\n(dp2\nS'split'\np3\nS'testA'\np4\nsS'image_id'\np5\nI9\nsS'sentences'\np6\n(lp7\n(dp8\nS'raw'\np9\n"
    b"VCaf\xe9 sign.\np10\nsS'sent_id'\np11\nI10\nsS'sent'\np12\nS'caf\\xc3\\xa9 sign'\np13\nsasS'ann_id'\np14\n"
    b"I1001\nsS'ref_id'\np15\nI0\nsa."
)


@pytest.mark.parametrize("data", [PY2_PROTOCOL_2, PY2_PROTOCOL_0], ids=["protocol-2", "protocol-0"])
def test_python2_pickles_load_as_plain_data(tmp_path: Path, data: bytes) -> None:
    folder = write_refer(tmp_path)
    (folder / "refs(unc).p").write_bytes(data)
    assert load_refs(folder / "refs(unc).p") == [
        {
            "split": "testA",
            "image_id": 9,
            "ann_id": 1001,
            "ref_id": 0,
            "sentences": [{"raw": "Café sign.", "sent_id": 10, "sent": "café sign"}],
        }
    ]
    (row,) = _expand(tmp_path, _block()).rows
    assert (row["id"], row["refer"], row["box"]) == ("refcoco-10", "café sign", [10, 20, 110, 70])


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    folder = write_refer(tmp_path)
    with pytest.raises(SourceError, match=r"source key 'images': .*train2015 does not exist"):
        _expand(tmp_path, _block(images="data/images/mscoco/images/train2015"))
    (folder / "instances.json").unlink()
    with pytest.raises(SourceError, match=r"source key 'instances': .*instances\.json does not exist"):
        _expand(tmp_path, _block())
    with pytest.raises(SourceError, match=r"source key 'refs': .*refs\(google\)\.p does not exist"):
        _expand(tmp_path, _block(split_by="google"))


def test_a_truncated_pickle_is_named(tmp_path: Path) -> None:
    folder = write_refer(tmp_path)
    path = folder / "refs(unc).p"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(SourceError, match=r"refs\(unc\)\.p: refused as a refs pickle: "):
        _expand(tmp_path, _block())


def _broken(tmp_path: Path, refs: list[Any] | None = None, **instances: Any) -> str:
    folder = write_refer(tmp_path, refs if refs is not None else REFCOCO)
    if instances:
        (folder / "instances.json").write_text(json.dumps({**_instances(), **instances}))
    with pytest.raises(SourceError) as error:
        _expand(tmp_path, _block())
    return str(error.value)


def test_malformed_data_names_the_file_and_the_ref(tmp_path: Path) -> None:
    no_ann = [{**REFCOCO[1], "ann_id": 999}]
    assert _broken(tmp_path, no_ann).endswith(
        f"refs(unc).p: ref 1: ann_id 999 is not among {_file(tmp_path)}'s annotations"
    )
    no_image = [{**REFCOCO[1], "image_id": 7}]
    assert _broken(tmp_path, no_image).endswith(
        f"refs(unc).p: ref 1: image_id 7 is not among {_file(tmp_path)}'s images"
    )
    no_sent = [{**REFCOCO[1], "sentences": [{"sent_id": 12, "raw": "Woman."}]}]
    assert "refs(unc).p: ref 1: sentence 12: no 'sent' (it has sent_id, raw)" in _broken(tmp_path, no_sent)
    assert "refs(unc).p: ref 1: sentences: expected a non-empty list" in _broken(
        tmp_path, [{**REFCOCO[1], "sentences": []}]
    )
    assert "refs(unc).p: ref #1: no 'split'" in _broken(tmp_path, [{"ref_id": 3}])
    assert "refs(unc).p: expected a list of refs, got dict" in _broken(tmp_path, {"refs": []})  # type: ignore[arg-type]


def _file(root: Path) -> str:
    return str((root / "data" / "refcoco" / "instances.json").resolve())


@pytest.mark.parametrize(
    ("bbox", "problem"),
    [
        ([10, 20, 0, 50], "expected a finite [x, y, w, h] with w > 0 and h > 0, got [10, 20, 0, 50]"),
        ([10, 20, 100], "expected [x, y, w, h], got [10, 20, 100]"),
        (["10", 20, 100, 50], "expected [x, y, w, h], got ['10', 20, 100, 50]"),
    ],
)
def test_a_bad_box_names_the_annotation_and_the_ref(tmp_path: Path, bbox: list[Any], problem: str) -> None:
    annotations = [{"id": 1002, "image_id": 25, "bbox": bbox}]
    message = _broken(tmp_path, [REFCOCO[1]], annotations=annotations)
    assert message.endswith(f"instances.json: annotation 1002 (ref 1): bbox: {problem}")


def test_an_annotation_on_another_image_is_refused(tmp_path: Path) -> None:
    annotations = [{"id": 1002, "image_id": 9, "bbox": [1, 2, 3, 4]}]
    message = _broken(tmp_path, [REFCOCO[1]], annotations=annotations)
    assert message.endswith("instances.json: annotation 1002 (ref 1): it lies on image 9, the ref on image 25")


@pytest.mark.parametrize("name", ["../../secret.jpg", "/etc/passwd", "", "a\\..\\b.jpg"])
def test_an_image_name_cannot_leave_the_image_folder(tmp_path: Path, name: str) -> None:
    images = [{"id": 25, "file_name": name, "width": 500, "height": 375}]
    message = _broken(tmp_path, [REFCOCO[1]], images=images)
    assert message.endswith(f"instances.json: image 25: file_name {name!r} is not a file name inside the image folder")


# --- through the plugin ------------------------------------------------------------------------------------

# A Qwen3-VL-style backend: a fenced JSON list of labelled boxes on the 0-1000 grid, per referring expression.
QWEN3_CONFTEST = """
import json
import re

ANSWERS = json.loads(%r)


class Qwen3Boxes:
    def __init__(self, spec):
        self.spec = spec
        self.info = {"device": "cpu", "family": "Qwen3-VL", "box_convention": "qwen3"}

    def generate(self, conversations):
        answers = []
        for c in conversations:
            ref = re.search('the description "(.*)" in the image', c.question).group(1)
            box = ANSWERS[ref]
            if box is None:
                answers.append("I cannot find it in the image.")
                continue
            objects = [{"bbox_2d": [0, 0, 40, 40], "label": "sky"}, {"bbox_2d": box, "label": ref}]
            answers.append("```json\\n" + json.dumps(objects, indent=2) + "\\n```")
        return answers

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    return Qwen3Boxes(spec)
"""
# Predicted boxes on Qwen3-VL's 0-1000 grid (None: no box at all).
PREDICTIONS = {
    "man on the left": [16, 42, 172, 146],  # on the box
    "left guy": [40, 60, 190, 160],  # shifted: IoU about 0.57
    "woman in red": [461, 267, 621, 587],  # shifted further: IoU about 0.45
    "blue umbrella": None,
}
REFCOCO_SUITE = """
source:
  format: refcoco
  refs: data/refcoco/refs(unc).p
  instances: data/refcoco/instances.json
  images: data/images/mscoco/images/train2014
  split: testA
"""


def _iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of [x1, y1, x2, y2] boxes on continuous coordinates."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _acc_at_half() -> tuple[float, dict[str, float]]:
    """Acc@0.5 over testA, from the ground truth written above and the predictions in pixels."""
    truth = {"man on the left": 1001, "left guy": 1001, "woman in red": 1002, "blue umbrella": 1005}
    ious = {}
    for ref, grid in PREDICTIONS.items():
        image_id, (x, y, w, h) = BOXES[truth[ref]]
        width, height = SIZES[image_id]
        if grid is None:
            ious[ref] = 0.0
            continue
        pixels = [grid[0] / 1000 * width, grid[1] / 1000 * height, grid[2] / 1000 * width, grid[3] / 1000 * height]
        ious[ref] = _iou(pixels, [x, y, x + w, y + h])
    return sum(iou >= 0.5 for iou in ious.values()) / len(ious), ious


def test_a_refcoco_split_runs_as_cases_scored_by_acc_at_half(pytester: pytest.Pytester) -> None:
    accuracy, ious = _acc_at_half()
    assert accuracy == 0.5 and all(abs(iou - 0.5) > 0.03 for iou in ious.values()), ious  # no borderline case
    write_refer(pytester.path)
    pytester.makeconftest(QWEN3_CONFTEST % json.dumps(PREDICTIONS))
    pytester.makefile(".yaml", test_refcoco=REFCOCO_SUITE)
    result = pytester.runpytest("--vl-model=qwen3-boxes", "--vl-json=run.json", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_refcoco.yaml::refcoco-10[[]qwen3-boxes[]] PASSED*",
            "*test_refcoco.yaml::refcoco-12[[]qwen3-boxes[]] FAILED*",
        ]
    )
    run = json.loads((pytester.path / "run.json").read_text())
    (model,) = run["models"]
    assert model["eval"]["accuracy"] == accuracy
    turns = {case["case_id"]: case["turns"][0] for case in run["cases"]}
    refs = {"refcoco-10": "man on the left", "refcoco-11": "left guy", "refcoco-12": "woman in red"}
    assert {key: turns[key]["score"] for key in refs} == pytest.approx({key: ious[ref] for key, ref in refs.items()})
    assert turns["refcoco-16"]["score"] == 0 and turns["refcoco-16"]["parse_failed"]
    assert {turn["threshold"] for turn in turns.values()} == {0.5}
