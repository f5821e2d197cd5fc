"""The ``hf`` source: local Hugging Face datasets (save_to_disk folders, Hub snapshots, parquet/jsonl/csv files)
expand into raw cases, offline, with embedded images stored once by their content."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Imported here, before any pytester run: pyarrow cannot be imported twice in one process.
datasets = pytest.importorskip("datasets")

from pytest_vleval.cases.sources import SourceError, expand_source  # noqa: E402

from .conftest import make_png  # noqa: E402

RED, BLUE = (200, 30, 30), (20, 20, 220)


def png_bytes(tmp_path: Path, color: tuple[int, int, int]) -> bytes:
    return make_png(tmp_path / "pngs" / f"{color}.png", size=(16, 16), color=color).read_bytes()


def vqa_dataset(tmp_path: Path, **extra: list[Any]) -> Any:
    """Three questions on two images: the first two share the red one."""
    red, blue = png_bytes(tmp_path, RED), png_bytes(tmp_path, BLUE)
    features = datasets.Features(
        {
            "question_id": datasets.Value("int64"),
            "question": datasets.Value("string"),
            "answers": datasets.Sequence(datasets.Value("string")),
            "image": datasets.Image(),
            **{name: datasets.Value("string") for name in extra},
        }
    )
    return datasets.Dataset.from_dict(
        {
            "question_id": [101, 102, 103],
            "question": ["say: red", "say: circle", "say: blue"],
            "answers": [["red"] * 10, ["circle"] * 2 + ["ball"] * 8, ["blue"] * 10],
            "image": [{"bytes": red, "path": None}, {"bytes": red, "path": "red.png"}, {"bytes": blue, "path": None}],
            **extra,
        },
        features=features,
    )


def expand(tmp_path: Path, **block: Any) -> Any:
    return expand_source({"format": "hf", **block}, tmp_path, tmp_path / "store")


COLUMNS = {"id": "question_id", "question": "question", "answers": "answers", "image": "image"}


def test_save_to_disk_folder_becomes_cases_with_images_stored_once(tmp_path: Path) -> None:
    vqa_dataset(tmp_path).save_to_disk(tmp_path / "data" / "vqa")
    expanded = expand(tmp_path, path="data/vqa", columns=COLUMNS)
    rows = expanded.rows
    assert [row["id"] for row in rows] == ["hf-101", "hf-102", "hf-103"]
    assert [row["question"] for row in rows] == ["say: red", "say: circle", "say: blue"]
    assert rows[1]["answers"] == ["circle"] * 2 + ["ball"] * 8
    red, _, blue = (Path(row["image"]) for row in rows)
    # content-addressed: the two red rows share one file, named by the bytes' hash, with the format's suffix
    assert rows[0]["image"] == rows[1]["image"] and red != blue
    assert red.parent.parent == tmp_path / "store" and red.suffix == ".png"
    assert red.read_bytes() == png_bytes(tmp_path, RED)
    assert sorted(path.name for path in (tmp_path / "store").rglob("*") if path.is_file()) == sorted(
        [red.name, blue.name]
    )
    assert expanded.defaults == {} and (tmp_path / "data" / "vqa").resolve() in expanded.roots


def test_the_same_bytes_give_the_same_path_on_the_next_collection(tmp_path: Path) -> None:
    vqa_dataset(tmp_path).save_to_disk(tmp_path / "vqa")
    first = expand(tmp_path, path="vqa", columns=COLUMNS).rows
    stored = {path: path.stat().st_mtime_ns for path in (tmp_path / "store").rglob("*.png")}
    again = expand(tmp_path, path="vqa", columns=COLUMNS).rows
    assert first == again
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "store").rglob("*.png")} == stored


def test_without_columns_the_columns_named_like_case_keys_are_used_and_the_index_is_the_id(tmp_path: Path) -> None:
    vqa_dataset(tmp_path).save_to_disk(tmp_path / "vqa")
    rows = expand(tmp_path, path="vqa", prefix="textvqa").rows
    assert [row["id"] for row in rows] == ["textvqa-0", "textvqa-1", "textvqa-2"]
    assert set(rows[0]) == {"id", "question", "answers", "image"}


def test_sampling_picks_by_id(tmp_path: Path) -> None:
    vqa_dataset(tmp_path).save_to_disk(tmp_path / "vqa")
    one = expand(tmp_path, path="vqa", columns=COLUMNS, sample=2, seed=3).rows
    assert len(one) == 2 and one == expand(tmp_path, path="vqa", columns=COLUMNS, sample=2, seed=3).rows


def test_dataset_dict_split_is_picked(tmp_path: Path) -> None:
    whole = vqa_dataset(tmp_path)
    datasets.DatasetDict({"train": whole.select([0]), "validation": whole.select([1, 2])}).save_to_disk(tmp_path / "dd")
    rows = expand(tmp_path, path="dd", split="validation", columns=COLUMNS).rows
    assert [row["id"] for row in rows] == ["hf-102", "hf-103"]


def test_dataset_dict_without_split_names_the_splits(tmp_path: Path) -> None:
    whole = vqa_dataset(tmp_path)
    datasets.DatasetDict({"train": whole, "validation": whole}).save_to_disk(tmp_path / "dd")
    with pytest.raises(SourceError, match=r"dd has the splits train, validation: say which with 'split:'"):
        expand(tmp_path, path="dd", columns=COLUMNS)
    with pytest.raises(SourceError, match=r"no split 'test'; its splits: train, validation"):
        expand(tmp_path, path="dd", split="test", columns=COLUMNS)


def test_a_dataset_dict_of_one_split_needs_no_split(tmp_path: Path) -> None:
    datasets.DatasetDict({"test": vqa_dataset(tmp_path)}).save_to_disk(tmp_path / "dd")
    assert len(expand(tmp_path, path="dd", columns=COLUMNS).rows) == 3


def test_parquet_files_and_globs_keep_the_image_feature(tmp_path: Path) -> None:
    whole = vqa_dataset(tmp_path)
    (tmp_path / "pq").mkdir()
    whole.select([0, 1]).to_parquet(tmp_path / "pq" / "val-0.parquet")
    whole.select([2]).to_parquet(tmp_path / "pq" / "val-1.parquet")
    rows = expand(tmp_path, path="pq/val-*.parquet", columns=COLUMNS).rows
    assert [row["id"] for row in rows] == ["hf-101", "hf-102", "hf-103"]
    assert rows[0]["image"] == rows[1]["image"] and Path(rows[2]["image"]).read_bytes() == png_bytes(tmp_path, BLUE)
    assert expand(tmp_path, path=["pq/val-1.parquet"], columns=COLUMNS).rows == rows[2:]


def test_hub_cache_snapshot_with_split_files(tmp_path: Path) -> None:
    """An lmms-lab dataset as `huggingface-cli download` leaves it: data/<split>-*.parquet in a snapshot."""
    whole = vqa_dataset(tmp_path)
    repo = tmp_path / "hub" / "datasets--lmms-lab--textvqa"
    data = repo / "snapshots" / "abc123" / "data"
    data.mkdir(parents=True)
    whole.select([0]).to_parquet(data / "train-00000-of-00001.parquet")
    whole.select([1, 2]).to_parquet(data / "validation-00000-of-00001.parquet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    rows = expand(tmp_path, path=str(repo), split="validation", columns=COLUMNS).rows
    assert [row["id"] for row in rows] == ["hf-102", "hf-103"]
    with pytest.raises(SourceError, match="has the splits"):
        expand(tmp_path, path=str(repo / "snapshots" / "abc123"), columns=COLUMNS)


def test_jsonl_paths_are_relative_to_the_dataset_folder(tmp_path: Path) -> None:
    folder = tmp_path / "json"
    red = make_png(folder / "images" / "red.png", color=RED)
    lines = [
        {"qid": "a/1", "q": "say: red", "img": "images/red.png", "ans": [{"answer": "red", "answer_id": 1}]},
        {"qid": "a/2", "q": "say: red", "img": str(red), "ans": [{"answer": "dark red", "answer_id": 1}]},
    ]
    (folder / "qa.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    columns = {"id": "qid", "question": "q", "image": "img", "answers": "ans"}
    rows = expand(tmp_path, path="json/qa.jsonl", columns=columns).rows
    assert [row["id"] for row in rows] == ["hf-a_1", "hf-a_2"]
    assert [row["image"] for row in rows] == [str(red.resolve())] * 2
    assert [row["answers"] for row in rows] == [["red"], ["dark red"]]  # VQAv2's answer records
    assert not (tmp_path / "store").exists()


def test_csv_with_a_string_of_answers_and_a_missing_image_path(tmp_path: Path) -> None:
    make_png(tmp_path / "csv" / "red.png")
    (tmp_path / "csv" / "qa.csv").write_text(
        "id,question,expected,image\n1,say: red,red,red.png\n2,say: x,x,gone.png\n"
    )
    with pytest.raises(SourceError, match=r"qa.csv: row 1: column 'image': image gone.png does not exist"):
        expand(tmp_path, path="csv/qa.csv")
    (tmp_path / "csv" / "qa.csv").write_text("id,question,answers,image\n1,say: red,red,red.png\n")
    (row,) = expand(tmp_path, path="csv/qa.csv").rows
    assert row == {"id": "hf-1", "question": "say: red", "answers": ["red"], "image": str(tmp_path / "csv" / "red.png")}


def test_an_images_column_of_embedded_images(tmp_path: Path) -> None:
    red, blue = png_bytes(tmp_path, RED), png_bytes(tmp_path, BLUE)
    features = datasets.Features({"q": datasets.Value("string"), "pics": datasets.Sequence(datasets.Image())})
    pics = [[{"bytes": red, "path": None}, {"bytes": blue, "path": None}]]
    datasets.Dataset.from_dict({"q": ["say: first"], "pics": pics}, features=features).save_to_disk(tmp_path / "m")
    (row,) = expand(tmp_path, path="m", columns={"question": "q", "images": "pics"}).rows
    assert [Path(path).read_bytes() for path in row["images"]] == [red, blue]


def test_unknown_columns_name_the_columns_there_are(tmp_path: Path) -> None:
    vqa_dataset(tmp_path).save_to_disk(tmp_path / "vqa")
    with pytest.raises(SourceError) as info:
        expand(tmp_path, path="vqa", columns={**COLUMNS, "question": "query"})
    assert "has no column for question: 'query'; its columns: question_id, question, answers, image" in str(info.value)
    with pytest.raises(SourceError, match=r"'caption' is not a case key a column can fill; those are: id, question"):
        expand(tmp_path, path="vqa", columns={"caption": "question"})


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"source key 'path': .*nowhere does not exist"):
        expand(tmp_path, path="nowhere")
    with pytest.raises(SourceError, match=r"source key 'path': .*\*\.parquet matches no file"):
        expand(tmp_path, path="data/*.parquet")
    with pytest.raises(SourceError, match=r"source format 'hf' needs path"):
        expand_source({"format": "hf"}, tmp_path, tmp_path / "store")


def test_unreadable_files_and_wrong_kinds_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(SourceError, match=r"broken.parquet"):
        expand(tmp_path, path="broken.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match=r"notes.txt: expected data files of one kind"):
        expand(tmp_path, path="notes.txt")


def test_embedded_bytes_that_are_not_an_image_name_the_row(tmp_path: Path) -> None:
    features = datasets.Features({"question": datasets.Value("string"), "image": datasets.Image()})
    rows = {"question": ["say: x"], "image": [{"bytes": b"not a picture", "path": "x.png"}]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(tmp_path / "bad")
    with pytest.raises(SourceError, match=r"bad: row 0: column 'image': the embedded bytes \(x.png\) are not an image"):
        expand(tmp_path, path="bad")


def test_offline_mode_holds_only_while_reading(tmp_path: Path) -> None:
    import huggingface_hub.constants

    before = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    vqa_dataset(tmp_path).to_parquet(tmp_path / "v.parquet")
    assert len(expand(tmp_path, path="v.parquet", columns=COLUMNS).rows) == 3
    assert (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE) == before


def test_without_the_datasets_library_the_message_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(SourceError, match=r"needs the datasets library: pip install 'pytest-vleval\[datasets\]'"):
        expand(tmp_path, path="anything")


def test_importing_the_plugin_does_not_import_datasets() -> None:
    code = "import pytest_vleval, pytest_vleval.cases.sources.hf, sys; print(sorted({'datasets', 'pyarrow'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


SOURCE_SUITE = """
source:
  format: hf
  path: data/vqa
  split: validation
  columns: {id: question_id, question: question, answers: answers, image: image}
defaults: {scorer: vqa_accuracy, threshold: 0.5}
"""


def test_a_dataset_runs_through_the_plugin(fake_project: pytest.Pytester) -> None:
    whole = vqa_dataset(fake_project.path)
    datasets.DatasetDict({"validation": whole}).save_to_disk(fake_project.path / "data" / "vqa")
    fake_project.makefile(".yaml", test_textvqa=SOURCE_SUITE)
    result = fake_project.runpytest("--vl-model=fake", "--vl-json=run.json")
    result.assert_outcomes(passed=3)
    record = json.loads((fake_project.path / "run.json").read_text())
    scores = {case["case_id"]: case["turns"][0]["score"] for case in record["cases"]}
    # "circle" is 2 of 10 human answers: VQA accuracy averages min(1, matches/3) over leave-one-out subsets
    assert scores == {"hf-101": 1.0, "hf-102": pytest.approx(0.6), "hf-103": 1.0}
