"""The bundled suite holds for the way real instruction-tuned models answer, not only for the built-in model.

``realistic_backend.py`` answers the suite from its own ground truth in real models' styles (capitalised with a
full stop, bold, quoted, after a reasoning block, sentences where no format instruction is given, grounding as
a fenced JSON list of labelled boxes or in the family's own tags, two-sentence captions). The right content must
pass every case and golden metric; the same styles with wrong content must fail them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_vleval.backends.families import GROUNDING_PROMPTS

ROOT = Path(__file__).resolve().parents[1]
BACKEND = Path(__file__).with_name("realistic_backend.py")


@pytest.fixture
def suite_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The bundled test_cases/ and golden/shapes, with the realistic backend as the conftest. No Java: the
    pure-Python tokenizer, and METEOR reported as not run (the floors with Java: the last test here)."""
    shutil.copytree(ROOT / "test_cases", pytester.path / "test_cases")
    shutil.copytree(ROOT / "golden" / "shapes", pytester.path / "golden" / "shapes")
    shutil.copytree(ROOT / "golden" / "zh", pytester.path / "golden" / "zh")
    pytester.makeconftest(BACKEND.read_text())
    empty = pytester.path / "no-java-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return pytester


def _cases() -> int:
    import yaml

    files = (ROOT / "test_cases").rglob("test_*.yaml")  # test_cases/zh/ too
    return sum(len(yaml.safe_load(p.read_text(encoding="utf-8"))["cases"]) for p in files)


# Golden metrics gated without Java: CIDEr of golden/shapes (its METEOR is skipped), CIDEr and Bleu_4 of golden/zh.
GOLDEN_GATES = 3


def test_real_answer_styles_pass_the_whole_bundled_suite(suite_project: pytest.Pytester) -> None:
    n = _cases()
    result = suite_project.runpytest(
        "test_cases", "golden", "--vl-model=realistic-qwen3", "--vl-no-cache", "--vl-json=run.json", "-p",
        "no:cacheprovider",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes["passed"] == n + GOLDEN_GATES  # the cases and the golden gates; METEOR is skipped without Java
    record = json.loads((suite_project.path / "run.json").read_text())
    turns = [t for c in record["cases"] for t in c["turns"]]
    # The answers really are in real models' styles, and what was scored is stored beside them.
    assert any(t["answer"].startswith("<think>") for t in turns)
    assert any(t["answer"].startswith("**") for t in turns)
    assert any(t["answer"].startswith("```json") for t in turns)
    assert sum(t["answer"] != t["extracted"] for t in turns) > n // 3
    # Every question carried its format instruction; grounding went out in Qwen3-VL's own words.
    grounding = [t for c in record["cases"] if "grounding" in c["suite"] for t in c["turns"]]
    assert grounding and all(t["prompt"].startswith("Locate every object that matches") for t in grounding)
    others = [t for c in record["cases"] if "grounding" not in c["suite"] for t in c["turns"]]
    assert all(t["prompt"] != t["question"] or "caption" in c["suite"] for c in record["cases"] for t in c["turns"])
    assert others
    # Chinese questions went out with the Chinese instruction, and Chinese answers were scored as such.
    chinese = [t for c in record["cases"] if "/zh/" in c["suite"] and "caption" not in c["suite"] for t in c["turns"]]
    assert chinese and all(t["prompt"].endswith("请用单个词或短语回答问题。") for t in chinese)
    assert any(t["answer"].endswith("个。") for t in chinese) and any(t["answer"].startswith("「") for t in chinese)


def test_wrong_content_in_real_styles_fails_the_bundled_suite(suite_project: pytest.Pytester) -> None:
    n = _cases()
    result = suite_project.runpytest(
        "test_cases", "golden", "--vl-model=wrong-qwen3", "--vl-no-cache", "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == n + GOLDEN_GATES, result.stdout.str()[-3000:]  # every case, and the golden floors
    # Wrong content is a wrong answer, not a format problem.
    assert "format failures" not in result.stdout.str()


@pytest.mark.parametrize("family", ["qwen2", "internvl", "llava", "cogvlm", "minigpt", "qwenvl", "generic"])
def test_grounding_in_each_family_convention(suite_project: pytest.Pytester, family: str) -> None:
    """Each family is asked in its own words and its boxes read in its own convention."""
    result = suite_project.runpytest(
        "test_cases/test_grounding.yaml", f"--vl-model=realistic-{family}", "--vl-no-cache", "--vl-json=run.json",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] > 0, result.stdout.str()[-2000:]
    record = json.loads((suite_project.path / "run.json").read_text())
    name = {"qwen2": "Qwen2-VL", "internvl": "InternVL", "llava": "LLaVA", "cogvlm": "CogVLM",
            "minigpt": "MiniGPT-v2", "qwenvl": "Qwen-VL", "generic": "generic"}[family]  # fmt: skip
    for case in record["cases"]:
        (turn,) = case["turns"]
        assert turn["prompt"] == GROUNDING_PROMPTS[name].replace("{ref}", turn["question"].removeprefix("refer: "))
    wrong = suite_project.runpytest(
        "test_cases/test_grounding.yaml", f"--vl-model=wrong-{family}", "--vl-no-cache", "-p", "no:cacheprovider"
    )
    assert wrong.parseoutcomes()["failed"] == outcomes["passed"]


def test_without_format_instructions_real_answers_are_format_failures(suite_project: pytest.Pytester) -> None:
    """The same suite with its instructions removed: sentences fail the official VQA metric, and the failures
    say the right answer is there and are counted apart from wrong answers."""
    colour = (suite_project.path / "test_cases" / "test_colour.yaml").read_text()
    (suite_project.path / "test_cases" / "test_colour.yaml").write_text(colour.replace("  task: vqa\n", ""))
    result = suite_project.runpytest(
        "test_cases/test_colour.yaml", "--vl-model=realistic-qwen3", "--vl-no-cache", "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] > 0
    result.stdout.fnmatch_lines(
        [
            "*format:*the expected answer '*' appears in a longer answer: add a format instruction*",
            f"*test_colour.yaml*format failures: {outcomes['failed']} (right content, wrong form)",
        ]
    )


def test_golden_floors_with_the_official_tokenizer_and_meteor(pytester: pytest.Pytester) -> None:
    """With Java: PTBTokenizer and METEOR as COCOEvalCap runs them (and jieba for golden/zh). Two-sentence captions
    naming the shapes pass every floor; captions of another image fail every one."""
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: METEOR and the PTB tokenizer cannot run")
    shutil.copytree(ROOT / "golden" / "shapes", pytester.path / "golden" / "shapes")
    shutil.copytree(ROOT / "golden" / "zh", pytester.path / "golden" / "zh")
    pytester.makeconftest(BACKEND.read_text())
    right = pytester.runpytest("golden", "--vl-model=realistic-qwen3", "--vl-no-cache", "-p", "no:cacheprovider")
    right.assert_outcomes(passed=4)  # shapes: CIDEr, METEOR; zh (jieba tokens): CIDEr, Bleu_4
    right.stdout.fnmatch_lines(
        [
            "golden shapes on realistic-qwen3: *METEOR 0.4*CIDEr 0.4*",
            "golden shapes-zh on realistic-qwen3: *Bleu_4 0.4*CIDEr 0.4*",
            "*METEOR not run: METEOR matches English words*not scored for a set tokenized with jieba*",
        ]
    )
    wrong = pytester.runpytest("golden", "--vl-model=wrong-qwen3", "--vl-no-cache", "-p", "no:cacheprovider")
    wrong.assert_outcomes(failed=4)
