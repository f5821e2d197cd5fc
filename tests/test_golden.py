"""Golden caption set manifests: parsing, validation messages, and the shipped real-photo set."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_vleval.cases.golden import GoldenImage, GoldenSet, GoldenSetError, load_golden_set
from pytest_vleval.scoring.captions import METRICS

PHOTOS = Path(__file__).resolve().parents[1] / "golden" / "photos"

MANIFEST = """\
name: shapes
prompt: Describe the image.
references: captions.json
images_dir: images
max_new_tokens: 24
thresholds: {CIDEr: 0.8, Bleu_4: 0.25, METEOR: 0.2}
"""


def coco(images: list[tuple[Any, str]], annotations: list[tuple[Any, str]]) -> dict[str, Any]:
    return {
        "images": [{"id": image_id, "file_name": name} for image_id, name in images],
        "annotations": [{"id": i, "image_id": image_id, "caption": c} for i, (image_id, c) in enumerate(annotations)],
    }


GOOD_COCO = coco(
    [(1, "red.png"), (2, "blue.png")],
    [(1, "A red square."), (1, "A red box on white."), (2, "A blue circle.")],
)


def make_set(
    tmp_path: Path,
    manifest: str = MANIFEST,
    captions: Any = GOOD_COCO,
    *,
    images: tuple[str, ...] = ("red.png", "blue.png"),
) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    for name in images:
        Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "images" / name)
    text = captions if isinstance(captions, str) else json.dumps(captions)
    (tmp_path / "captions.json").write_text(text)
    path = tmp_path / "golden.yaml"
    path.write_text(manifest)
    return path


def error_for(path: Path) -> GoldenSetError:
    with pytest.raises(GoldenSetError) as info:
        load_golden_set(path)
    assert isinstance(info.value, ValueError)
    return info.value


def test_loads_a_valid_set(tmp_path: Path) -> None:
    golden = load_golden_set(make_set(tmp_path))
    assert golden.name == "shapes"
    assert golden.prompt == "Describe the image."
    assert golden.max_new_tokens == 24
    assert dict(golden.thresholds) == {"CIDEr": 0.8, "Bleu_4": 0.25, "METEOR": 0.2}
    assert golden.images == (
        GoldenImage("1", 1, tmp_path / "images" / "red.png", ("A red square.", "A red box on white.")),
        GoldenImage("2", 2, tmp_path / "images" / "blue.png", ("A blue circle.",)),
    )
    assert golden.references == {"1": ("A red square.", "A red box on white."), "2": ("A blue circle.",)}
    assert golden.image("2").path.name == "blue.png"
    with pytest.raises(TypeError):
        golden.thresholds["CIDEr"] = 0.1  # type: ignore[index]


def test_defaults_and_folder_argument(tmp_path: Path) -> None:
    folder = tmp_path / "my-set"
    folder.mkdir()
    manifest = "prompt: Describe the image.\nreferences: captions.json\n"
    captions = coco([("img-a", "a.png")], [("img-a", "A dog.")])
    make_set(folder, manifest, captions, images=())
    Image.new("RGB", (4, 4)).save(folder / "a.png")  # images_dir defaults to the manifest's folder
    golden = load_golden_set(folder)
    assert golden.name == "my-set"
    assert golden.thresholds == {}
    assert golden.max_new_tokens is None
    assert golden.images[0].key == "img-a" and golden.images[0].path == folder / "a.png"


def test_empty_thresholds_value_means_none(tmp_path: Path) -> None:
    golden = load_golden_set(
        make_set(tmp_path, MANIFEST.replace("thresholds: {CIDEr: 0.8, Bleu_4: 0.25, METEOR: 0.2}", "thresholds:"))
    )
    assert golden.thresholds == {}


@pytest.mark.parametrize(
    ("manifest", "key", "message", "hint"),
    [
        (
            MANIFEST.replace("CIDEr: 0.8", "CIDEr-D: 0.8"),
            "thresholds.CIDEr-D",
            "unknown metric 'CIDEr-D'; valid metrics: " + ", ".join(METRICS),
            "did you mean 'CIDEr'?",
        ),
        (
            MANIFEST.replace("Bleu_4", "bleu_4"),
            "thresholds.bleu_4",
            "unknown metric",
            "did you mean 'Bleu_4'? names are case-sensitive",
        ),
        (
            MANIFEST.replace("0.8", "'0,8'"),
            "thresholds.CIDEr",
            "must be a number from 0 to 10, got a string '0,8'",
            "use a decimal point: 0.8",
        ),
        (
            MANIFEST.replace("0.25", "1e-3"),
            "thresholds.Bleu_4",
            "must be a number from 0 to 1",
            "PyYAML reads 1e-3 as a string",
        ),
        (MANIFEST.replace("0.25", "25%"), "thresholds.Bleu_4", "must be a number", "not a percentage"),
        (MANIFEST.replace("0.25", "true"), "thresholds.Bleu_4", "got a boolean True", None),
        (MANIFEST.replace("0.25", "25"), "thresholds.Bleu_4", "25 is outside the range of Bleu_4, 0 to 1", "times 100"),
        (
            MANIFEST.replace("0.8", "117.3"),
            "thresholds.CIDEr",
            "outside the range of CIDEr, 0 to 10",
            "117.3 there is 1.173 here",
        ),
        (MANIFEST.replace("0.2}", "-0.1}"), "thresholds.METEOR", "outside the range", None),
        (MANIFEST.replace("0.2}", ".nan}"), "thresholds.METEOR", "outside the range", None),
        (
            MANIFEST.replace("thresholds: {CIDEr: 0.8, Bleu_4: 0.25, METEOR: 0.2}", "thresholds: [CIDEr]"),
            "thresholds",
            "must be a mapping",
            None,
        ),
        (MANIFEST.replace("max_new_tokens: 24", "max_new_tokens: 0"), "max_new_tokens", "whole number >= 1", None),
        (MANIFEST.replace("max_new_tokens: 24", "max_new_tokens: 2.5"), "max_new_tokens", "whole number >= 1", None),
        (
            MANIFEST.replace("prompt: Describe the image.", "prompt: yes"),
            "prompt",
            "must be a string, got a boolean True",
            "quote the text",
        ),
        (MANIFEST.replace("prompt: Describe the image.", "prompt: ''"), "prompt", "is empty", None),
        (MANIFEST.replace("prompt: Describe the image.\n", ""), "prompt", "missing (required)", None),
        (
            MANIFEST.replace("thresholds", "treshold"),
            "treshold",
            "unknown key; valid keys: name, prompt",
            "did you mean 'thresholds'?",
        ),
        (MANIFEST.replace("references: captions.json", "references: nope.json"), "references", "file not found", None),
        (MANIFEST.replace("images_dir: images", "images_dir: pics"), "images_dir", "folder not found", None),
    ],
)
def test_manifest_errors_name_file_key_and_problem(
    tmp_path: Path, manifest: str, key: str, message: str, hint: str | None
) -> None:
    path = make_set(tmp_path, manifest)
    error = error_for(path)
    assert error.path == path
    assert error.key == key
    assert message in str(error)
    assert str(error).startswith(f"{path}: {key}: ")
    if hint is not None:
        assert error.hint is not None and hint in error.hint
        assert "Hint: " + error.hint in str(error)


@pytest.mark.parametrize(
    ("manifest", "line", "problem", "hint"),
    [
        (
            "prompt: Caption: describe it\nreferences: captions.json\n",
            1,
            "mapping values are not allowed here",
            "must be quoted",
        ),
        ("prompt: Describe.\nreferences: captions.json\n\tmax_new_tokens: 3\n", 3, "found character '\\t'", "tabs"),
        (
            "prompt: A\nprompt: B\nreferences: captions.json\n",
            2,
            "found duplicate key 'prompt' (first at line 1)",
            "each key may appear once",
        ),
        ("prompt: @model describe\nreferences: captions.json\n", 1, "cannot start any token", "must be quoted"),
        ("prompt: 'unclosed\nreferences: captions.json\n", 3, "found unexpected end of stream", "not closed"),
    ],
)
def test_yaml_syntax_errors_give_line_and_hint(
    tmp_path: Path, manifest: str, line: int, problem: str, hint: str
) -> None:
    error = error_for(make_set(tmp_path, manifest))
    assert error.key.startswith(f"line {line}, column ")
    assert "YAML syntax error" in str(error) and problem in str(error)
    assert error.hint is not None and hint in error.hint


def test_empty_and_non_mapping_manifests(tmp_path: Path) -> None:
    assert "is empty" in str(error_for(make_set(tmp_path, "")))
    assert "must be a mapping" in str(error_for(make_set(tmp_path, "- prompt: x\n")))
    assert "file not found" in str(error_for(tmp_path / "missing" / "golden.yaml"))


@pytest.mark.parametrize(
    ("captions", "key", "image_id", "message"),
    [
        ('{"images": [}', "line 1, column 13", None, "malformed JSON"),
        ([{"image_id": 1, "caption": "x"}], "file", None, "COCO results file"),
        ({"images": []}, "annotations", None, "missing"),
        ({"images": {}, "annotations": []}, "images", None, "a mapping, not a list"),
        (coco([], []), "images", None, "is empty"),
        (coco([(1, "red.png"), (1, "blue.png")], [(1, "x")]), "images[1].id", 1, "duplicate image id"),
        (coco([(True, "red.png")], [(1, "x")]), "images[0].id", None, "integer or a non-empty string"),
        (coco([(1, "")], [(1, "x")]), "images[0].file_name", 1, "non-empty string"),
        (coco([(1, "/abs/red.png")], [(1, "x")]), "images[0].file_name", 1, "is absolute"),
        (
            coco([(1, "red.png"), (2, "blue.png")], [(1, "A red square.")]),
            "images[1]",
            2,
            "'blue.png' has no references",
        ),
        (
            coco([(1, "red.png")], [(1, "A red square."), (7, "orphan")]),
            "annotations[1].image_id",
            None,
            "7 is not the id",
        ),
        (
            coco([(1, "red.png")], [(1, "A red square."), ("1", "str id")]),
            "annotations[1].image_id",
            None,
            "'1' is not the id",
        ),
        (coco([(1, "red.png")], [(1, "   ")]), "annotations[0].caption", 1, "non-empty string"),
        (
            coco([(1, "red.png"), (3, "green.png")], [(1, "x"), (3, "y")]),
            "images[1].file_name",
            3,
            "image file not found",
        ),
    ],
)
def test_coco_errors_name_file_key_and_image(
    tmp_path: Path, captions: Any, key: str, image_id: Any, message: str
) -> None:
    manifest = make_set(tmp_path, captions=captions)
    error = error_for(manifest)
    assert error.path == tmp_path / "captions.json"
    assert error.key == key
    assert error.image_id == image_id
    assert message in str(error)
    assert error.manifest == manifest and str(manifest) in str(error)
    if image_id is not None:
        assert f"(image id {image_id!r})" in str(error)


def test_missing_image_names_the_full_path(tmp_path: Path) -> None:
    error = error_for(make_set(tmp_path, images=("red.png",)))
    assert str(tmp_path / "images" / "blue.png") in str(error)


def test_id_type_mismatch_hint(tmp_path: Path) -> None:
    error = error_for(make_set(tmp_path, captions=coco([(1, "red.png")], [("1", "x")])))
    assert error.hint is not None and "compare with their JSON type" in error.hint


def test_evaluate_scores_candidates_against_the_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # pure-Python metrics only: fast
    golden = load_golden_set(make_set(tmp_path))
    scores = golden.evaluate({"1": "A red square.", "2": "A blue circle."}, metrics=["Bleu_1"], cache_dir=tmp_path)
    assert scores.corpus["Bleu_1"] == pytest.approx(1.0, abs=1e-6)


def test_photos_set_is_valid_small_and_licensed() -> None:
    golden = load_golden_set(PHOTOS / "golden.yaml")
    assert isinstance(golden, GoldenSet)
    assert golden.name == "photos" and golden.prompt == "Provide a one-sentence caption for the provided image."
    assert 8 <= len(golden.images) <= 10
    assert dict(golden.thresholds) == {}
    licences = (PHOTOS / "LICENSES.md").read_text()
    total = 0
    for image in golden.images:
        assert len(image.references) == 5
        for caption in image.references:
            assert re.fullmatch(r"[A-Z][A-Za-z',\- ]+[a-z]\.", caption), caption
        with Image.open(image.path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert max(im.size) <= 320
        total += image.path.stat().st_size
        assert f"images/{image.path.name}" in licences
    assert total < 1_000_000
    assert sorted(p.name for p in (PHOTOS / "images").iterdir()) == sorted(i.path.name for i in golden.images)
