"""``python -m pytest_vleval import``: a dataset in its official layout written out as a frozen case suite (or, for
COCO captions, a golden caption set) that loads to the very cases, or references, the dataset gives."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vleval.cases.casefile import Case, load_case_file
from pytest_vleval.cases.golden import load_golden_set
from pytest_vleval.cases.prompts import TASK_PROMPTS
from pytest_vleval.cases.sources.base import stable_sample

from .conftest import make_png
from .test_source_vqa import VQAV2_SOURCE, _vqav2_layout

VQAV2_KEYS = [
    "--questions",
    "data/v2_OpenEnded_mscoco_val2014_questions.json",
    "--annotations",
    "data/v2_mscoco_val2014_annotations.json",
    "--images",
    "data/val2014/",
]


def run_import(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest_vleval", "import", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def comparable(case: Case) -> Case:
    """A case without where it was written (file and line), which differ between the two files by design."""
    return dataclasses.replace(case, path=Path("-"), line=0)


def test_a_vqav2_import_loads_to_the_cases_of_the_source_block(tmp_path: Path) -> None:
    _vqav2_layout(tmp_path / "data")
    (tmp_path / "test_source.yaml").write_text(VQAV2_SOURCE)
    result = run_import(tmp_path, "vqav2", *VQAV2_KEYS, "-o", "suite/test_vqav2.yaml")
    assert result.returncode == 0, result.stderr
    assert "wrote 3 vqav2 cases to" in result.stdout
    frozen = load_case_file(tmp_path / "suite" / "test_vqav2.yaml")
    source = load_case_file(tmp_path / "test_source.yaml")
    assert [comparable(c) for c in frozen.cases] == [comparable(c) for c in source.cases]
    assert frozen.cases[1].turns[0].threshold == pytest.approx(
        0.6
    )  # the row no answer reaches 0.9 on, as at collection

    text = (tmp_path / "suite" / "test_vqav2.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert header[0] == "# Imported by: python -m pytest_vleval import vqav2 " + " ".join(VQAV2_KEYS) + (
        " -o suite/test_vqav2.yaml"
    )
    assert f"#   questions: {tmp_path / 'data' / 'v2_OpenEnded_mscoco_val2014_questions.json'}" in header
    assert any(line.startswith("# Frozen:") and "re-run the command" in line for line in header)
    assert any("vl_data_roots" in line for line in header)  # its images lie outside suite/
    assert "image: ../data/val2014/COCO_val2014_000000262148.jpg" in text
    assert "defaults:\n  task: vqa\n  scorer: vqa_accuracy\n" in text
    assert frozen.description is not None and frozen.description.startswith("vqav2: 3 cases imported from")


def test_a_sample_is_the_one_the_source_block_picks(tmp_path: Path) -> None:
    _vqav2_layout(tmp_path / "data")
    (tmp_path / "test_source.yaml").write_text(VQAV2_SOURCE + "  sample: 2\n  seed: 7\n")
    result = run_import(tmp_path, "vqav2", *VQAV2_KEYS, "--sample", "2", "--seed", "7", "-o", "test_frozen.yaml")
    assert result.returncode == 0, result.stderr
    frozen = load_case_file(tmp_path / "test_frozen.yaml")
    source = load_case_file(tmp_path / "test_source.yaml")
    assert len(frozen.cases) == 2
    assert [comparable(c) for c in frozen.cases] == [comparable(c) for c in source.cases]
    assert "# Sample: 2 rows chosen by the hash of their ids, seed 7" in (tmp_path / "test_frozen.yaml").read_text()


def test_defaults_given_on_the_command_line_act_as_a_files_defaults(tmp_path: Path) -> None:
    _vqav2_layout(tmp_path / "data")
    (tmp_path / "test_source.yaml").write_text(VQAV2_SOURCE + "defaults: {threshold: 0.5, tags: [vqa]}\n")
    settings = ["--default", "threshold=0.5", "--default", "tags=[vqa]"]
    result = run_import(tmp_path, "vqav2", *VQAV2_KEYS, *settings, "-o", "test_frozen.yaml")
    assert result.returncode == 0, result.stderr
    frozen = load_case_file(tmp_path / "test_frozen.yaml")
    assert [comparable(c) for c in frozen.cases] == [
        comparable(c) for c in load_case_file(tmp_path / "test_source.yaml").cases
    ]
    assert frozen.cases[0].tags == ("vqa",) and frozen.cases[1].turns[0].threshold == 0.5
    result = run_import(tmp_path, "vqav2", *VQAV2_KEYS, "--default", "colour=red", "-o", "test_frozen.yaml")
    assert result.returncode == 2
    assert "the imported file would not load, so it was not written: " in result.stderr
    assert "test_frozen.yaml" in result.stderr and "colour" in result.stderr and ".part" not in result.stderr
    assert sorted(p.name for p in tmp_path.glob("test_frozen*")) == ["test_frozen.yaml"]  # the earlier one, kept


def test_copy_images_writes_each_image_once_named_by_its_content(tmp_path: Path) -> None:
    _vqav2_layout(tmp_path / "data")  # three images with the same bytes
    make_png(tmp_path / "other.png", color=(10, 200, 10)).replace(
        tmp_path / "data" / "val2014" / "COCO_val2014_000000262150.jpg"
    )
    result = run_import(tmp_path, "vqav2", *VQAV2_KEYS, "--copy-images", "-o", "suite/test_vqav2.yaml")
    assert result.returncode == 0, result.stderr
    assert "copied 2 new images" in result.stdout
    store = tmp_path / "suite" / "images" / "vqav2"
    copies = sorted(p for p in store.rglob("*") if p.is_file())
    assert len(copies) == 2 and all(p.suffix == ".jpg" and len(p.stem) == 64 for p in copies)
    frozen = load_case_file(tmp_path / "suite" / "test_vqav2.yaml", roots=[tmp_path / "suite"])
    for case in frozen.cases:
        (image,) = case.images
        assert image.parent.parent == store.resolve()
        original = tmp_path / "data" / "val2014" / f"COCO_val2014_{int(case.id.split('-')[1]) // 1000:012d}.jpg"
        assert image.read_bytes() == original.read_bytes()
    assert frozen.cases[0].images == frozen.cases[1].images  # the same bytes: one file
    assert "vl_data_roots" not in (tmp_path / "suite" / "test_vqav2.yaml").read_text()
    again = run_import(tmp_path, "vqav2", *VQAV2_KEYS, "--copy-images", "-o", "suite/test_vqav2.yaml")
    assert "copied 0 new images" in again.stdout
    assert sorted(p for p in store.rglob("*") if p.is_file()) == copies


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ["--questions", "data/missing.json"],
            r"source key 'questions': .*missing.json does not exist \(v2_OpenEnded_mscoco_val2014_questions.json\)",
        ),
        (
            ["--colour", "red"],
            r"source format 'vqav2' has no key 'colour'; its keys: format, sample, seed, questions, annotations, "
            r"images, subtype, image_pattern",
        ),
        (["--image-pattern=COCO_{image_id:d}.jpg"], r"case vqav2-262148000: image not found: .*COCO_262148.jpg"),
        (["--format", "textvqa"], r"--format: give the format as the first argument"),
        (["--subtype"], r"--subtype: expected a value"),
        (["stray"], r"unexpected argument 'stray': the format's keys are given as --KEY VALUE"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(tmp_path: Path, change: list[str], message: str) -> None:
    _vqav2_layout(tmp_path / "data")
    keys = dict(zip(VQAV2_KEYS[::2], VQAV2_KEYS[1::2], strict=True))
    if change[0] in keys:
        keys[change[0]] = change[1]
        change = []
    args = [item for pair in keys.items() for item in pair]
    result = run_import(tmp_path, "vqav2", *args, *change, "-o", "test_out.yaml")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("pytest_vleval import: error: ")
    assert re.search(message, line), line
    assert not (tmp_path / "test_out.yaml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vqa2", "--questions", "q.json", "-o", "t.yaml"], "unknown format 'vqa2' (did you mean 'vqav2'?); known: "),
        (["mmbench", "-o", "t.yaml"], "source format 'mmbench' needs file: MMBench_DEV_EN.tsv"),
        (["vqav2", "-o", "t.json"], "-o t.json: expected the path of a .yaml file"),
    ],
)
def test_an_unknown_format_or_output_says_so(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_import(tmp_path, *args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1


def _coco_layout(root: Path) -> dict[int, list[str]]:
    """captions_val2014.json with four images (one nobody captioned) in val2014/; returns id -> captions."""
    captions = {
        391895: ["A man rides a bike.", "Someone cycling on a road."],
        522418: ["A woman cuts a cake."],
        184613: ["A boy holds an umbrella.", "Cows in a field.", "A child with cattle."],
    }
    images, annotations = [], []
    for n, image_id in enumerate([*captions, 999]):
        name = f"COCO_val2014_{image_id:012d}.jpg"
        make_png(root / "val2014" / name, color=(n * 60, 20, 20)).replace(root / "val2014" / name)
        images.append({"id": image_id, "file_name": name, "height": 64, "width": 64})
        for text in captions.get(image_id, []):
            annotations.append({"image_id": image_id, "id": len(annotations) + 100, "caption": text})
    (root / "captions_val2014.json").write_text(json.dumps({"info": {}, "images": images, "annotations": annotations}))
    return captions


def test_coco_captions_become_a_golden_set_of_the_sampled_images(tmp_path: Path) -> None:
    captions = _coco_layout(tmp_path / "coco")
    args = ["--captions", "coco/captions_val2014.json", "--images", "coco/val2014"]
    result = run_import(
        tmp_path, "coco-captions", *args, "--sample", "2", "--seed", "3", "-o", "golden/coco/golden.yaml"
    )
    assert result.returncode == 0, result.stderr
    assert "wrote a golden set of 2 images" in result.stdout
    golden = load_golden_set(tmp_path / "golden" / "coco")
    picked = stable_sample(({"id": str(i)} for i in captions), 2, 3)
    assert [image.image_id for image in golden.images] == [int(row["id"]) for row in picked]
    assert golden.references == {str(i): tuple(captions[i]) for i in (int(row["id"]) for row in picked)}
    assert golden.prompt == TASK_PROMPTS["caption"].question
    assert golden.name == "coco-captions_val2014" and golden.max_new_tokens == 64
    assert golden.images[0].path.resolve().parent == (tmp_path / "coco" / "val2014").resolve()
    written = json.loads((tmp_path / "golden" / "coco" / "golden.captions.json").read_text())
    assert len(written["images"]) == 2  # only the sampled images
    manifest = (tmp_path / "golden" / "coco" / "golden.yaml").read_text()
    assert "images_dir: ../../coco/val2014" in manifest and "# Frozen:" in manifest


def _karpathy_layout(root: Path) -> dict[int, list[str]]:
    """dataset_coco.json over coco/val2014 and coco/train2014; returns the test split's id -> captions."""
    entries, test = [], {}
    splits = [
        ("test", "val2014"),
        ("test", "val2014"),
        ("val", "val2014"),
        ("restval", "val2014"),
        ("train", "train2014"),
    ]
    for n, (split, folder) in enumerate(splits):
        cocoid = 1000 + n
        filename = f"COCO_{folder}_{cocoid:012d}.jpg"
        make_png(root / folder / filename, color=(20, n * 50, 20)).replace(root / folder / filename)
        raws = [f"Picture {n}, caption {k}." for k in range(5)]
        sentences = [
            {"tokens": raw.lower().split(), "raw": raw, "imgid": n, "sentid": 5 * n + k} for k, raw in enumerate(raws)
        ]
        entries.append(
            {"filepath": folder, "sentids": [s["sentid"] for s in sentences], "filename": filename, "imgid": n,
             "split": split, "sentences": sentences, "cocoid": cocoid}
        )  # fmt: skip
        if split == "test":
            test[cocoid] = raws
    (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return test


def test_karpathys_split_file_becomes_a_golden_set_of_its_split(tmp_path: Path) -> None:
    test = _karpathy_layout(tmp_path / "coco")
    args = ["--karpathy", "coco/dataset_coco.json", "--split", "test", "--images", "coco/"]
    result = run_import(tmp_path, "coco-captions", *args, "--copy-images", "-o", "golden/karpathy/golden.yaml")
    assert result.returncode == 0, result.stderr
    golden = load_golden_set(tmp_path / "golden" / "karpathy" / "golden.yaml", roots=[tmp_path / "golden"])
    assert golden.references == {str(i): tuple(raws) for i, raws in test.items()}
    assert golden.name == "coco-karpathy-test" and golden.prompt == "Describe the image briefly."
    assert golden.images_dir.resolve() == (tmp_path / "golden" / "karpathy" / "images" / "coco-captions").resolve()
    for image in golden.images:
        original = tmp_path / "coco" / "val2014" / f"COCO_val2014_{image.image_id:012d}.jpg"
        assert image.path.read_bytes() == original.read_bytes()
    result = run_import(tmp_path, "coco-captions", *args[:3], "valid", *args[4:], "-o", "golden.yaml")
    assert result.returncode == 2
    assert "no captioned image in split 'valid' (its splits: restval, test, train, val)" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "coco/val2014"], "needs images: "),
        (["--captions", "coco/captions_val2014.json", "--karpathy", "x.json", "--images", "coco"], "either captions"),
        (["--karpathy", "coco/dataset_coco.json", "--images", "coco"], "source key 'split': which of Karpathy's"),
        (["--captions", "coco/captions_val2014.json", "--images", "coco/val2014", "--split", "test"], "only Karpathy"),
        (["--captions", "c.json", "--images", "coco", "--year", "2014"], "source format 'coco-captions' has no key"),
        (["--captions", "coco/nothere.json", "--images", "coco/val2014"], "source key 'captions': "),
    ],
)
def test_bad_coco_caption_keys_say_what_is_needed(tmp_path: Path, args: list[str], message: str) -> None:
    _coco_layout(tmp_path / "coco")
    result = run_import(tmp_path, "coco-captions", *args, "-o", "golden.yaml")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert message in result.stderr, result.stderr


def test_the_import_command_does_not_load_torch(tmp_path: Path) -> None:
    _vqav2_layout(tmp_path / "data")
    code = (
        "import sys; from pytest_vleval.cases.importer import main; "
        f"assert main({['vqav2', *VQAV2_KEYS, '-o', 'test_x.yaml']!r}) == 0; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    help_text = run_import(tmp_path, "--help")
    assert help_text.returncode == 0 and "usage: python -m pytest_vleval import" in help_text.stdout


def test_format_keys_read_like_a_source_block() -> None:
    from pytest_vleval.cases.importer import format_keys

    keys = format_keys(["--path", "a.parquet", "--path=b.parquet", "--columns.id", "qid", "--image-pattern", "{x}.jpg"])
    assert keys == {"path": ["a.parquet", "b.parquet"], "columns": {"id": "qid"}, "image_pattern": "{x}.jpg"}


def test_an_imported_coco_set_scores_through_the_plugin_as_the_caption_metrics_do(
    fake_project: pytest.Pytester,
) -> None:
    """The imported set, run on the fake backend (it answers the caption written next to each image), gives the
    corpus scores of the caption metrics (pycocoevalcap's, tests/test_metrics.py) on the same captions."""
    from pytest_vleval.metrics import evaluate_captions

    root = fake_project.path
    captions = _coco_layout(root / "coco")
    answers = {391895: "a man riding a bike on a road", 522418: "a woman with a cake", 184613: "cows in a field"}
    for image_id, text in answers.items():
        (root / "coco" / "val2014" / f"COCO_val2014_{image_id:012d}.caption").write_text(text)
    args = ["--captions", "coco/captions_val2014.json", "--images", "coco/val2014", "-o", "golden/coco/golden.yaml"]
    assert run_import(root, "coco-captions", *args).returncode == 0
    fake_project.makeini("[pytest]\nvl_data_roots = coco\n")
    result = fake_project.runpytest("golden", "--vl-model=fake", "--vl-json=run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (golden,) = json.loads((root / "run.json").read_text())["golden"]
    official = evaluate_captions(
        {str(i): refs for i, refs in captions.items()}, {str(i): text for i, text in answers.items()}
    )
    for metric in ("Bleu_4", "ROUGE_L", "CIDEr", "METEOR"):
        assert golden["corpus"][metric] == pytest.approx(official.corpus[metric], abs=1e-9), metric
