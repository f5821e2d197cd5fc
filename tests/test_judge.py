"""scorer: judge — the verdict format and its fallback, the prompt template and its variants, and the whole path
through the plugin with a stub judge (a hook-loaded backend that grades by rules): pass/fail by rubric, an
unreadable verdict as an ERROR of the case with the judge's reply shown, skipping without --vl-judge, the verdict
cache (hits, and invalidation by the judge's fingerprint), --vl-judge-repeat's agreement, the judge in the
record, and --vl-compare flagging a changed judge instead of a regression."""

from __future__ import annotations

import json

import pytest

from pytest_vleval.predict.cache import AnswerCache
from pytest_vleval.scoring.judge_prompt import RUBRICS, VARIANTS, judge_prompt, template_sha256, template_text
from pytest_vleval.scoring.verdicts import VerdictError, parse_verdict

from .conftest import FAKE_BACKEND_CONFTEST, make_png
from .test_htmlreport import cases_data

# --- reading a verdict ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "score", "parsed_by"),
    [
        ('{"score": 4, "reason": "Mostly right."}', 4, "json"),
        ('```json\n{"score": 5, "reason": "Same answer."}\n```', 5, "json"),
        ('Here is my verdict: {"score": 2, "reason": "Wrong colour."} Hope it helps.', 2, "json"),
        ('{"score": 3.0, "reason": "ok"}', 3, "json"),
        ('{"score": "1", "reason": "It says blue, not red."}', 1, "json"),
        ('{"reason": "first the reason", "score": 5}', 5, "json"),
        ('{"score": 4}', 4, "json"),
        ("Score: 4\nThe answer is mostly right.", 4, "fallback"),
        ("score = 2 because it names another shape", 2, "fallback"),
        ("I would give it 3/5.", 3, "fallback"),
        ("4 out of 5", 4, "fallback"),
        ("5", 5, "fallback"),
        (" 5. ", 5, "fallback"),
    ],
)
def test_verdicts_as_judges_write_them(raw: str, score: int, parsed_by: str) -> None:
    verdict = parse_verdict(raw, 1, 5)
    assert (verdict.score, verdict.parsed_by) == (score, parsed_by)


def test_the_reason_comes_from_the_json_and_the_fallback_keeps_the_reply() -> None:
    assert parse_verdict('{"score": 5, "reason": "It gives the reference answer."}', 1, 5).reason == (
        "It gives the reference answer."
    )
    assert parse_verdict("Score: 4\nclose   enough", 1, 5).reason == "Score: 4 close enough"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"score": 7, "reason": "great"}', "not an integer from 1 to 5"),
        ('{"score": 3.5, "reason": "between"}', "not an integer from 1 to 5"),
        ('{"score": "high", "reason": "x"}', "not an integer from 1 to 5"),
        ('{"score": true}', "not an integer from 1 to 5"),
        ("The answer looks fine to me.", 'no {"score": n'),
        ("a red circle", 'no {"score": n'),
        ("I rate it 7/10.", 'no {"score": n'),  # another scale is not this one
        ("", 'no {"score": n'),
        ('{"verdict": "good"}', 'no {"score": n'),
    ],
)
def test_unreadable_verdicts_are_errors_that_keep_the_reply(raw: str, problem: str) -> None:
    with pytest.raises(VerdictError, match=problem) as info:
        parse_verdict(raw, 1, 5)
    assert info.value.raw == raw


def test_another_scale() -> None:
    assert parse_verdict('{"score": 0, "reason": "no"}', 0, 10).score == 0
    assert parse_verdict("8/10", 0, 10).score == 8
    with pytest.raises(VerdictError):
        parse_verdict("8/10", 1, 5)


# --- the prompt -------------------------------------------------------------------------------------------------


def test_the_prompt_is_the_shipped_template_with_its_sections_in_the_variant_order() -> None:
    rubric = RUBRICS["correctness"]
    first = judge_prompt(rubric, "What colour is it?", "Red.", "red", 0).text
    assert first.startswith("Grade the answer to a question about the image.\nRubric: 5 = it gives")
    assert "\nQuestion: What colour is it?\nReference answer: red\nAnswer to grade: Red.\n" in first
    assert first.endswith('Reply with JSON only, the reason first: {"reason": "<one sentence>", "score": <1 to 5>}')
    lines = {k: judge_prompt(rubric, "q", "a", "r", k).text.splitlines()[1:5] for k in range(len(VARIANTS))}
    assert len({tuple(v) for v in lines.values()}) == 4
    assert judge_prompt(rubric, "q", "a", "r", 5).variant == 1  # repeats cycle through the four orders
    described = [judge_prompt(RUBRICS["description"], "Describe it.", "a red circle", None, k) for k in range(4)]
    assert "Reference answer" not in described[0].text
    assert [p.variant for p in described] == [0, 1, 0, 1] and described[0].text != described[1].text
    # A multi-line answer stays one section.
    assert "Answer to grade: line one line two" in judge_prompt(rubric, "q", "line one\nline two", "r").text


def test_the_template_hash_is_of_the_shipped_file() -> None:
    import hashlib

    assert template_sha256("judge-v1") == hashlib.sha256(template_text("judge-v1").encode()).hexdigest()


# --- through the plugin ------------------------------------------------------------------------------------------

STUB_JUDGE = '''

import json, os, re
from pathlib import Path

class StubJudge:
    """Grades by rules: 5 when the graded answer equals the reference (case and a final '.' aside), else 1;
    'garble' -> an unreadable reply; 'lenient' -> 'Score: 4'; 'biased' -> 5 when the answer comes before the
    reference in the prompt, else 2. Every prompt it is asked is appended to judge-calls.txt."""

    def __init__(self, spec):
        self.spec = spec
        self.info = {"device": "cpu", "architecture": "StubJudge",
                     "fingerprint": os.environ.get("STUB_JUDGE_VERSION", "stub-1")}

    def generate(self, conversations):
        out = []
        with open("judge-calls.txt", "a") as log:
            for c in conversations:
                log.write(json.dumps({"prompt": c.question, "images": len(c.images)}) + "\\n")
                if c.question.startswith("You are an AI assistant who will help me to match an answer"):
                    answer = c.question.rsplit("Answer: ", 1)[1]
                    out.append("B" if "ocean" in answer else "Z")
                    continue
                sections = dict(re.findall(r"^(Question|Reference answer|Answer to grade|Rubric): (.*)$",
                                           c.question, re.M))
                answer = sections.get("Answer to grade", "")
                reference = sections.get("Reference answer")
                if "garble" in answer:
                    out.append("I am not sure what you want me to say.")
                elif "lenient" in answer:
                    out.append("Score: 4")
                elif "biased" in answer:
                    first = c.question.index("Answer to grade") < c.question.index("Reference answer")
                    out.append(json.dumps({"score": 5 if first else 2, "reason": "order"}))
                elif reference is None:
                    out.append(json.dumps({"score": 5 if "red" in answer else 1, "reason": "described"}))
                elif answer == reference or (os.environ.get("STUB_JUDGE_VERSION") != "stub-2"
                                             and answer.lower().rstrip(".") == reference.lower()):
                    out.append(json.dumps({"score": 5, "reason": "It gives the reference answer."}))
                else:
                    out.append(json.dumps({"score": 1, "reason": f"It says {answer}, not {reference}."}))
        return out

    def close(self):
        pass

_model_loader = pytest_vleval_load_model

class OneLine(FakeBackend):
    """FakeBackend that answers only the first line after 'say:' (the options rendered under it are not echoed)."""

    def generate(self, conversations):
        return [a.splitlines()[0] if a else a for a in super().generate(conversations)]

def pytest_vleval_load_model(config, spec, options):
    if spec.requested.startswith("stub-judge"):
        return StubJudge(spec)
    if spec.requested == "oneline":
        return OneLine(spec)
    return _model_loader(config, spec, options)
'''

JUDGED_SUITE = """
defaults: {scorer: judge}
cases:
  - {id: right, image: images/red.png, question: 'say: Red.', expected: red}
  - {id: wrong, image: images/red.png, question: 'say: Blue.', expected: red}
  - {id: unreadable, image: images/red.png, question: 'say: garble', expected: red}
  - {id: fallback, image: images/red.png, question: 'say: lenient', expected: red}
  - {id: described, image: images/red.png, question: 'say: a red square', rubric: description}
"""


@pytest.fixture
def judged(fake_project: pytest.Pytester) -> pytest.Pytester:
    fake_project.makeconftest(FAKE_BACKEND_CONFTEST + STUB_JUDGE)
    fake_project.makefile(".yaml", test_judged=JUDGED_SUITE)
    return fake_project


def calls(project: pytest.Pytester) -> list[dict]:
    path = project.path / "judge-calls.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def record(project: pytest.Pytester, name: str = "run.json") -> dict:
    return json.loads((project.path / name).read_text())


def test_judged_cases_pass_fail_and_error_by_the_verdict(judged: pytest.Pytester) -> None:
    result = judged.runpytest(
        "--vl-model=fake", "--vl-judge=stub-judge", "--vl-json=run.json", "--vl-report=report.html", "-rA"
    )
    result.assert_outcomes(passed=3, failed=1, errors=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*ERROR of the judge, not of the model (its answer is shown, not scored): the verdict of judge "
            '\'stub-judge\' could not be read: no {"score": n, "reason": "..."} with n from 1 to 5 in the '
            "judge's reply; its reply: 'I am not sure what you want me to say.'",
            "*score:    not scored: the judge's verdict is missing",
            "*judge:    1/5 by stub-judge (judge-v1, rubric correctness): It says Blue., not red.",
            "*judged by stub-judge (judge-v1 *, fingerprint *): 5 turns, 4 verdicts (0 from the verdict cache), "
            "1 read by the fallback, 1 unreadable or not asked",
            "*ERROR test_judged.yaml::unreadable*",
        ]
    )
    run = record(judged)
    cases = {c["case_id"]: c for c in run["cases"]}
    assert cases["unreadable"]["outcome"] == "error" and cases["unreadable"]["judge_error"]
    assert cases["unreadable"]["turns"][0]["judge"]["raw"] == "I am not sure what you want me to say."
    assert cases["right"]["turns"][0]["judge"]["verdicts"] == [
        {"score": 5, "reason": "It gives the reference answer.", "parsed_by": "json", "variant": 0, "cached": False}
    ]
    assert cases["fallback"]["turns"][0]["score"] == 0.75 and cases["fallback"]["passed"]
    (model,) = run["models"]
    # The unscored case is an error, not a failure of the model: 3 of the 4 scored cases passed.
    assert model["eval"]["accuracy"] == 0.75 and model["eval"]["judge_errors"] == 1
    judge = model["judge"]
    assert judge["identities"][0]["template"] == "judge-v1" and judge["identities"][0]["fingerprint"]
    assert (judge["turns"], judge["verdicts"], judge["errors"], judge["rubrics"]) == (
        5,
        4,
        1,
        ["correctness", "description"],
    )
    # The HTML report shows each verdict next to its answer, the unreadable reply, and who judged.
    import html

    page = html.unescape((judged.path / "report.html").read_text())
    raw = (judged.path / "report.html").read_text()
    turns = [t for c in cases_data(raw)["cards"] for r in c["rows"] for t in r["turns"]]
    assert "1/5 by stub-judge (judge-v1, rubric correctness): It says Blue., not red." in [t["detail"] for t in turns]
    assert "I am not sure what you want me to say." in [
        t["judge_reply"] for t in turns
    ]  # "the judge's unreadable reply"
    assert "judged by stub-judge (judge-v1" in page
    # Correctness is judged on the text alone; a description is judged seeing the image.
    assert sorted(c["images"] for c in calls(judged)) == [0, 0, 0, 0, 1]


def test_without_a_judge_judged_cases_are_skipped_with_the_flag_to_set(judged: pytest.Pytester) -> None:
    result = judged.runpytest("--vl-model=fake", "-rs")
    result.assert_outcomes(skipped=5)
    result.stdout.fnmatch_lines(
        ["*scorer 'judge' needs a judge model: --vl-judge=SPEC (the built-in one is tiny-judge)"]
    )
    assert not calls(judged)


def test_verdicts_are_cached_and_a_changed_judge_asks_again(
    judged: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--vl-model=fake", "--vl-judge=stub-judge", "--vl-json=run.json"]
    judged.runpytest(*args).assert_outcomes(passed=3, failed=1, errors=1)
    assert len(calls(judged)) == 5
    again = judged.runpytest(*args)
    again.assert_outcomes(passed=3, failed=1, errors=1)
    assert len(calls(judged)) == 5, "unchanged answers and judge: every verdict from the cache"
    # The fake model's answers are not cached (no fingerprint): the verdicts alone still mark the folder as a cache.
    cache = judged.path / ".vleval" / "cache"
    assert (cache / ".gitignore").exists() and (cache / "CACHEDIR.TAG").exists()
    assert len(list(AnswerCache(cache).entries("verdicts"))) == 5
    judge = record(judged)["models"][0]["judge"]
    assert (judge["verdicts"], judge["cached"]) == (4, 4)
    again.stdout.fnmatch_lines(["*4 verdicts (4 from the verdict cache)*"])
    monkeypatch.setenv("STUB_JUDGE_VERSION", "stub-2")  # stricter: 'Red.' is not 'red'
    judged.runpytest(*args).assert_outcomes(passed=2, failed=2, errors=1)
    assert len(calls(judged)) == 10, "a judge with another fingerprint is asked again"
    judged.runpytest(*args, "--vl-judge-repeat=2").assert_outcomes(passed=2, failed=2, errors=1)
    assert len(calls(judged)) == 15, "repeat 2: the first order is cached, the second is new"
    judged.runpytest(*args, "--vl-judge-repeat=2", "--vl-refresh").assert_outcomes(passed=2, failed=2, errors=1)
    assert len(calls(judged)) == 25, "--vl-refresh asks the judge again too"


def test_repeats_are_asked_in_other_orders_and_their_agreement_recorded(judged: pytest.Pytester) -> None:
    judged.makefile(
        ".yaml",
        test_judged="""
        defaults: {scorer: judge, threshold: 0.5}
        cases:
          - {id: steady, image: images/red.png, question: 'say: red', expected: red}
          - {id: biased, image: images/red.png, question: 'say: biased', expected: red}
        """,
    )
    judged.runpytest("--vl-model=fake", "--vl-judge=stub-judge", "--vl-judge-repeat=4", "--vl-json=run.json")
    cases = {c["case_id"]: c for c in record(judged)["cases"]}
    steady, biased = cases["steady"]["turns"][0]["judge"], cases["biased"]["turns"][0]["judge"]
    assert [v["variant"] for v in steady["verdicts"]] == [0, 1, 2, 3]
    assert steady["agreement"] == 1.0 and cases["steady"]["score"] == 1.0
    # Variants 1 and 3 put the answer before the reference: 5, 2 otherwise.
    assert [v["score"] for v in biased["verdicts"]] == [2, 5, 2, 5]
    assert biased["agreement"] == 0.5 and cases["biased"]["score"] == pytest.approx((0.25 + 1 + 0.25 + 1) / 4)
    assert record(judged)["models"][0]["judge"]["agreement"] == 0.75


def test_a_changed_judge_is_flagged_by_the_comparison_not_read_as_a_regression(
    judged: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    judged.makefile(
        ".yaml",
        test_judged="""
        defaults: {scorer: judge}
        cases:
          - {id: one, image: images/red.png, question: 'say: red', expected: red}
          - {id: two, image: images/red.png, question: 'say: Red.', expected: red}
        """,
    )
    judged.makefile(
        ".yaml", test_exact="cases:\n  - {id: plain, image: images/red.png, question: 'say: red', expected: red}\n"
    )
    args = ["--vl-model=fake", "--vl-judge=stub-judge", "--vl-json=run.json"]
    judged.runpytest(*args, "--vl-save=good").assert_outcomes(passed=3)
    gate = [*args, "--vl-compare=good", "--vl-compare-fail=accuracy:-1pp,accuracy@test_exact.yaml:-1pp"]
    # The same answers, graded by a stricter judge (another fingerprint): 'Red.' now fails.
    monkeypatch.setenv("STUB_JUDGE_VERSION", "stub-2")
    result = judged.runpytest(*gate)
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == 1, "the failing case fails its test; the gate itself holds"
    result.stdout.fnmatch_lines(
        [
            "*model fake: judge changed (stub-judge * judge-v1 *, repeat 1 -> stub-judge *"
            "judge-v1 *, repeat 1): scores not comparable*"
        ]
    )
    comparison = record(judged)["comparison"]
    assert not comparison["failed"], comparison["failures"]
    rows = {row["metric"]: row for row in comparison["models"][0]["rows"]}
    assert rows["accuracy"]["verdict"] == "not comparable" and rows["accuracy"]["after"] < rows["accuracy"]["before"]
    assert rows["accuracy@test_judged.yaml"]["verdict"] == "not comparable"
    assert rows["accuracy@test_exact.yaml"]["verdict"] == "ok"  # a suite without judged cases is still gated
    assert comparison["models"][0]["worse"] == []  # 'two' moved because of the judge, not the model
    # The same judge again: a real regression of the judged suite is a regression.
    monkeypatch.setenv("STUB_JUDGE_VERSION", "stub-1")
    judged.makefile(
        ".yaml", test_judged=(judged.path / "test_judged.yaml").read_text().replace("say: Red.", "say: blue")
    )
    regressed = judged.runpytest(*gate)
    assert regressed.ret == 1
    assert record(judged)["comparison"]["failed"]
    assert [f["case_id"] for f in record(judged)["comparison"]["models"][0]["worse"]] == ["two"]


# --- case-file errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "{id: c, image: images/red.png, question: q, scorer: judge}",
            "key 'rubric': missing: scorer 'judge' grades on a rubric",
        ),
        (
            "{id: c, image: images/red.png, question: q, scorer: judge, rubric: corectness, expected: x}",
            "unknown rubric 'corectness' (did you mean 'correctness'?)",
        ),
        (
            "{id: c, image: images/red.png, question: q, scorer: judge, rubric: correctness}",
            "key 'expected': missing: rubric 'correctness' compares with a reference answer",
        ),
        (
            "{id: c, image: images/red.png, question: q, scorer: exact, expected: x, rubric: description}",
            "key 'rubric': read by scorer 'judge' only, not by 'exact'",
        ),
        (
            "{id: c, image: images/red.png, question: q, scorer: judge, rubric: {text: 'Is it polite?', scale: [5, 1]}}",
            "'scale' must be two integers",
        ),
        (
            "{id: c, image: images/red.png, question: q, scorer: judge, rubric: description, judge_image: 'yes'}",
            "key 'judge_image': expected true or false",
        ),
        (
            "{id: c, image: images/red.png, question: q, scorer: judge, expected: [a, b]}",
            "a judged answer has one reference answer",
        ),
        (
            "{id: c, image: images/red.png, question: q, scorer: judge, expected: x, threshold: 2}",
            "outside the range of scorer 'judge'",
        ),
    ],
)
def test_judged_case_errors_name_the_key(fake_project: pytest.Pytester, case: str, message: str) -> None:
    fake_project.makefile(".yaml", test_bad=f"cases:\n  - {case}\n")
    result = fake_project.runpytest("--vl-model=fake", "--vl-judge=fake")
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*test_bad.yaml:2: case 'c': *{message}*"])


def test_a_custom_rubric_and_its_scale(judged: pytest.Pytester) -> None:
    judged.makefile(
        ".yaml",
        test_judged="""
        cases:
          - id: polite
            image: images/red.png
            question: 'say: a red square'
            scorer: judge
            rubric: {text: '10 = it names the colour red; 0 = it does not', scale: [0, 10]}
            threshold: 0.4
        """,
    )
    judged.runpytest("--vl-model=fake", "--vl-judge=stub-judge", "--vl-json=run.json").assert_outcomes(passed=1)
    (prompt,) = [c["prompt"] for c in calls(judged)]
    assert "Rubric: 10 = it names the colour red; 0 = it does not" in prompt and "<0 to 10>" in prompt
    (case,) = record(judged)["cases"]
    assert case["turns"][0]["judge"]["rubric"] == "custom" and case["turns"][0]["judge"]["scale"] == [0, 10]


def test_a_judge_that_cannot_load_errors_the_judged_cases_not_the_model(judged: pytest.Pytester) -> None:
    broken = judged.mkdir("broken-judge")
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    result = judged.runpytest("--vl-model=fake", f"--vl-judge={broken}", "--vl-json=run.json")
    result.assert_outcomes(errors=5)
    result.stdout.fnmatch_lines(["*ERROR of the judge, not of the model*judge 'broken-judge' could not be*"])
    assert record(judged)["models"][0]["eval"]["accuracy"] is None  # nothing was scored


def test_a_judge_path_that_does_not_exist_is_a_usage_error(judged: pytest.Pytester) -> None:
    result = judged.runpytest("--vl-model=fake", "--vl-judge=./no-such-judge")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vl-judge: './no-such-judge' looks like a local path*"])


def test_choice_answers_the_rules_cannot_read_go_to_the_judge(judged: pytest.Pytester) -> None:
    judged.makefile(
        ".yaml",
        test_choice="""
        defaults: {scorer: choice}
        cases:
          - {id: letter, image: images/blue.png, question: 'say: B', choices: [red, blue], expected: B}
          - {id: ocean, image: images/blue.png, question: 'say: The colour of the ocean.', choices: [red, blue], expected: B}
          - {id: lost, image: images/blue.png, question: 'say: I cannot tell.', choices: [red, blue], expected: B}
        """,
    )
    alone = judged.runpytest("--vl-model=oneline", "test_choice.yaml")
    alone.assert_outcomes(passed=1, failed=2)
    result = judged.runpytest("--vl-model=oneline", "--vl-judge=stub-judge", "test_choice.yaml", "--vl-json=run.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*judge:    no option read from 'I cannot tell.', nor by judge stub-judge (it said 'Z')",
            "*2 choice answers the rules could not read, 1 read",
        ]
    )
    prompts = [c["prompt"] for c in calls(judged)]
    assert len(prompts) == 2, "a letter the rules read is not sent to the judge"
    # VLMEvalKit fills its template this way: a "?" after the question, the options as build_option_str writes them.
    assert prompts[0].endswith(
        "Example 3: \nQuestion: say: The colour of the ocean.?\nOptions: There are several options: \nA. red\n"
        "B. blue\n\nAnswer: The colour of the ocean.\nYour output: "
    )
    cases = {c["case_id"]: c for c in record(judged)["cases"]}
    ocean = cases["ocean"]["turns"][0]
    assert ocean["detail"] == "read B by judge stub-judge (choice-v1): right"
    assert ocean["judge"]["fallback"] == "choice" and ocean["judge"]["letter"] == "B" and ocean["judge"]["raw"] == "B"
    assert cases["letter"]["turns"][0]["judge"] is None


# --- the built-in judge, in process and behind a real `transformers serve` ---------------------------------------
# Each run is a subprocess: torch imported inside an in-process pytester run is dropped from sys.modules after
# it, and importing it again in the same process crashes.

SCRIPTED = """
ANSWERS = {
    "What colour is the circle?": "Red.",
    "What shape is on the left?": "The answer is square.",
    "Which shape is blue?": "triangle",
    "How many circles are there?": "4",
}

class Scripted:
    def __init__(self, spec):
        self.spec = spec
        self.info = {"device": "cpu", "architecture": "Scripted"}

    def generate(self, conversations):
        return [ANSWERS[c.question] for c in conversations]

    def close(self):
        pass

def pytest_vleval_load_model(config, spec, options):
    return Scripted(spec) if spec.requested == "scripted" else None
"""

BUILTIN_JUDGED = """
defaults: {scorer: judge}
cases:
  - {id: right, image: images/red.png, question: 'What colour is the circle?', expected: red}
  - {id: sentence, image: images/red.png, question: 'What shape is on the left?', expected: square}
  - {id: wrong, image: images/red.png, question: 'Which shape is blue?', expected: circle}
  - {id: count, image: images/red.png, question: 'How many circles are there?', expected: '3'}
"""


# What the shipped tiny-judge gives the scripted answers (right, right in a sentence, wrong, wrong count).
BUILTIN_JUDGE_SCORES = {"right": 5, "sentence": 5, "wrong": 1, "count": 1}


@pytest.fixture
def scripted(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(SCRIPTED)
    make_png(pytester.path / "images" / "red.png")
    pytester.makefile(".yaml", test_judged=BUILTIN_JUDGED)
    return pytester


def _verdicts(project: pytest.Pytester) -> dict[str, list]:
    return {c["case_id"]: [t["judge"] for t in c["turns"]] for c in record(project)["cases"]}


def test_the_built_in_judge_grades_right_and_wrong_answers(scripted: pytest.Pytester) -> None:
    """Its verdicts are in the strict format; the pinned scores are what the shipped weights give (the README's
    table), not a claim of wisdom: its reasons copy the answers imperfectly."""
    scripted.runpytest_subprocess("--vl-model=scripted", "--vl-judge=tiny-judge", "--vl-json=run.json")
    verdicts = _verdicts(scripted)
    assert all(v[0]["error"] is None and v[0]["verdicts"][0]["parsed_by"] == "json" for v in verdicts.values())
    assert {k: v[0]["verdicts"][0]["score"] for k, v in verdicts.items()} == BUILTIN_JUDGE_SCORES


def test_the_judge_behind_transformers_serve_gives_the_in_process_verdicts(
    scripted: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The protocol and the parsing, not the judge's wisdom: the built-in judge served over HTTP reads the same
    prompts and gives the same verdicts as in process."""
    from pytest_vleval.builtin import BUILTIN_MODELS

    from .test_openai_backend import serve

    server = serve(BUILTIN_MODELS["tiny-judge"], tmp_path_factory.mktemp("serve-judge"))
    try:
        judge = f"openai://127.0.0.1:{server.port}/v1/tiny-judge"
        scripted.runpytest_subprocess(
            "--vl-model=scripted", f"--vl-judge={judge}", "--vl-json=run.json", "--vl-no-cache"
        )
        over_http = _verdicts(scripted)
    finally:
        server.stop()
    scripted.runpytest_subprocess("--vl-model=scripted", "--vl-judge=tiny-judge", "--vl-json=run.json", "--vl-no-cache")
    in_process = _verdicts(scripted)
    strip = ("fingerprint", "judge")
    assert [[{k: v for k, v in t.items() if k not in strip} for t in ts] for ts in over_http.values()] == [
        [{k: v for k, v in t.items() if k not in strip} for t in ts] for ts in in_process.values()
    ]
    assert over_http["right"][0]["judge"] == "127.0.0.1-tiny-judge" or over_http["right"][0]["judge"].endswith(
        "tiny-judge"
    )
