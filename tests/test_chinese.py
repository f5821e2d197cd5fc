"""Chinese answers and captions: each normalisation rule of the scorers, the Chinese format instruction, caption
metrics on jieba/character tokens against pycocoevalcap run directly, and PTBTokenizer exactly as COCOEvalCap."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.cases.golden import GoldenSetError, GoldenSetWarning, load_golden_set
from pytest_vleval.cases.prompts import SHORT_ANSWER, SHORT_ANSWER_ZH, task_prompt
from pytest_vleval.metrics import evaluate_captions, java_status
from pytest_vleval.scoring import cjk
from pytest_vleval.scoring.caption_tokens import char_tokenize, jieba_tokenize
from pytest_vleval.scoring.extract import extract, pipeline_for
from pytest_vleval.scoring.registry import score
from pytest_vleval.scoring.vqa import vqa_accuracy

needs_java = pytest.mark.skipif(not java_status().usable, reason="needs Java (PTBTokenizer, METEOR): java not on PATH")
needs_jieba = pytest.mark.skipif(importlib.util.find_spec("jieba") is None, reason="needs jieba (the zh extra)")


# --- normalisation rules, one by one -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＲＥＤ", "RED"),
        ("３个", "3个"),
        ("红色！", "红色!"),
        ("（左边）", "(左边)"),
        ("ｂｌｕｅ　ｓｑｕａｒｅ", "blue square"),
    ],
)
def test_nfkc_makes_full_width_forms_ascii(text: str, expected: str) -> None:
    assert cjk.nfkc(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("红色。", "红色."),
        ("红、绿", "红,绿"),
        ("“红色”", '"红色"'),
        ("《图》", "<图>"),
        ("【注】", "[注]"),
        ("好，", "好,"),
    ],
)
def test_chinese_punctuation_reads_as_ascii(text: str, expected: str) -> None:
    assert cjk.to_ascii_punctuation(text) == expected


@pytest.mark.parametrize(
    ("numeral", "value"),
    [("三", 3), ("十", 10), ("十二", 12), ("二十", 20), ("二十三", 23), ("两", 2), ("一百零五", 105), ("两千", 2000),
     ("三万五千", 35000), ("一亿三千万", 130_000_000), ("二〇二四", 2024), ("零", 0)],
)  # fmt: skip
def test_chinese_numerals(numeral: str, value: int) -> None:
    assert cjk.chinese_number(numeral) == value


@pytest.mark.parametrize("text", ["三四十", "红", "", "3"])
def test_not_chinese_numerals(text: str) -> None:
    assert cjk.chinese_number(text) is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("三个", "3"), ("两只", "2"), ("十二", "12"), ("四根。", "4"), ("3个", "3"), ("５", "5"), ("红色。", "红色."),
     ("三角形", "三角形"), ("2.5", "2.5")],
)  # fmt: skip
def test_cjk_answer_step(answer: str, expected: str) -> None:
    assert extract(answer, ["cjk"]) == expected


@pytest.mark.parametrize(
    ("prediction", "expected", "ok"),
    [
        ("三个", "3", True),
        ("十二", "12", True),
        ("两只", "2", True),
        ("图中有两个三角形。", "2", True),  # 三角形 is a shape, not a 3
        ("图中有三个圆形", "3", True),
        ("一样多，都是四个", "4", True),  # a lone 一 inside a word is not a number
        ("３", "3", True),  # full-width digit
        ("三个", "4", False),
        ("3", "三", True),  # a Chinese target is a number too
        ("三个", "三个", True),
    ],
)
def test_numeric_reads_chinese_counts(prediction: str, expected: str, ok: bool) -> None:
    assert score("numeric", prediction, [expected]).score == float(ok)


def test_numeric_without_any_number_is_a_parse_failure() -> None:
    result = score("numeric", "很多", ["3"])
    assert result.score == 0.0 and result.parse_failed


@pytest.mark.parametrize(
    ("prediction", "expected", "ok"),
    [
        ("这是红色的圆形", "红色", True),  # no word boundary in Chinese
        ("红色", "红色", True),
        ("这是蓝色的圆形", "红色", False),
        ("颜色是ＲＥＤ。", "red", True),  # NFKC, and a Latin word inside Chinese text
        ("这是red的", "red", True),
        ("reddish", "red", False),  # English keeps its word boundaries
        ("a red circle", "red circle", True),
    ],
)
def test_contains_without_word_boundaries_for_cjk(prediction: str, expected: str, ok: bool) -> None:
    assert score("contains", prediction, [expected]).score == float(ok)


def test_contains_all_in_a_chinese_caption() -> None:
    caption = "一个红色的菱形在一个绿色的正方形的左边"
    assert score("contains", caption, ["红色", "菱形", "绿色", "正方形"], {"all": True}).score == 1.0
    assert score("contains", caption, ["红色", "圆形"], {"all": True}).score == 0.0


@pytest.mark.parametrize(
    ("scorer", "prediction", "expected", "ok"),
    [
        ("exact", "红色。", "红色", True),
        ("exact", "ＲＥＤ", "red", True),
        ("exact", "红色的", "红色", False),
        ("any_of", "“红色”。", "红色", True),
        ("any_of", "红色，", "红色", True),
        ("exact_normalized", "【红色】", "红色", True),
    ],
)
def test_exact_scorers_on_chinese(scorer: str, prediction: str, expected: str, ok: bool) -> None:
    assert score(scorer, prediction, [expected]).score == float(ok)


ANNOTATORS_ZH = ["红色"] * 8 + ["红", "大红色"]


@pytest.mark.parametrize(
    ("prediction", "accuracy"),
    [("红色", 1.0), ("红色。", 1.0), ("“红色”", 1.0), ("ＲＥＤ", 0.0), ("红", 0.3), ("蓝色", 0.0), (" 红 色 ", 1.0)],
)
def test_vqa_accuracy_zh_mode(prediction: str, accuracy: float) -> None:
    assert vqa_accuracy(prediction, ANNOTATORS_ZH, mode="zh") == pytest.approx(accuracy)


def test_vqa_accuracy_zh_mode_counts() -> None:
    answers = ["3"] * 6 + ["三个"] * 2 + ["三", "4"]
    assert vqa_accuracy("三个", answers, mode="zh") == 1.0
    assert vqa_accuracy("3个。", answers, mode="zh") == 1.0
    # The official English rules do not apply in zh mode: no article or number-word rewriting.
    assert vqa_accuracy("the three", ["three"] * 10, mode="zh") == 0.0
    assert vqa_accuracy("the three", ["three"] * 10, mode="evalai") == 1.0


def test_vqa_accuracy_zh_mode_answer_steps_and_detail() -> None:
    assert "evalai" not in pipeline_for("vqa_accuracy", None, {"mode": "zh"})
    result = score("vqa_accuracy", "红色", ANNOTATORS_ZH, {"mode": "zh"})
    assert result.score == 1.0 and "Chinese answer normalisation" in result.detail


def test_official_modes_unchanged_on_english() -> None:
    answers = ["yes"] * 10
    assert vqa_accuracy("Yes", answers) == 0.0  # unanimous: compared raw, the official rule
    assert vqa_accuracy("Yes", answers, mode="evalai") == 1.0


def test_chinese_question_gets_the_chinese_instruction() -> None:
    assert task_prompt("vqa", "图中是什么颜色？") == "图中是什么颜色？" + SHORT_ANSWER_ZH
    assert task_prompt("count", "图中有几个圆形？") == "图中有几个圆形？" + SHORT_ANSWER_ZH
    assert task_prompt("vqa", "What colour is it?") == "What colour is it?" + SHORT_ANSWER


# --- caption metrics on Chinese tokens ----------------------------------------------------------------------

REFS_ZH = {
    "1": ["一个红色的圆形", "图中有一个红色的圆形。", "红色圆形"],
    "2": [
        "一个蓝色的正方形在一个绿色的三角形的左边",
        "蓝色正方形在绿色三角形左边",
        "左边是蓝色的正方形，右边是绿色的三角形",
    ],
    "3": ["一个黄色的菱形", "黄色的菱形", "图中是一个黄色菱形。"],
}
CANDS_ZH = {"1": "一个红色的圆形。", "2": "一个蓝色的正方形在一个绿色的圆形的左边", "3": "一个紫色的菱形"}


def _direct(tokenizer: Any) -> dict[str, float]:
    """pycocoevalcap's BLEU, ROUGE_L and CIDEr run directly on `tokenizer`'s output."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {k: [tokenizer(c) for c in refs] for k, refs in REFS_ZH.items()}
    res = {k: [tokenizer(CANDS_ZH[k])] for k in REFS_ZH}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"Bleu_{n + 1}": bleu[n] for n in range(4)}
    out["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    return out


def test_char_tokens() -> None:
    assert char_tokenize("一个红色的圆形。") == "一 个 红 色 的 圆 形"
    assert char_tokenize("ＯＫ，3个Apples！") == "ok 3 个 apples"


@needs_jieba
def test_jieba_tokens() -> None:
    assert (
        jieba_tokenize("一个红色的圆形在一个绿色的正方形的左边。") == "一个 红色 的 圆形 在 一个 绿色 的 正方形 的 左边"
    )


@pytest.mark.parametrize("tokenize", ["char", pytest.param("jieba", marks=needs_jieba)])
def test_chinese_caption_metrics_equal_pycocoevalcap_directly(tokenize: str, tmp_path: Path) -> None:
    scores = evaluate_captions(REFS_ZH, CANDS_ZH, tokenize=tokenize, cache_dir=tmp_path)
    direct = _direct(char_tokenize if tokenize == "char" else jieba_tokenize)
    assert scores.tokenizer == tokenize
    assert set(scores.corpus) == set(direct)
    for metric, value in direct.items():
        assert math.isclose(scores.corpus[metric], value, rel_tol=0, abs_tol=1e-9), metric
    assert set(scores.skipped) == {"METEOR", "SPICE"}
    assert "English" in scores.skipped["METEOR"] and tokenize in scores.skipped["METEOR"]


def test_ptb_on_chinese_is_meaningless_which_is_why_the_warning_exists(tmp_path: Path) -> None:
    """PTBTokenizer keeps a Chinese sentence whole: a near-identical caption gets BLEU-1 0 on a one-token match."""
    from pytest_vleval.metrics import fallback_tokenize

    assert fallback_tokenize("一个红色的圆形在一个绿色的正方形的左边") == "一个红色的圆形在一个绿色的正方形的左边"
    scores = evaluate_captions(REFS_ZH, CANDS_ZH, tokenize="char", metrics=["CIDEr"], cache_dir=tmp_path)
    assert scores.corpus["CIDEr"] > 0.5


def _golden(tmp_path: Path, manifest: str, refs: dict[str, list[str]] | None = None) -> Path:
    import json

    from PIL import Image

    refs = refs or REFS_ZH
    (tmp_path / "images").mkdir(exist_ok=True)
    images, annotations = [], []
    for i, key in enumerate(refs):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{key}.png")
        images.append({"id": int(key), "file_name": f"{key}.png"})
        annotations += [{"id": 10 * i + j, "image_id": int(key), "caption": c} for j, c in enumerate(refs[key])]
    (tmp_path / "captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    (tmp_path / "golden.yaml").write_text(manifest)
    return tmp_path / "golden.yaml"


BASE = "prompt: 用一句话描述这张图片。\nreferences: captions.json\nimages_dir: images\n"


def test_golden_set_with_chinese_references_and_ptb_warns(tmp_path: Path) -> None:
    with pytest.warns(GoldenSetWarning, match=r"Chinese .* tokenize is ptb.*tokenize: jieba .*tokenize: char"):
        load_golden_set(_golden(tmp_path, BASE + "thresholds: {CIDEr: 0.5}\n"))


def test_golden_set_tokenize_char_loads_quietly(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    golden = load_golden_set(_golden(tmp_path, BASE + "tokenize: char\nthresholds: {CIDEr: 0.5}\n"))
    assert golden.tokenize == "char" and not [w for w in recwarn if issubclass(w.category, GoldenSetWarning)]


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        ("tokenize: spacy\n", "tokenize", "must be one of ptb, char, jieba"),
        ("tokenize: char\nthresholds: {METEOR: 0.2}\n", "thresholds.METEOR", "English"),
        ("tokenize: jieba\nthresholds: {SPICE: 0.2}\n", "thresholds.SPICE", "English"),
    ],
)
def test_golden_set_tokenize_errors(tmp_path: Path, extra: str, key: str, message: str) -> None:
    with pytest.raises(GoldenSetError, match=message) as info:
        load_golden_set(_golden(tmp_path, BASE + extra))
    assert info.value.key == key


def test_golden_set_jieba_missing_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jieba" else real(name, *a))
    with pytest.raises(GoldenSetError, match=r"jieba is not installed: pip install 'pytest-vleval\[zh\]'"):
        load_golden_set(_golden(tmp_path, BASE + "tokenize: jieba\n"))


# --- PTBTokenizer exactly as COCOEvalCap runs it ------------------------------------------------------------

# PTBTokenizer reads "no." at the end of a line as the word "no." when the next line starts with a digit, and as
# "no" + "." otherwise (then the "." is dropped as punctuation). COCOEvalCap tokenises the references, then the
# candidates, in its image order: candidate 2 is followed by candidate 1 ("5 ..."), so it keeps "no.". Tokenised in
# one call with the keys sorted, it is the last line and becomes "no", which matches the references' "no".
ORDER_REFS = {
    2: ["a red sign that says no", "a stop sign saying no", "a sign with the word no on it"],
    1: ["five people standing near a sign", "5 people stand near a street sign", "people near a sign"],
}
ORDER_CANDS = {2: "a red sign that says no.", 1: "5 people stand near a sign"}


class _Coco:
    """The two things COCOEvalCap reads of a pycocotools COCO object."""

    def __init__(self, captions: dict[int, list[str]]) -> None:
        self.imgToAnns = {k: [{"image_id": k, "caption": c} for c in v] for k, v in captions.items()}

    def getImgIds(self) -> list[int]:
        return list(self.imgToAnns)


@pytest.fixture(scope="module")
def cocoevalcap_scores() -> dict[str, float]:
    """COCOEvalCap.evaluate() itself, SPICE left out (it downloads CoreNLP)."""
    import pycocoevalcap.eval as coco_eval

    class NoSpice:
        def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
            return 0.0, [0.0] * len(gts)

        def method(self) -> str:
            return "SPICE"

    original = coco_eval.Spice
    coco_eval.Spice = NoSpice  # type: ignore[assignment,misc]
    try:
        evaluator = coco_eval.COCOEvalCap(_Coco(ORDER_REFS), _Coco({k: [v] for k, v in ORDER_CANDS.items()}))
        evaluator.evaluate()
    finally:
        coco_eval.Spice = original  # type: ignore[misc]
    return {k: v for k, v in evaluator.eval.items() if k != "SPICE"}


@needs_java
def test_the_order_case_really_depends_on_the_order(tmp_path: Path) -> None:
    from pytest_vleval.metrics import ptb_tokenize

    java = str(java_status().path)
    sorted_one_call = [*ORDER_REFS[1], *ORDER_REFS[2], ORDER_CANDS[1], ORDER_CANDS[2]]
    assert ptb_tokenize(sorted_one_call, java=java, work_dir=tmp_path)[-1] == "a red sign that says no"
    assert ptb_tokenize([ORDER_CANDS[2], ORDER_CANDS[1]], java=java, work_dir=tmp_path)[0] == "a red sign that says no."


@needs_java
def test_caption_metrics_equal_cocoevalcap_bit_for_bit(cocoevalcap_scores: dict[str, float], tmp_path: Path) -> None:
    ours = evaluate_captions(ORDER_REFS, ORDER_CANDS, cache_dir=tmp_path)
    assert ours.tokenizer == "ptb"
    assert set(cocoevalcap_scores) <= set(ours.corpus)
    for metric, value in cocoevalcap_scores.items():
        assert ours.corpus[metric] == value, metric


# --- the bundled Chinese suite on the built-in models ------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not (REPO / "test_cases" / "zh").is_dir() or not (REPO / "golden" / "zh").is_dir(),
    reason="the bundled Chinese suite is written by python -m pytest_vleval.builtin.make_suite",
)
@needs_jieba
@pytest.mark.parametrize("model", ["tiny", "tiny-v0"])
def test_chinese_suite_passes_on_tiny_and_fails_on_tiny_v0(model: str, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "pytest", "test_cases/zh", "golden/zh", "-p", "no:cacheprovider", "-q",
               f"--vl-model={model}", "--vl-device=cpu", "--vl-no-cache", f"--vl-json={tmp_path / 'run.json'}"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200", "VLEVAL_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    record = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    golden = {m: v for g in record["golden"] for m, v in g["corpus"].items()}
    assert record["golden"][0]["tokenizer"] == "jieba"
    if model == "tiny":
        assert result.returncode == 0, result.stdout[-3000:]
        assert len(record["cases"]) >= 50 and all(c["passed"] for c in record["cases"])
        assert golden["CIDEr"] > 1.0
    else:
        assert result.returncode == 1, result.stdout[-3000:]
        failed = [c for c in record["cases"] if not c["passed"]]
        assert len(failed) > len(record["cases"]) // 3
        assert any("test_count.yaml" in c["suite"] for c in failed)  # 三个 read as 3 and found wrong, not unparsable


def test_a_right_chinese_answer_in_a_sentence_is_a_format_issue() -> None:
    from pytest_vleval.cases.fields import Turn
    from pytest_vleval.scoring.base import ScoreContext
    from pytest_vleval.scoring.diagnosis import format_issue

    turn = Turn("图中的形状是什么颜色？", "vqa_accuracy", tuple(ANNOTATORS_ZH), "answers", 0.9, options={"mode": "zh"})
    issue = format_issue(turn, "图中的形状是红色的。", ScoreContext())
    assert issue is not None and "'红色' appears in a longer answer" in issue
    assert format_issue(turn, "图中的形状是蓝色的。", ScoreContext()) is None


def test_format_diagnosis_reads_full_width_answers_as_contains_does() -> None:
    from pytest_vleval.cases.fields import Turn
    from pytest_vleval.scoring.base import ScoreContext
    from pytest_vleval.scoring.diagnosis import format_issue

    turn = Turn("What colour is it?", "exact", ("red",), "expected", 1.0)
    assert score("contains", "It is ＲＥＤ.", ["red"]).score == 1.0
    assert format_issue(turn, "It is ＲＥＤ.", ScoreContext()) is not None


def test_reachable_threshold_uses_the_modes_normalisation(tmp_path: Path) -> None:
    """Three annotators who wrote 3, 三个 and 三 agree in mode zh (best 0.67), not under the English rules (0.22)."""
    from PIL import Image

    from pytest_vleval.cases.casefile import CaseFileError, load_case_file

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    case = "  - {id: c, image: a.png, question: 图中有几个？, answers: ['3', 三个, 三], threshold: 0.6%s}\n"
    (tmp_path / "test_zh.yaml").write_text(
        "defaults: {scorer: vqa_accuracy}\ncases:\n" + case % ", options: {mode: zh}"
    )
    assert load_case_file(tmp_path / "test_zh.yaml").cases[0].turns[0].threshold == 0.6
    (tmp_path / "test_en.yaml").write_text("defaults: {scorer: vqa_accuracy}\ncases:\n" + case % "")
    with pytest.raises(CaseFileError, match=r"0\.6 cannot be reached with 3 answers"):
        load_case_file(tmp_path / "test_en.yaml")
