"""OCRBench as a `source:` block: the official OCRBench.json layout, and the official scoring rule.

The rule is checked against a literal transcription of the scoring loop of the official script
(Yuliang-Liu/MultimodalOCR ``OCRBench/example.py``), on answers as real models write them; through the plugin, the
suite's mean score times its size is the official OCRBench score of the same answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vleval.cases.casefile import CaseFileError, load_case_file
from pytest_vleval.cases.sources import SourceError, expand_source
from pytest_vleval.scoring import score, validate_reference
from pytest_vleval.scoring.extract import extract, pipeline_for

from .conftest import make_png


def official_result(dataset_name: str, answers: Any, predict: str) -> int:
    """The official script's loop body for one row, as written there (``predict`` is rebound inside the loop)."""
    result = 0
    if dataset_name == "HME100k":
        if type(answers) == list:  # noqa: E721 (as in the official script)
            for j in range(len(answers)):
                answer = answers[j].strip().replace("\n", " ").replace(" ", "")
                predict = predict.strip().replace("\n", " ").replace(" ", "")
                if answer in predict:
                    result = 1
        else:
            answers = answers.strip().replace("\n", " ").replace(" ", "")
            predict = predict.strip().replace("\n", " ").replace(" ", "")
            if answers in predict:
                result = 1
    else:
        if type(answers) == list:  # noqa: E721
            for j in range(len(answers)):
                answer = answers[j].lower().strip().replace("\n", " ")
                predict = predict.lower().strip().replace("\n", " ")
                if answer in predict:
                    result = 1
        else:
            answers = answers.lower().strip().replace("\n", " ")
            predict = predict.lower().strip().replace("\n", " ")
            if answers in predict:
                result = 1
    return result


def _row(dataset: str, row_id: int, image: str, question: str, answers: Any, kind: str) -> dict[str, Any]:
    return {"dataset_name": dataset, "id": row_id, "image_path": image, "question": question, "answers": answers,
            "type": kind}  # fmt: skip


WRITTEN = "what is written in the image?"
LATEX = "Please write out the expression of the formula in the image using LaTeX format."
# Rows as OCRBench.json has them (ids repeat across datasets: IIIT5K and IC13_857 both have 211), each with the
# answer a real model gave and the official result.
ROWS = [
    (_row("IIIT5K", 2843, "IIIT5K/test/918_1.png", WRITTEN, "CENTRE", "Regular Text Recognition"),
     'The word in the image is "Centre".', 1),
    (_row("IIIT5K", 211, "IIIT5K/test/137_3.png", WRITTEN, "TIMES", "Regular Text Recognition"), "times.", 1),
    (_row("IC13_857", 211, "IC13_857/imgs/000000212.jpg", WRITTEN, "richtungsangabe", "Regular Text Recognition"),
     "RICHTUNGS ANGABE", 0),
    (_row("ESTVQA", 7, "ESTVQA/images/7.jpg", "图中的银行叫什么名字？", ["中国银行"], "Scene Text-centric VQA"),  # noqa: RUF001
     "图中的文字是：中国银行。", 1),  # noqa: RUF001
    (_row("docVQA", 3, "docVQA/val/documents/ffbf0023_4.png", "What is the ratio?", ["0.28", "28%"],
          "Doc-oriented VQA"), "It is 28%.", 1),
    (_row("SROIE", 12, "SROIE/images/X51005568.jpg", "what is the name of the company that issued this receipt?",
          "WOOD LUMBER CO.", "Key Information Extraction"), "Wood Lumber Co", 0),
    (_row("HME100k", 14413, "HME100K/test/test_images/test_17522.jpg", LATEX, ["y _ { 2 } = - 1\n", "y_2 = - 1\n"],
          "Handwritten Mathematical Expression Recognition"), "$$\ny_{2} = -1\n$$", 1),
    (_row("HME100k", 8628, "HME100K/test/test_images/test_10531.jpg", LATEX, "X = \\frac { 1 } { 2 }\n",
          "Handwritten Mathematical Expression Recognition"), "X=\\frac{1}{2}", 1),
    (_row("HME100k", 9001, "HME100K/test/test_images/test_9001.jpg", LATEX, "X = 2\n",
          "Handwritten Mathematical Expression Recognition"), "x = 2", 0),
]  # fmt: skip


def _layout(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """OCRBench/OCRBench.json and OCRBench_Images/ under `root`; returns the json file."""
    rows = [row for row, _, _ in ROWS] if rows is None else rows
    for row in rows:
        make_png(root / "OCRBench_Images" / row["image_path"])
    file = root / "OCRBench" / "OCRBench.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(rows, ensure_ascii=False, indent=4), encoding="utf-8")
    return file


BLOCK = {"format": "ocrbench", "file": "data/OCRBench/OCRBench.json", "images": "data/OCRBench_Images"}


# --- the scorer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "answer", "official"), ROWS, ids=[f"{r['dataset_name']}-{r['id']}" for r, _, _ in ROWS]
)
def test_scorer_is_the_official_rule_on_real_answers(row: dict[str, Any], answer: str, official: int) -> None:
    assert official_result(row["dataset_name"], row["answers"], answer) == official
    options = {"hme": True} if row["dataset_name"] == "HME100k" else {}
    assert score("ocrbench", answer, row["answers"], options).score == official


def test_hme_keeps_case_where_lmms_eval_lower_cases_the_prediction() -> None:
    # lmms-eval lower-cases the HME100k prediction (not the answer): 'X=\frac{1}{2}' would score 0 there.
    assert score("ocrbench", "X=\\frac{1}{2}", "X = \\frac { 1 } { 2 }\n", {"hme": True}).score == 1.0
    assert score("ocrbench", "x=\\frac{1}{2}", "X = \\frac { 1 } { 2 }\n", {"hme": True}).score == 0.0
    # without hme, spaces count and case does not
    assert score("ocrbench", "X=\\frac{1}{2}", "x = \\frac { 1 } { 2 }").score == 0.0


def test_scorer_says_what_it_compared() -> None:
    hit = score("ocrbench", "It says CENTRE.", ["centre"])
    assert hit.score == 1.0 and "'centre' found in the answer (lower-cased)" in hit.detail
    miss = score("ocrbench", "x = 2", "X = 2", {"hme": True})
    assert miss.score == 0.0 and "'x=2'" in miss.detail and "HME100k" in miss.detail


def test_hme_option_is_validated() -> None:
    with pytest.raises(ValueError, match="option 'hme' must be true or false, not 'yes'"):
        validate_reference("ocrbench", ["x"], {"hme": "yes"})
    with pytest.raises(ValueError, match=r"unknown option.*'tau'.*accepted: hme"):
        validate_reference("ocrbench", ["x"], {"tau": 0.5})


def test_default_extraction_only_drops_reasoning() -> None:
    steps = pipeline_for("ocrbench", None, {})
    assert steps == ("thinking",)
    # a full stop that belongs to the answer survives ('period' would have cost this official match)
    assert score("ocrbench", extract("Wood Lumber Co.", steps), "WOOD LUMBER CO.").score == 1.0
    # a wrong final answer is not rescued by a reading the model considered and rejected
    assert score("ocrbench", extract("<think>TIMES? no.</think>TIMER", steps), "TIMES").score == 0.0


@given(st.text(max_size=40), st.lists(st.text(max_size=10), min_size=1, max_size=3), st.booleans(), st.booleans())
def test_scorer_agrees_with_the_official_script_on_any_text(
    prediction: str, answers: list[str], hme: bool, single: bool
) -> None:
    reference: Any = answers[0] if single else answers
    official = official_result("HME100k" if hme else "svt", reference, prediction)
    assert score("ocrbench", prediction, reference, {"hme": hme}).score == official


# --- the format ---------------------------------------------------------------------------------------


def test_rows_expand_into_cases(tmp_path: Path) -> None:
    _layout(tmp_path / "data")
    expanded = expand_source(BLOCK, tmp_path, tmp_path / "store")
    assert expanded.defaults == {"scorer": "ocrbench"}
    ids = [row["id"] for row in expanded.rows]
    assert ids[:3] == ["ocrbench-IIIT5K-2843", "ocrbench-IIIT5K-211", "ocrbench-IC13_857-211"]
    first = expanded.rows[0]
    images = (tmp_path / "data" / "OCRBench_Images").resolve()
    assert first == {
        "id": "ocrbench-IIIT5K-2843",
        "image": str(images / "IIIT5K" / "test" / "918_1.png"),
        "question": WRITTEN,
        "answers": ["CENTRE"],
        "tags": ["regular_text_recognition"],
    }
    hme = [row for row in expanded.rows if row["id"].startswith("ocrbench-HME100k")]
    assert len(hme) == 3 and all(row["options"] == {"hme": True} for row in hme)
    assert all("options" not in row for row in expanded.rows if row not in hme)
    assert expanded.roots == (images,)


def test_rows_are_ordinary_cases(tmp_path: Path) -> None:
    _layout(tmp_path / "data")
    (tmp_path / "ocr.yaml").write_text(
        "source: {format: ocrbench, file: data/OCRBench/OCRBench.json, images: data/OCRBench_Images}\n"
        "defaults: {tags: [ocr]}\n"
    )
    cases = {case.id: case for case in load_case_file(tmp_path / "ocr.yaml").cases}
    centre = cases["ocrbench-IIIT5K-2843"].turns[0]
    assert (centre.scorer, centre.reference, centre.threshold, centre.options) == ("ocrbench", ("CENTRE",), 1.0, {})
    assert centre.prompt.render(WRITTEN) == WRITTEN  # the question is sent as it is
    latex = cases["ocrbench-HME100k-14413"]
    assert latex.turns[0].options == {"hme": True}
    assert latex.tags == ("ocr", "handwritten_mathematical_expression_recognition")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows[1].pop("answers"), r"OCRBench.json: row #1 \(IIIT5K id 211\): no 'answers' \(it has "),
        (lambda rows: rows[2].update(answers=[]), r"row #2 \(IC13_857 id 211\): 'answers' must be a string or a"),
        (lambda rows: rows[0].update(answers=[3]), r"row #0 \(IIIT5K id 2843\): 'answers' must be"),
        (lambda rows: rows[0].update(image_path="../x.png"), r"row #0 .*'image_path' '../x.png' must be a path inside"),
        (lambda rows: rows[0].pop("dataset_name"), r"OCRBench.json: row #0: no 'dataset_name'"),
        (lambda rows: rows.__setitem__(3, "IIIT5K"), r"OCRBench.json: row #3: expected an object, got str"),
        (lambda rows: rows[3].update(id=None), r"row #3: 'id' must be a number or a string, got None"),
    ],
)
def test_a_malformed_row_names_the_file_and_the_row(tmp_path: Path, change: Any, message: str) -> None:
    rows = [dict(row) for row, _, _ in ROWS]
    change(rows)
    _layout(tmp_path / "data", [row for row in rows if isinstance(row, dict) and "image_path" in row])
    (tmp_path / "data" / "OCRBench" / "OCRBench.json").write_text(json.dumps(rows))
    with pytest.raises(SourceError, match=message):
        expand_source(BLOCK, tmp_path, tmp_path / "store")


def test_missing_files_and_keys_are_named(tmp_path: Path) -> None:
    _layout(tmp_path / "data")
    with pytest.raises(SourceError, match=r"source key 'file': .*nope.json does not exist \(OCRBench/OCRBench.json\)"):
        expand_source({**BLOCK, "file": "data/nope.json"}, tmp_path, tmp_path / "store")
    with pytest.raises(SourceError, match=r"source format 'ocrbench' needs images: OCRBench_Images/"):
        expand_source({"format": "ocrbench", "file": BLOCK["file"]}, tmp_path, tmp_path / "store")
    (tmp_path / "data" / "OCRBench" / "OCRBench.json").write_text(json.dumps({"data": []}))
    with pytest.raises(SourceError, match=r"OCRBench.json: expected a list of \{dataset_name, id, image_path"):
        expand_source(BLOCK, tmp_path, tmp_path / "store")
    (tmp_path / "x.yaml").write_text("source: {format: ocrbench, file: data/nope.json, images: data}\n")
    with pytest.raises(CaseFileError, match=r"x.yaml:1: key 'source': source key 'file': .*does not exist"):
        load_case_file(tmp_path / "x.yaml")


# --- through the plugin -------------------------------------------------------------------------------

IMAGE_BACKEND = '''
import json
from pathlib import Path

ANSWERS = json.loads(Path(__file__).with_name("answers.json").read_text(encoding="utf-8"))


class ImageBackend:
    """Answers from answers.json, keyed by the image's path under OCRBench_Images (OCRBench's questions repeat)."""

    def __init__(self, spec):
        self.spec = spec
        self.info = {"device": "cpu", "dtype": "float32", "architecture": "Table"}

    def generate(self, conversations):
        return [ANSWERS[c.images[0].as_posix().split("OCRBench_Images/", 1)[1]] for c in conversations]

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    return ImageBackend(spec)
'''


def test_suite_score_is_the_official_ocrbench_score(pytester: pytest.Pytester) -> None:
    _layout(pytester.path / "data")
    pytester.makefile(".yaml", test_ocrbench="source:\n" + "".join(f"  {k}: {v}\n" for k, v in BLOCK.items()))
    pytester.makeconftest(IMAGE_BACKEND)
    answers = {row["image_path"]: answer for row, answer, _ in ROWS}
    (pytester.path / "answers.json").write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")
    result = pytester.runpytest("--vl-model=table", "--vl-json=run.json", "-p", "no:cacheprovider")
    official = sum(
        official_result(row["dataset_name"], row["answers"], answers[row["image_path"]]) for row, _, _ in ROWS
    )
    result.assert_outcomes(passed=official, failed=len(ROWS) - official)
    record = json.loads((pytester.path / "run.json").read_text())
    (model,) = record["models"]
    assert model["metrics"]["mean_score"] * len(ROWS) == pytest.approx(official, abs=1e-9)
    outcome = {c["case_id"]: c["passed"] for c in record["cases"]}
    assert outcome["ocrbench-IIIT5K-211"] and not outcome["ocrbench-IC13_857-211"]
    deselect = pytester.runpytest("--vl-model=table", "-m", "doc_oriented_vqa", "-p", "no:cacheprovider")
    deselect.assert_outcomes(passed=1, deselected=len(ROWS) - 1)
