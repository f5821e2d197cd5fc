"""Multiple choice (scorer `choice`): the options as MMBench renders them, the letter read from real-looking answers
with VLMEvalKit's rules, MMBench and MMBench-CN style cases through the plugin."""

from __future__ import annotations

import json

import pytest

from pytest_vleval.scoring.base import ScoreContext
from pytest_vleval.scoring.choice import infer_choice, parse_choices, render_options, score_choice

COLOURS = parse_choices(["red", "blue", "green", "yellow"])
ZH = parse_choices({"A": "红色", "B": "蓝色", "C": "绿色", "D": "黄色"})


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("B)", "B"),
        ("**B**", "B"),
        ("B. blue", "B"),
        ("The answer is B.", "B"),
        ("Answer: B", "B"),
        ("B, no: A.", None),  # two letters standing alone: ambiguous
        ("The square is blue.", "B"),  # no letter: the option's text
        ("Blue", "B"),
        ("A and B are both possible.", None),  # two letters: ambiguous
        ("It could be red or blue.", None),  # two options' texts: ambiguous
        ("I cannot tell from this image.", None),
    ],
)
def test_letters_read_like_vlmevalkit(answer: str, letter: str | None) -> None:
    assert infer_choice(answer, COLOURS)[0] == letter


@pytest.mark.parametrize(
    ("answer", "letter"),
    [("B", "B"), ("B。", "B"), ("答案：B", "B"), ("选B", "B"), ("（B）", "B"), ("蓝色", "B"), ("答案是C。", "C"),
     ("Ｂ", "B"), ("A或B", None)],
)  # fmt: skip
def test_letters_read_from_chinese_answers(answer: str, letter: str | None) -> None:
    assert infer_choice(answer, ZH)[0] == letter


def test_score_says_what_was_read() -> None:
    context = ScoreContext(choices=COLOURS)
    right = score_choice("The answer is (B).", ("B",), {}, context)
    assert right.score == 1.0 and "read B ('blue') from option letter B" in right.detail
    wrong = score_choice("C", ("B",), {}, context)
    assert wrong.score == 0.0 and "expected B" in wrong.detail and not wrong.parse_failed
    unreadable = score_choice("A and B", ("B",), {}, context)
    assert unreadable.score == 0.0 and unreadable.parse_failed and "ambiguous" in unreadable.detail


def test_options_render_as_mmbench() -> None:
    assert render_options(COLOURS) == "\nA. red\nB. blue\nC. green\nD. yellow"


@pytest.mark.parametrize(
    ("value", "message"),
    [(["only"], "2 to 26 options"), ({"a": "x", "B": "y"}, "single capital letters"), (["x", ""], "non-empty"),
     ("red, blue", "a list of options")],
)  # fmt: skip
def test_bad_choices(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_choices(value)


BACKEND = """
class EchoBackend:
    info = {"device": "cpu", "architecture": "Echo"}

    def __init__(self, spec):
        self.spec = spec

    def generate(self, conversations):
        # "say: X" answers X (the first line: the options and the instruction follow the question).
        return [c.question.split("say:", 1)[1].split("\\n", 1)[0].strip() for c in conversations]

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    return EchoBackend(spec) if spec.requested == "echo" else None
"""

MMBENCH = """
defaults: {task: choice, scorer: choice}
cases:
  - id: en-right
    image: red.png
    question: "What colour is the shape? say: The answer is (A)."
    choices: [red, blue, green, yellow]
    expected: A
  - id: zh-right
    image: red.png
    question: "图中形状是什么颜色？say: 答案：A"
    choices: {A: 红色, B: 蓝色, C: 绿色, D: 黄色}
    expected: A
  - id: zh-ambiguous
    image: red.png
    question: "图中形状是什么颜色？say: A或B"
    choices: {A: 红色, B: 蓝色}
    expected: A
"""


@pytest.fixture
def mmbench_project(pytester: pytest.Pytester) -> pytest.Pytester:
    from PIL import Image

    pytester.makeconftest(BACKEND)
    Image.new("RGB", (32, 32), (220, 30, 30)).save(pytester.path / "red.png")
    (pytester.path / "test_mmbench.yaml").write_text(MMBENCH, encoding="utf-8")
    return pytester


def test_mmbench_and_mmbench_cn_cases_through_the_plugin(mmbench_project: pytest.Pytester) -> None:
    result = mmbench_project.runpytest(
        "--vl-model=echo", "--vl-no-cache", "--vl-json=run.json", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*zh-ambiguous*", "*ambiguous: option letters A, B all appear*"])
    record = json.loads((mmbench_project.path / "run.json").read_text(encoding="utf-8"))
    prompts = {c["case_id"]: c["turns"][0]["prompt"] for c in record["cases"]}
    assert prompts["en-right"].endswith(
        "\nA. red\nB. blue\nC. green\nD. yellow\nAnswer with the option's letter from the given choices directly."
    )
    assert prompts["zh-right"].endswith("\nA. 红色\nB. 蓝色\nC. 绿色\nD. 黄色\n请直接回答选项字母。")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("question: q\n    expected: A", "key 'choices': missing: scorer 'choice' needs the options"),
        ("question: q\n    choices: [x, y]\n    expected: C", "key 'expected': expected one option letter of A, B"),
        ("question: q\n    choices: [x]\n    expected: A", "key 'choices': expected 2 to 26 options"),
    ],
)
def test_choice_case_errors_name_the_key(mmbench_project: pytest.Pytester, case: str, message: str) -> None:
    text = f"defaults: {{scorer: choice}}\ncases:\n  - id: bad\n    image: red.png\n    {case}\n"
    (mmbench_project.path / "test_mmbench.yaml").write_text(text, encoding="utf-8")
    result = mmbench_project.runpytest("--vl-model=echo", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([f"*test_mmbench.yaml:*case 'bad': {message}*"])


CIRCULAR = """
defaults: {task: choice, scorer: choice, circular: true}
cases:
  - id: knows-it
    image: red.png
    question: "What colour is the shape? say: red"
    choices: [red, blue, green, yellow]
    expected: A
  - id: always-a
    image: red.png
    question: "What colour is the shape? say: A"
    choices: [red, blue, green, yellow]
    expected: A
"""


def test_circular_eval_asks_every_rotation_alone(mmbench_project: pytest.Pytester) -> None:
    """A model that knows the answer passes every rotation; one that always says "A" passes the first rotation
    only, and CircularEval fails it."""
    (mmbench_project.path / "test_mmbench.yaml").write_text(CIRCULAR, encoding="utf-8")
    result = mmbench_project.runpytest(
        "--vl-model=echo", "--vl-no-cache", "--vl-json=run.json", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=1)
    record = json.loads((mmbench_project.path / "run.json").read_text(encoding="utf-8"))
    turns = {c["case_id"]: c["turns"] for c in record["cases"]}
    assert [t["expected"] for t in turns["knows-it"]] == [
        "'A'",
        "'D'",
        "'C'",
        "'B'",
    ]  # red moves down, its letter follows
    assert [t["prompt"].split("\n")[1] for t in turns["knows-it"]] == ["A. red", "A. blue", "A. green", "A. yellow"]
    assert [t["passed"] for t in turns["always-a"]] == [True, False, False, False]


def test_circular_needs_one_multiple_choice_question(mmbench_project: pytest.Pytester) -> None:
    text = "cases:\n  - id: bad\n    image: red.png\n    question: q\n    expected: red\n    circular: true\n"
    (mmbench_project.path / "test_mmbench.yaml").write_text(text, encoding="utf-8")
    result = mmbench_project.runpytest("--vl-model=echo", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["*case 'bad': key 'circular': CircularEval rotates the options of one multiple-choice*"]
    )


def test_each_rotation_is_asked_without_the_others(tmp_path) -> None:
    from PIL import Image

    from pytest_vleval.cases.casefile import load_case_file
    from pytest_vleval.predict.asking import Asking

    Image.new("RGB", (8, 8)).save(tmp_path / "red.png")
    (tmp_path / "test_c.yaml").write_text(CIRCULAR, encoding="utf-8")
    case = load_case_file(tmp_path / "test_c.yaml").cases[0]
    assert case.circular and len(case.turns) == 4
    conversation = Asking().conversation(case, 3, ["A", "B", "C"], 8)
    assert conversation.history == () and conversation.question.split("\n")[1] == "A. yellow"
