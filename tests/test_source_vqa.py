"""VQAv2, TextVQA, DocVQA and ChartQA as `source:` blocks, each from small files in its official layout.

Through the plugin on a backend that answers from a table, each imported suite's mean score equals the number the
format's official evaluation gives on the same answers (written out here from the official definitions).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_vleval.cases.casefile import CaseFileError, load_case_file

from .conftest import make_png

TABLE_BACKEND = '''
import json
from pathlib import Path

ANSWERS = json.loads(Path(__file__).with_name("answers.json").read_text())


class TableBackend:
    """Answers each question from answers.json (keyed by the question, without the task's instruction)."""

    def __init__(self, spec):
        self.spec = spec
        self.info = {"device": "cpu", "dtype": "float32", "architecture": "Table"}

    def generate(self, conversations):
        return [ANSWERS.get(c.question.split("\\n")[0], "") for c in conversations]

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    return TableBackend(spec)
'''


def vqa_accuracy_official(answer: str, humans: list[str]) -> float:
    """VQAv2's accuracy (vqaEval.py) on already-normalised answers: min(1, matches / 3) averaged over the ten
    leave-one-annotator-out subsets."""
    scores = []
    for i in range(len(humans)):
        others = humans[:i] + humans[i + 1 :]
        scores.append(min(1.0, sum(other == answer for other in others) / 3))
    return sum(scores) / len(scores)


def _vqav2_layout(root: Path) -> dict[str, list[str]]:
    """A VQAv2 val2014 layout with three questions; returns question -> the ten human answers."""
    split = ["yes"] * 2 + ["no"] * 2 + ["maybe"] * 2 + ["round"] * 2 + ["oval", "ball"]  # no answer reaches 0.9
    humans = {"What colour is it?": ["red"] * 10, "Is it round?": split, "How many?": ["2"] * 10}
    questions, annotations = [], []
    for n, (question, answers) in enumerate(humans.items()):
        image_id = 262148 + n
        questions.append({"image_id": image_id, "question": question, "question_id": image_id * 1000})
        annotations.append(
            {
                "question_id": image_id * 1000,
                "image_id": image_id,
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)
                ],
                "multiple_choice_answer": answers[-1],
            }
        )
        make_png(root / "val2014" / f"COCO_val2014_{image_id:012d}.png")
        (root / "val2014" / f"COCO_val2014_{image_id:012d}.png").rename(
            root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg"
        )
    (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({"data_subtype": "val2014", "questions": questions})
    )
    (root / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return humans


VQAV2_SOURCE = """source:
  format: vqav2
  questions: data/v2_OpenEnded_mscoco_val2014_questions.json
  annotations: data/v2_mscoco_val2014_annotations.json
  images: data/val2014/
"""


def _run(project: pytest.Pytester, answers: dict[str, str]) -> dict:
    project.makeconftest(TABLE_BACKEND)
    (project.path / "answers.json").write_text(json.dumps(answers))
    result = project.runpytest("--vl-model=table", "--vl-json=run.json", "-p", "no:cacheprovider")
    record = json.loads((project.path / "run.json").read_text())
    assert result.ret in (0, 1), result.stdout.str()
    return record


def test_vqav2_scores_as_the_official_evaluation(pytester: pytest.Pytester) -> None:
    humans = _vqav2_layout(pytester.path / "data")
    pytester.makefile(".yaml", test_vqav2=VQAV2_SOURCE)
    answers = {"What colour is it?": "red", "Is it round?": "yes", "How many?": "3"}
    record = _run(pytester, answers)
    official = sum(vqa_accuracy_official(answers[q], h) for q, h in humans.items()) / len(humans)
    assert [c["case_id"] for c in record["cases"]] == ["vqav2-262148000", "vqav2-262149000", "vqav2-262150000"]
    (model,) = record["models"]
    assert model["metrics"]["mean_score"] == pytest.approx(official, abs=1e-9)  # (1 + 0.6 + 0) / 3
    # no answer has 3 annotators: the row passes at the best its answers allow (0.6), not a collection error
    assert [c["passed"] for c in record["cases"]] == [True, True, False]


def test_vqav2_rows_are_ordinary_cases_with_the_vqa_prompt(pytester: pytest.Pytester) -> None:
    _vqav2_layout(pytester.path / "data")
    (pytester.path / "test_vqav2.yaml").write_text(VQAV2_SOURCE + "defaults: {tags: [vqa]}\n")
    case_file = load_case_file(pytester.path / "test_vqav2.yaml")
    first = case_file.cases[0]
    assert first.images[0].name == "COCO_val2014_000000262148.jpg"
    assert first.turns[0].scorer == "vqa_accuracy" and first.turns[0].prompt.task == "vqa"
    assert first.tags == ("vqa",)
    pytester.makeconftest(TABLE_BACKEND)
    (pytester.path / "answers.json").write_text(json.dumps({"What colour is it?": "Red."}))
    result = pytester.runpytest("--vl-model=table", "-k", "262148000", "-m", "vqa", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=2)  # 'Red.' passes: the default answer steps come first


def test_sampling_is_stable_and_says_when_the_dataset_is_too_small(tmp_path: Path) -> None:
    _vqav2_layout(tmp_path / "data")
    (tmp_path / "a.yaml").write_text(VQAV2_SOURCE + "  sample: 2\n  seed: 7\n")
    picked = [c.id for c in load_case_file(tmp_path / "a.yaml").cases]
    assert len(picked) == 2
    # the same rows, reordered in the file, give the same pick
    questions = tmp_path / "data" / "v2_OpenEnded_mscoco_val2014_questions.json"
    data = json.loads(questions.read_text())
    data["questions"].reverse()
    questions.write_text(json.dumps(data))
    assert sorted(c.id for c in load_case_file(tmp_path / "a.yaml").cases) == sorted(picked)
    (tmp_path / "b.yaml").write_text(VQAV2_SOURCE + "  sample: 5\n")
    with pytest.raises(
        CaseFileError, match=r"b.yaml:2: key 'source': source key 'sample': 5 rows asked for, but the dataset has 3"
    ):
        load_case_file(tmp_path / "b.yaml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"questions": "data/missing.json"}, r"source key 'questions': .*missing.json does not exist"),
        ({"format": "vqa2"}, r"unknown source format 'vqa2' \(did you mean 'vqav2'\?\)"),
        (
            {"format": "mmbench"},
            r"source format 'mmbench' has no key 'questions'; its keys: format, sample, seed, file",
        ),
        ({"colour": "red"}, r"source format 'vqav2' has no key 'colour'; its keys: format, sample, seed, questions"),
    ],
)
def test_bad_source_blocks_name_the_key(tmp_path: Path, change: dict, message: str) -> None:
    _vqav2_layout(tmp_path / "data")
    block = {
        "format": "vqav2",
        "questions": "data/v2_OpenEnded_mscoco_val2014_questions.json",
        "annotations": "data/v2_mscoco_val2014_annotations.json",
        "images": "data/val2014/",
        **change,
    }
    (tmp_path / "x.yaml").write_text("source:\n" + "".join(f"  {k}: {v}\n" for k, v in block.items()))
    with pytest.raises(CaseFileError, match=message):
        load_case_file(tmp_path / "x.yaml")


@pytest.mark.parametrize("streamed", [True, False], ids=["ijson", "json"])
def test_a_malformed_dataset_file_names_the_file_and_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    if streamed:
        pytest.importorskip("ijson")
    else:
        monkeypatch.setitem(sys.modules, "ijson", None)  # the fallback without the `stream` extra
    _vqav2_layout(tmp_path / "data")
    questions = tmp_path / "data" / "v2_OpenEnded_mscoco_val2014_questions.json"
    data = json.loads(questions.read_text())
    del data["questions"][1]["question"]
    questions.write_text(json.dumps(data))
    (tmp_path / "x.yaml").write_text(VQAV2_SOURCE)
    with pytest.raises(
        CaseFileError, match=r"questions.json: question #1: no 'question' \(it has image_id, question_id\)"
    ):
        load_case_file(tmp_path / "x.yaml")
    questions.write_text("{not json")
    with pytest.raises(CaseFileError, match=r"questions.json: not valid JSON \((lexical error|line 1, column 2)"):
        load_case_file(tmp_path / "x.yaml")


def test_a_row_whose_image_is_missing_fails_alone(pytester: pytest.Pytester) -> None:
    _vqav2_layout(pytester.path / "data")
    (pytester.path / "data" / "val2014" / "COCO_val2014_000000262149.jpg").unlink()
    pytester.makefile(".yaml", test_vqav2=VQAV2_SOURCE)
    record = _run(pytester, {"What colour is it?": "red", "How many?": "2"})
    outcome = {c["case_id"]: c["passed"] for c in record["cases"]}
    assert outcome == {"vqav2-262148000": True, "vqav2-262149000": False, "vqav2-262150000": True}
    (missing,) = [c for c in record["cases"] if c["case_id"] == "vqav2-262149000"]
    assert "COCO_val2014_000000262149.jpg" in json.dumps(missing)


def test_textvqa_docvqa_and_chartqa_score_as_their_official_metrics(pytester: pytest.Pytester) -> None:
    root = pytester.path / "data"
    make_png(root / "train_images" / "abc123.png").rename(root / "train_images" / "abc123.jpg")
    (root / "TextVQA_0.5.1_val.json").write_text(
        json.dumps({"dataset_type": "val", "data": [{"question": "What brand?", "image_id": "abc123",
                    "question_id": 34602, "answers": ["nokia"] * 7 + ["nokla"] * 3}]})
    )  # fmt: skip
    make_png(root / "val" / "documents" / "pybv0228_81.png")
    (root / "val" / "val_v1.0.json").write_text(
        json.dumps({"dataset_split": "val", "data": [{"questionId": 49153, "question": "What is the ratio?",
                    "image": "documents/pybv0228_81.png", "answers": ["0.28", "28%"]}]})
    )  # fmt: skip
    make_png(root / "test" / "png" / "41699051005347.png")
    (root / "test" / "test_human.json").write_text(
        json.dumps([{"imgname": "41699051005347.png", "query": "What is the peak value?", "label": "1.2"}])
    )
    pytester.makefile(
        ".yaml",
        test_textvqa="source: {format: textvqa, file: data/TextVQA_0.5.1_val.json, images: data/train_images}\n",
        test_docvqa="source: {format: docvqa, file: data/val/val_v1.0.json}\n",
        test_chartqa="source: {format: chartqa, file: data/test/test_human.json, images: data/test/png}\n",
    )
    answers = {"What brand?": "nokla", "What is the ratio?": "0.27", "What is the peak value?": "1.25"}
    record = _run(pytester, answers)
    scores = {c["case_id"].split("-")[0]: c["score"] for c in record["cases"]}
    # TextVQA: VQA accuracy, 3 of 10 said 'nokla'. DocVQA: ANLS = 1 - edit distance / length when above 0.5,
    # best over the answers ('0.27' vs '0.28': 1 - 1/4). ChartQA: relaxed accuracy, within 5% of 1.2.
    assert scores["textvqa"] == pytest.approx(vqa_accuracy_official("nokla", ["nokia"] * 7 + ["nokla"] * 3), abs=1e-9)
    assert scores["docvqa"] == pytest.approx(0.75, abs=1e-9)
    assert scores["chartqa"] == 1.0
