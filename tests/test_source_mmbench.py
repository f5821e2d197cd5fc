"""`source: {format: mmbench}`: the OpenCompass/VLMEvalKit TSV (base64 images, shared-image references, the file's
own rotated copies) as multiple-choice cases with CircularEval, English and Chinese."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from pytest_vleval.cases.casefile import CaseFileError, load_case_file

COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "split"]


def _png(colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _rows() -> list[dict[str, str]]:
    red = _png((220, 30, 30))
    return [
        {"index": "0", "question": "What colour is the square?", "hint": "nan", "A": "red", "B": "blue",
         "C": "green", "D": "nan", "answer": "A", "category": "attribute_recognition", "image": red},
        {"index": "1", "question": "图中方块是什么颜色？", "hint": "这是一张简单的图片。", "A": "蓝色", "B": "红色",
         "C": "nan", "D": "nan", "answer": "B", "category": "attribute_recognition", "image": "0"},
        # the file's own rotation of question 0 (OpenCompass's CircularEval layout): left out
        {"index": "1000000", "question": "What colour is the square?", "hint": "nan", "A": "blue", "B": "green",
         "C": "red", "D": "nan", "answer": "C", "category": "attribute_recognition", "image": "0"},
    ]  # fmt: skip


def _write(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _case_file(tmp_path: Path, rows: list[dict[str, str]] | None = None, **write: object) -> Path:
    _write(tmp_path / "MMBench_DEV_EN.tsv", _rows() if rows is None else rows, **write)  # type: ignore[arg-type]
    path = tmp_path / "test_mmbench.yaml"
    path.write_text("source:\n  format: mmbench\n  file: MMBench_DEV_EN.tsv\n", encoding="utf-8")
    return path


def test_rows_become_circular_multiple_choice_cases(tmp_path: Path) -> None:
    cases = {case.id: case for case in load_case_file(_case_file(tmp_path)).cases}
    assert sorted(cases) == ["mmbench-0", "mmbench-1"]  # the rotated copy 1000000 is left out
    english, chinese = cases["mmbench-0"], cases["mmbench-1"]
    assert english.circular and len(english.turns) == 3 and english.tags == ("attribute_recognition",)
    first = english.turns[0]
    assert first.choices == (("A", "red"), ("B", "blue"), ("C", "green")) and first.reference == ("A",)
    assert first.sent(str).endswith(
        "\nA. red\nB. blue\nC. green\nAnswer with the option's letter from the given choices directly."
    )
    assert [t.reference[0] for t in english.turns] == ["A", "C", "B"]
    # MMBench-CN: the hint before the question, the Chinese instruction, the image shared with row 0
    assert (
        chinese.turns[0].sent(str)
        == "这是一张简单的图片。\n图中方块是什么颜色？\nA. 蓝色\nB. 红色\n请直接回答选项字母。"
    )
    assert chinese.images == english.images and english.images[0].is_file()


BACKEND = """
class Knows:
    info = {"device": "cpu", "architecture": "Knows"}

    def __init__(self, spec):
        self.spec = spec

    def generate(self, conversations):
        # answers with the letter of the red option, the way a model that sees a red square would
        out = []
        for c in conversations:
            options = [line for line in c.question.split("\\n") if line[1:3] == ". "]
            out.append(next((f"({line[0]})" for line in options if line[3:] in ("red", "红色")), "A"))
        return out

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    return Knows(spec) if spec.requested == "knows" else None
"""


def test_mmbench_through_the_plugin(pytester: pytest.Pytester) -> None:
    _case_file(pytester.path)
    pytester.makeconftest(BACKEND)
    result = pytester.runpytest("--vl-model=knows", "--vl-no-cache", "--vl-json=run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    record = json.loads((pytester.path / "run.json").read_text(encoding="utf-8"))
    assert [len(c["turns"]) for c in record["cases"]] == [3, 2]  # every rotation is in the record


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer": "D"}, r"line 2 \(index '0'\): 'answer' 'D' must be one of its options A, B, C"),
        ({"image": "7"}, r"line 2 \(index '0'\): 'image' '7' names no row with an image"),
        ({"image": "x" * 80 + "!"}, r"line 2 \(index '0'\): 'image' is not base64"),
        ({"index": "first"}, r"line 2 \(index 'first'\): 'index' must be a whole number"),
    ],
)
def test_a_bad_row_is_named(tmp_path: Path, change: dict[str, str], message: str) -> None:
    rows = _rows()
    rows[0] = {**rows[0], **change}
    with pytest.raises(CaseFileError, match=r"MMBench_DEV_EN.tsv: " + message):
        load_case_file(_case_file(tmp_path, rows))


def test_a_file_without_mmbench_columns_is_named(tmp_path: Path) -> None:
    with pytest.raises(CaseFileError, match=r"missing column\(s\) answer; MMBench TSV columns are"):
        load_case_file(_case_file(tmp_path, columns=[c for c in COLUMNS if c != "answer"]))
