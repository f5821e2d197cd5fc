from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_vleval.scoring import (
    BOX_CONVENTIONS,
    SCORERS,
    ScoreContext,
    ScoreResult,
    anls,
    box_iou,
    get_scorer,
    normalize_vqa_answer,
    parse_box,
    relaxed_accuracy,
    score,
    strip_thinking,
    validate_reference,
    vqa_accuracy,
)

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMAGE = ((640, 480),)


# --- registry ------------------------------------------------------------------------------------------


def test_registry_entries_are_consistent():
    assert set(SCORERS) == {
        "exact",
        "exact_normalized",
        "contains",
        "regex",
        "any_of",
        "vqa_accuracy",
        "anls",
        "numeric",
        "relaxed_accuracy",
        "iou",
        "ocrbench",
        "choice",
        "judge",
    }
    assert SCORERS["judge"].default_threshold == 0.75  # 4 of 5
    for name, scorer in SCORERS.items():
        assert scorer.name == name
        assert (scorer.low, scorer.high) == (0.0, 1.0)
        assert scorer.low <= scorer.default_threshold <= scorer.high
        assert scorer.reference in ("expected", "answers", "box")
        assert isinstance(scorer.options, frozenset)
        assert scorer.description
    assert SCORERS["vqa_accuracy"].reference == "answers"
    assert SCORERS["iou"].reference == "box"
    assert SCORERS["iou"].default_threshold == 0.5
    assert SCORERS["anls"].default_threshold == 0.5


def test_get_scorer_unknown_lists_known_names():
    with pytest.raises(KeyError, match=r"known scorers: .*exact.*vqa_accuracy"):
        get_scorer("exactly")
    assert get_scorer("exact") is SCORERS["exact"]


def test_score_accepts_a_single_string_reference():
    assert score("exact", "Red", "red") == ScoreResult(1.0, "matched expected 'red'")


def test_scoring_does_not_import_heavy_modules():
    code = (
        "import sys, pytest_vleval.scoring as s; s.normalize_vqa_answer('Dont'); "
        "print([m for m in ('torch', 'transformers', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "reference", "options", "message"),
    [
        ("nope", ["x"], {}, "unknown scorer 'nope'; known scorers"),
        ("exact", [], {}, "at least one entry in 'expected'"),
        ("exact", ["  "], {}, "empty answer"),
        ("exact", [True], {}, "YAML boolean True; quote it"),
        ("exact", [{"a": 1}], {}, "must be strings"),
        ("exact", ["x"], {"tolerance": 0.1}, "unknown option.*'tolerance'.*accepted: none"),
        ("regex", ["(unclosed"], {}, r"bad regular expression '\(unclosed'"),
        ("regex", ["x"], {"flags": "i"}, "'flags' must be 'none' or 'ignorecase'"),
        ("regex", ["x"], {"fullmatch": "yes"}, "'fullmatch' must be true or false"),
        ("vqa_accuracy", [], {}, "at least one entry in 'answers'"),
        ("vqa_accuracy", ["a"], {"mode": "lmms"}, "'mode' must be one of official, evalai, zh"),
        ("anls", ["a"], {"tau": 0}, "'tau' must be a number > 0 and <= 1"),
        ("numeric", ["1"], {"tolerance": -1}, "'tolerance' must be a number >= 0"),
        ("numeric", ["1"], {"tolerance": True}, "'tolerance' must be a number"),
        ("numeric", ["1"], {"tolerance": 0.1, "absolute": 1}, "not both"),
        ("iou", [1, 2, 3], {}, "4 numbers"),
        ("iou", [1, 2, 3, "4"], {}, "4 numbers"),
        ("iou", [1, 2, 3, math.nan], {}, "4 numbers"),
        ("iou", [10, 10, 5, 20], {}, "x1 < x2 and y1 < y2"),
        ("iou", "0 0 1 1", {}, "4 numbers"),
    ],
)
def test_validate_reference_rejects(name, reference, options, message):
    with pytest.raises(ValueError, match=message):
        validate_reference(name, reference, options)


@pytest.mark.parametrize(
    ("name", "reference", "options"),
    [
        ("exact", "red", None),
        ("exact", [3, 4.5], {}),
        ("regex", [r"^\d+$"], {"flags": "none", "fullmatch": True}),
        ("vqa_accuracy", ["yes"] * 10, {"mode": "evalai"}),
        ("anls", ["a"], {"tau": 1}),
        ("numeric", ["1"], {"absolute": 0.5}),
        ("relaxed_accuracy", ["1"], {"tolerance": 0.1}),
        ("iou", [0, 0, 10.5, 20], {}),
    ],
)
def test_validate_reference_accepts(name, reference, options):
    validate_reference(name, reference, options)


def test_numbers_from_yaml_are_compared_as_text():
    assert score("exact", "3", [3]).score == 1.0
    assert score("numeric", "about 12.5", [12.5]).score == 1.0


# --- exact, contains, regex, any_of ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "expected", "value"),
    [
        ("red", ["red"], 1.0),
        ("  Red. ", ["red"], 1.0),
        ("red", ["Red."], 1.0),
        ("red..", ["red"], 0.0),
        ("the red", ["red"], 0.0),
        ("blue", ["red", "blue"], 1.0),
        ("red circle", ["red"], 0.0),
    ],
)
def test_exact(prediction, expected, value):
    assert score("exact", prediction, expected).score == value


def test_exact_detail_lists_expected():
    assert score("exact", "green", ["red", "blue"]).detail == "'green' is not one of 'red', 'blue'"


@pytest.mark.parametrize("name", ["exact_normalized", "any_of"])
@pytest.mark.parametrize(
    ("prediction", "expected", "value"),
    [
        ("The Two dogs.", ["2 dogs"], 1.0),
        ("dont", ["don't"], 1.0),
        ("1,000", ["1000"], 1.0),
        ("yes, sir!", ["yes sir"], 1.0),
        ("2.5", ["25"], 0.0),
        ("red", ["blue", "RED"], 1.0),
        ("reds", ["red"], 0.0),
    ],
)
def test_normalised_equality(name, prediction, expected, value):
    assert score(name, prediction, expected).score == value


@pytest.mark.parametrize(
    ("prediction", "expected", "value"),
    [
        ("a red circle", ["red"], 1.0),
        ("tired", ["red"], 0.0),
        ("RED!", ["red"], 1.0),
        ("redder", ["red"], 0.0),
        ("a Red\n  Circle here", ["red circle"], 1.0),
        ("costs $5 today", ["$5"], 1.0),
        ("costs $50", ["$5"], 0.0),
        ("blue", ["red", "blue"], 1.0),
    ],
)
def test_contains(prediction, expected, value):
    assert score("contains", prediction, expected).score == value


def test_regex_options():
    assert score("regex", "The answer is 42.", [r"\b42\b"]).score == 1.0
    assert score("regex", "RED", ["red"]).score == 1.0
    assert score("regex", "RED", ["red"], {"flags": "none"}).score == 0.0
    assert score("regex", "red circle", ["red"], {"fullmatch": True}).score == 0.0
    assert score("regex", " red ", ["red|blue"], {"fullmatch": True}).score == 1.0
    assert score("regex", "nothing", ["a", "b"]).detail == "no pattern of /a/, /b/ matches 'nothing'"


def test_regex_scorer_itself_names_a_bad_pattern():
    with pytest.raises(ValueError, match=r"'\[a-'"):
        SCORERS["regex"].func("x", ("[a-",), {}, ScoreContext())


# --- VQA ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("1,000", "1000"),  # digit,digit: every punctuation mark is deleted
        ("1,000 dogs!", "1000 dogs"),
        ("red,blue", "red blue"),  # comma not next to a space: replaced by a space
        ("yes, sir", "yes sir"),  # next to a space: deleted
        ("x - y", "x y"),
        ("2.5", "2.5"),  # a period before a digit stays
        ("3.", "3"),
        ("e.g.", "eg"),
        ("Hello.World", "helloworld"),
        ("The Two dogs", "2 dogs"),
        ("none", "0"),
        ("ten", "10"),
        ("an apple", "apple"),
        ("dont", "don't"),
        ("Dont", "don't"),
        ("Im", "im"),  # lower-cased before the contraction map, so upstream's "Im" key never applies
        ("  What's\tup?\n", "what's up"),
        ("a-b", "b"),  # '-' becomes a space, then the article "a" is dropped
    ],
)
def test_normalize_vqa_answer(text, normalised):
    assert normalize_vqa_answer(text) == normalised


def test_normalize_removes_at_most_32_periods():
    # Upstream passes re.UNICODE (== 32) as sub()'s count.
    assert normalize_vqa_answer("." * 40) == "." * 8


def test_contractions_data_is_the_official_table():
    from pytest_vleval.scoring.vqa import _vqa_contractions

    table = _vqa_contractions()
    assert len(table) == 120
    assert table["dont"] == "don't"
    assert table["yall'll"] == "y'all'll"


@pytest.mark.parametrize(("k", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0), (10, 1.0)])
def test_vqa_closed_form(k, expected):
    answers = ["red"] * k + ["blue", "green"] * 5
    answers = answers[:10]
    assert answers.count("red") == k
    assert vqa_accuracy("red", answers) == expected


def test_vqa_leave_one_out_is_by_index_with_duplicates():
    # Dropping every copy of the held-out answer (by value) would give 0.0 here, and 0.5333 for k=2.
    assert vqa_accuracy("red", ["red"] * 10) == 1.0
    assert vqa_accuracy("red", ["red", "red"] + ["blue"] * 8) == 0.6
    # Five answers, two matching: 2 x (1/3) + 3 x (2/3) over 5 = 8/15.
    assert vqa_accuracy("red", ["red", "blue", "red", "blue", "blue"]) == 8 / 15


def test_vqa_normalises_only_when_annotators_disagree():
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("Yes", ["yes"] * 10, mode="evalai") == 1.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0
    assert vqa_accuracy(" yes\n", ["yes"] * 10) == 1.0  # whitespace is cleaned in both modes
    assert vqa_accuracy("2", ["two"] * 10) == 0.0
    assert vqa_accuracy("2", ["two"] * 9 + ["three"]) == 1.0
    assert vqa_accuracy("Yes.", ["yes"] * 9 + ["no"]) == 1.0
    # "Yes" and "yes" differ, so these answers are not unanimous and everything is normalised.
    assert vqa_accuracy("YES", ["Yes"] * 5 + ["yes"] * 5) == 1.0


def test_vqa_scorer_detail_and_mode():
    result = score("vqa_accuracy", "Red", ["red"] * 3 + ["blue"] * 7)
    assert result == ScoreResult(0.9, "3/10 annotators gave 'red' (after VQA normalisation)")
    unanimous = score("vqa_accuracy", "Yes", ["yes"] * 10)
    assert unanimous.score == 0.0
    assert "unanimous" in unanimous.detail
    assert score("vqa_accuracy", "Yes", ["yes"] * 10, {"mode": "evalai"}).score == 1.0


def test_vqa_with_few_answers_says_the_best_possible_score():
    result = score("vqa_accuracy", "yes", ["yes"])
    assert result.score == 0.0
    assert "best possible score is 0.00" in result.detail
    assert vqa_accuracy("yes", ["yes"] * 3) == pytest.approx(2 / 3)
    assert vqa_accuracy("yes", ["yes"] * 4) == 1.0


def test_vqa_rejects_bad_mode_and_no_answers():
    with pytest.raises(ValueError, match="mode"):
        vqa_accuracy("a", ["a"], mode="lmms")
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("a", [])


def _brute_force_vqa(prediction: str, answers: list[str]) -> float:
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    res = prediction.replace("\n", " ").replace("\t", " ").strip()
    if len(set(gts)) > 1:
        gts = [normalize_vqa_answer(a) for a in gts]
        res = normalize_vqa_answer(res)
    accs = []
    for i in range(len(gts)):
        others = [a for j, a in enumerate(gts) if j != i]
        accs.append(min(1.0, sum(a == res for a in others) / 3))
    return sum(accs) / len(accs)


VQA_WORDS = st.sampled_from(["yes", "Yes", "no", "2", "two", "the dog", "dog.", "red", " red", "1,000", "1000"])


@PROPERTY
@given(VQA_WORDS, st.lists(VQA_WORDS, min_size=1, max_size=12))
def test_vqa_matches_a_float_leave_one_out(prediction, answers):
    value = vqa_accuracy(prediction, answers)
    expected = _brute_force_vqa(prediction, answers)
    assert value == pytest.approx(expected, abs=1e-12)
    assert round(100 * value, 2) == round(100 * expected, 2)


# --- ANLS --------------------------------------------------------------------------------------------


def test_anls_values():
    assert anls("hello", ["hello"]) == 1.0
    assert anls("helo", ["hello"]) == pytest.approx(0.8)
    assert anls("  The   INVOICE ", ["the invoice"]) == 1.0
    assert anls("abc", ["xyz"]) == 0.0
    assert anls("abc", ["xyz", "abd"]) == pytest.approx(2 / 3)
    # NL exactly at the threshold scores 0: the definition keeps only NL < tau.
    assert anls("ab", ["ac"]) == 0.0
    assert anls("ab", ["ac"], threshold=0.6) == 0.5
    assert anls("", [""]) == 1.0
    assert anls("x", []) == 0.0


def test_anls_scorer_tau_and_detail():
    assert score("anls", "ab", ["ac"]).score == 0.0
    assert score("anls", "ab", ["ac"], {"tau": 0.6}).score == 0.5
    result = score("anls", "helo", ["hello", "world"])
    assert result.score == pytest.approx(0.8)
    assert result.detail == "normalised edit distance 0.20 to 'hello'"


# --- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "target", "options", "value"),
    [
        ("There are 1,234 apples", "1234", {}, 1.0),
        ("1234", "1,234", {}, 1.0),
        ("12.5%", "12.5", {}, 1.0),
        ("12.5", "12.5%", {}, 1.0),
        ("-3 degrees", "-3", {}, 1.0),
        ("-3", "3", {}, 0.0),
        ("x-3", "3", {}, 1.0),  # a hyphen glued to a word is not a sign
        ("3 apples and 4 pears", "3", {}, 1.0),
        ("12", "12.5", {}, 1.0),  # 4% relative error
        ("11", "12.5", {}, 0.0),
        ("11", "12.5", {"tolerance": 0.2}, 1.0),
        ("11", "12.5", {"absolute": 1.0}, 0.0),
        ("11", "12.5", {"absolute": 1.5}, 1.0),
        ("0", "0", {}, 1.0),
        ("0.01", "0", {}, 0.0),
        ("0.01", "0", {"absolute": 0.05}, 1.0),
        (".5", "0.5", {}, 1.0),
        ("1e3", "1000", {}, 1.0),
        ("\u22123", "-3", {}, 1.0),
        ("Dog.", "dog", {}, 1.0),  # non-numeric target: exact match
        ("a dog", "dog", {}, 0.0),
    ],
)
def test_numeric(prediction, target, options, value):
    assert score("numeric", prediction, [target], options).score == value


def test_numeric_detail_and_parse_failure():
    assert score("numeric", "12", ["12.5"]).detail == "number 12 vs 12.5, relative error 4.0% (tolerance 5.0%)"
    failed = score("numeric", "I cannot tell", ["12"])
    assert failed == ScoreResult(0.0, "no number found in 'I cannot tell'", parse_failed=True)
    assert not score("numeric", "cat", ["dog"]).parse_failed


@pytest.mark.parametrize(
    ("prediction", "target", "value"),
    [
        ("10.4", "10", 1.0),
        ("10.6", "10", 0.0),
        ("12.5%", "12.5%", 1.0),
        ("12.5%", "12.5", 0.0),  # '%' divides by 100 on both sides, as pix2struct does
        ("0.125", "12.5%", 1.0),
        ("Yes", "yes", 1.0),
        ("0", "0.0", 0.0),  # a zero target falls back to text equality
        ("0", "0", 1.0),
        ("The answer is 10", "10", 0.0),  # the whole answer must be a number
        (" 10 ", "10", 1.0),
        ("nan", "nan", 1.0),
    ],
)
def test_relaxed_accuracy(prediction, target, value):
    assert relaxed_accuracy(prediction, target) == value
    assert score("relaxed_accuracy", prediction, [target]).score == value


def test_relaxed_accuracy_tolerance_and_parse_failure():
    assert relaxed_accuracy("11", "10", tolerance=0.1) == 1.0
    assert score("relaxed_accuracy", "11", ["10"], {"tolerance": 0.1}).score == 1.0
    assert score("relaxed_accuracy", "eleven", ["10"]).parse_failed
    assert not score("relaxed_accuracy", "cat", ["dog"]).parse_failed


# --- boxes -------------------------------------------------------------------------------------------

TARGET = (64.0, 96.0, 320.0, 288.0)  # on a 640x480 image: 0.1, 0.2, 0.5, 0.6 of the sides


@pytest.mark.parametrize(
    ("convention", "text", "resized"),
    [
        ("qwen3", '```json\n[{"bbox_2d": [100, 200, 500, 600], "label": "cat"}]\n```', None),
        ("qwen3", "[100, 200, 500, 600]", None),
        ("qwen3", "{'bbox_2d': [100.0, 200.0, 500.0, 600.0]}", None),
        ("qwen2", "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(100,200),(500,600)<|box_end|>", None),
        ("qwen2", "cat(100, 200),(500, 600)", None),
        ("qwen2.5", '[{"bbox_2d": [64, 96, 320, 288]}]', (640, 480)),
        ("qwen2.5", '{"bbox_2d": [64.4, 95.2, 322, 285.6]}', (644, 476)),
        ("qwen-vl", "<ref>cat</ref><box>(99.9,199.8),(499.5,599.4)</box>", None),
        ("qwen-vl", "(99.9,199.8),(499.5,599.4)", None),
        ("cogvlm", "The cat [[100,200,500,600]] sits.", None),
        ("cogvlm", "cats [[100,200,500,600;700,700,900,900]]", None),
        ("minigpt-v2", "<p>cat</p> {<10><20><50><60>}", None),
        ("minigpt-v2", "{<10> <20> <50> <60>}", None),
        ("normalized", "[0.1, 0.2, 0.5, 0.6]", None),
    ],
)
def test_parse_box_conventions(convention, text, resized):
    box = parse_box(text, convention, image_size=(640, 480), resized_size=resized)
    assert box == pytest.approx(TARGET)
    context = ScoreContext(image_sizes=IMAGE, box_convention=convention, resized_sizes=(resized,) if resized else ())
    result = score("iou", text, list(TARGET), context=context)
    assert result.score == pytest.approx(1.0)
    assert result.detail.startswith("IoU 1.00 with predicted box [64.0, 96.0, 320.0, 288.0] (original pixels)")
    # Of several boxes the first is scored, and the detail says so.
    assert result.detail.endswith("; the first of 2 boxes") == text.startswith("cats [[")


def test_parse_box_swaps_clips_and_takes_the_first_box():
    assert parse_box("[500, 600, 100, 200]", image_size=(640, 480)) == pytest.approx(TARGET)
    assert parse_box("[-10, 200, 1200, 600]", image_size=(640, 480)) == pytest.approx((0, 96, 640, 288))
    two = '[{"bbox_2d": [100, 200, 500, 600]}, {"bbox_2d": [0, 0, 10, 10]}]'
    assert parse_box(two, image_size=(640, 480)) == pytest.approx(TARGET)


def test_parse_box_never_guesses_the_convention():
    # Qwen2.5 pixel numbers read as Qwen3 stay on the 0-1000 grid, and as [0, 1] floats they get clipped.
    assert parse_box("[64, 96, 320, 288]", "qwen3", image_size=(640, 480)) == pytest.approx(
        (40.96, 46.08, 204.8, 138.24)
    )
    assert parse_box("[64, 96, 320, 288]", "normalized", image_size=(640, 480)) == (640, 480, 640, 480)


@pytest.mark.parametrize(
    ("convention", "text"),
    [
        ("qwen3", "a cat on the left"),
        ("qwen3", "[100, 200, 500]"),
        ("qwen3", "(100,200),(500,600)"),
        ("qwen2", "[100, 200, 500, 600]"),
        ("qwen-vl", "<box>(1,2)</box>"),
        ("cogvlm", "[100,200,500,600]"),
        ("cogvlm", "[[100,200,500]]"),
        ("minigpt-v2", "{<10><20><50>}"),
        ("minigpt-v2", "[10, 20, 50, 60]"),
        ("normalized", "[1e999, 0, 1, 1]"),
    ],
)
def test_unparsable_boxes(convention, text):
    assert parse_box(text, convention, image_size=(640, 480)) is None
    result = score("iou", text, list(TARGET), context=ScoreContext(image_sizes=IMAGE, box_convention=convention))
    assert result.score == 0.0
    assert result.parse_failed
    assert result.detail.startswith("could not parse a box")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ('```json\n[\n  {"bbox_2d": [312, 88, 6', "a ``` code fence is never closed"),
        ('[{"bbox_2d": [312, 88, 6', "'[' is never closed"),
        ("The cat is at <box>(312,88),(6", "<box> is never closed"),
    ],
)
def test_an_answer_cut_by_the_token_budget_says_so(answer, why):
    """Real models spend tokens on fences and labels: a box cut short by max_new_tokens must not read as gibberish."""
    result = score("iou", answer, list(TARGET), context=ScoreContext(image_sizes=IMAGE, box_convention="qwen3"))
    assert result.score == 0.0 and result.parse_failed
    assert result.detail.endswith(f"the answer looks cut off ({why}): it may have run out of max_new_tokens, raise it")


def test_a_complete_unparsable_answer_is_not_called_cut_off():
    result = score("iou", "The cat is on the left.", list(TARGET), context=ScoreContext(image_sizes=IMAGE))
    assert "cut off" not in result.detail


def test_box_set_up_errors():
    with pytest.raises(ValueError, match="resized_size is needed"):
        parse_box('{"bbox_2d": [1, 2, 3, 4]}', "qwen2.5", image_size=(640, 480))
    with pytest.raises(ValueError, match="resized_size is needed"):
        score("iou", "[1, 2, 3, 4]", [0, 0, 1, 1], context=ScoreContext(image_sizes=IMAGE, box_convention="qwen2.5"))
    with pytest.raises(ValueError, match="unknown box convention 'qwen25'; known: qwen3"):
        parse_box("[1, 2, 3, 4]", "qwen25", image_size=(640, 480))
    with pytest.raises(ValueError, match="image_size must be positive"):
        parse_box("[1, 2, 3, 4]", image_size=(0, 480))
    with pytest.raises(ValueError, match="original image size"):
        score("iou", "[1, 2, 3, 4]", [0, 0, 1, 1])


def test_iou_default_convention_is_qwen3():
    result = score("iou", "[100, 200, 300, 600]", list(TARGET), context=ScoreContext(image_sizes=IMAGE))
    assert result.score == pytest.approx(0.5)


def test_box_iou_known_values():
    assert box_iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 5)) == 0.5
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert box_iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0
    assert box_iou((10, 10, 0, 0), (0, 0, 10, 10)) == 0.0


# --- thinking ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("<think>\nhmm, red?\n</think>\n\nred", "red"),
        ("reasoning without an opening tag</think> blue", "blue"),
        ("<think>a</think>x<think>b</think>y", "xy"),
        ("<think>cut off while reasoning", ""),
        ("plain answer", "plain answer"),
    ],
)
def test_strip_thinking(text, answer):
    assert strip_thinking(text) == answer


# --- properties ----------------------------------------------------------------------------------------

NUMBERISH = st.from_regex(r"\A[-+]?[0-9]{1,4}(,[0-9]{3})?(\.[0-9]{1,3})?%?\Z")
TEXTS = st.one_of(st.text(), NUMBERISH, VQA_WORDS)
TEXT_SCORERS = ["exact", "exact_normalized", "contains", "any_of", "anls", "numeric", "relaxed_accuracy"]


@PROPERTY
@given(st.sampled_from(TEXT_SCORERS), TEXTS)
def test_a_prediction_equal_to_the_reference_scores_the_max(name, text):
    assume(text.strip())
    assert score(name, text, [text]).score == SCORERS[name].high


@PROPERTY
@given(TEXTS)
def test_identity_for_vqa_and_regex(text):
    assume(text.strip())
    assert score("vqa_accuracy", text, [text] * 10).score == 1.0
    assert score("vqa_accuracy", text, [text] * 10, {"mode": "evalai"}).score == 1.0
    assert score("regex", text, [re.escape(text)]).score == 1.0


REFERENCES = {
    "ocrbench": ["CENTRE", "y _ { 2 } = - 1\n"],
    "exact": ["red", "Two dogs."],
    "exact_normalized": ["red", "Two dogs."],
    "contains": ["red", "$5"],
    "regex": [r"\bred\b", "^[0-9]+$"],
    "any_of": ["yes", "no"],
    "vqa_accuracy": ["yes"] * 4 + ["no"] * 3 + ["2", "two", "the dog"],
    "anls": ["invoice 12", "total"],
    "numeric": ["12.5", "dog"],
    "relaxed_accuracy": ["12.5%", "dog", "0"],
    "iou": [64.0, 96.0, 320.0, 288.0],
    "choice": ["B"],
}


def test_every_scorer_has_property_references():
    # scorer judge asks a model (scoring/judge.py); its pure part, reading a verdict, has its own property below.
    assert set(REFERENCES) == set(SCORERS) - {"judge"}


@PROPERTY
@given(TEXTS, st.sampled_from([(1, 5), (0, 10), (1, 3)]))
def test_any_reply_is_a_verdict_on_the_scale_or_an_unreadable_one(reply, scale):
    from pytest_vleval.scoring.verdicts import VerdictError, parse_verdict

    try:
        verdict = parse_verdict(reply, *scale)
    except VerdictError as exc:
        assert exc.raw == reply
    else:
        assert scale[0] <= verdict.score <= scale[1] and verdict.parsed_by in ("json", "fallback")


@PROPERTY
@given(st.sampled_from(sorted(REFERENCES)), TEXTS, st.sampled_from(sorted(BOX_CONVENTIONS)))
def test_no_text_crashes_a_scorer_and_scores_stay_in_range(name, prediction, convention):
    context = ScoreContext(
        image_sizes=IMAGE,
        box_convention=convention,
        resized_sizes=((644, 476),),
        choices=(("A", "red"), ("B", "two dogs"), ("C", "一个红色的圆形")),
    )
    result = score(name, prediction, REFERENCES[name], context=context)
    assert isinstance(result, ScoreResult)
    assert SCORERS[name].low <= result.score <= SCORERS[name].high
    assert isinstance(result.detail, str)
    assert result.detail


BOX_TEXT = st.one_of(
    st.text(),
    st.builds("[{}, {}, {}, {}]".format, *[st.floats(allow_nan=False) | st.integers(-2000, 2000) for _ in range(4)]),
    st.builds(
        "<box>({},{}),({},{})</box>".format, *[st.floats(allow_nan=False) | st.integers(-2000, 2000) for _ in range(4)]
    ),
)


@PROPERTY
@given(
    BOX_TEXT,
    st.sampled_from(sorted(BOX_CONVENTIONS)),
    st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
    st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
)
def test_parse_box_never_crashes_and_stays_in_the_image(text, convention, size, resized):
    box = parse_box(text, convention, image_size=size, resized_size=resized)
    if box is not None:
        x1, y1, x2, y2 = box
        assert 0 <= x1 <= x2 <= size[0]
        assert 0 <= y1 <= y2 <= size[1]


COORD = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False)
BOXES = st.tuples(COORD, COORD, COORD, COORD)


@PROPERTY
@given(BOXES, BOXES)
def test_box_iou_is_symmetric_and_bounded(a, b):
    value = box_iou(a, b)
    assert value == box_iou(b, a)
    assert 0.0 <= value <= 1.0


@PROPERTY
@given(COORD, COORD, st.floats(min_value=1e-3, max_value=1e4), st.floats(min_value=1e-3, max_value=1e4))
def test_box_iou_with_itself_is_one(x, y, w, h):
    box = (x, y, x + w, y + h)
    assume(box[2] > box[0] and box[3] > box[1])
    assert box_iou(box, box) == 1.0


@PROPERTY
@given(TEXTS)
def test_vqa_normalisation_is_idempotent(text):
    assume(text.count(".") <= 32)  # upstream removes at most 32 periods per pass
    once = normalize_vqa_answer(text)
    assert normalize_vqa_answer(once) == once


@PROPERTY
@given(TEXTS, st.lists(TEXTS, min_size=1, max_size=3))
def test_anls_is_bounded_and_one_on_identity(prediction, answers):
    assert 0.0 <= anls(prediction, answers) <= 1.0
    assert anls(prediction, [*answers, prediction]) == 1.0


@PROPERTY
@given(TEXTS)
def test_strip_thinking_never_leaves_tags(text):
    stripped = strip_thinking(f"<think>{text}</think>answer")
    assert stripped == strip_thinking("answer") or "<think>" in text or "</think>" in text


def test_iou_convention_option_overrides_the_model() -> None:
    """A server whose family the plugin cannot see (openai://) names the convention in the case."""
    context = ScoreContext(image_sizes=IMAGE)  # no convention from the model: qwen3 by default
    answer = "{<10><20><50><60>}"
    assert score("iou", answer, list(TARGET), context=context).parse_failed
    result = score("iou", answer, list(TARGET), {"convention": "minigpt-v2"}, context=context)
    assert result.score == pytest.approx(1.0)
    validate_reference("iou", list(TARGET), {"convention": "minigpt-v2"})
    with pytest.raises(ValueError, match="option 'convention' must be one of qwen3, qwen2"):
        validate_reference("iou", list(TARGET), {"convention": "minigpt"})


@pytest.mark.parametrize("mode", ["official", "evalai"])
def test_best_vqa_accuracy_is_the_best_any_answer_reaches(mode):
    """The closed form used at collection equals trying every human answer as the prediction."""
    import random

    from pytest_vleval.scoring.vqa import best_vqa_accuracy, vqa_accuracy

    rng = random.Random(0)
    words = ["yes", "Yes.", "no", "2", "two", "a dog", "dog", "the dog", "red", "Red", "it's", "its"]
    for _ in range(500):
        answers = [rng.choice(words) for _ in range(rng.choice([1, 3, 10]))]
        best = max(vqa_accuracy(answer, answers, mode=mode) for answer in answers)
        assert best_vqa_accuracy(answers, mode=mode) == pytest.approx(best, abs=1e-12), answers


def test_score_with_an_unknown_scorer_is_get_scorers_key_error():
    from pytest_vleval.scoring.registry import score, score_checked

    for call in (score, score_checked):
        with pytest.raises(KeyError, match=r"unknown scorer 'exactly'; known scorers: .*exact"):
            call("exactly", "red", "red", {})
