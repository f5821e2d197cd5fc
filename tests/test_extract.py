"""Answer extraction before scoring, the official algorithms left unchanged, the box parser on real models'
answers, and the "format" diagnosis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_vleval.cases.fields import Turn
from pytest_vleval.scoring import score, vqa_accuracy
from pytest_vleval.scoring.base import ScoreContext
from pytest_vleval.scoring.boxes import BOX_CONVENTIONS, choose_box, parse_box, parse_boxes
from pytest_vleval.scoring.diagnosis import format_issue
from pytest_vleval.scoring.extract import DEFAULT_STEPS, STEPS, evalai_answer, extract, pipeline_for, validate_steps

GREEN = ["green"] * 10


@pytest.mark.parametrize(
    ("raw", "exact", "vqa"),
    [
        ("Green.", "Green", "green"),
        ("**Green**", "Green", "green"),
        ('"green".', "green", "green"),
        ("Answer: green", "green", "green"),
        ("The answer is Green.", "Green", "green"),
        ("<think>\nThe square looks green.\n</think>\n\nGreen.", "Green", "green"),
        ("```\nGreen\n```", "Green", "green"),
        ("Two.", "Two", "2"),
        ("The square is green.", "The square is green", "square is green"),
        ("答案：红色。", "红色", "红色"),
        ("answers", "answers", "answers"),  # a label needs its colon or "is"
    ],
)
def test_default_pipelines_on_real_answers(raw: str, exact: str, vqa: str) -> None:
    assert extract(raw, pipeline_for("exact", None, {})) == exact
    assert extract(raw, pipeline_for("vqa_accuracy", None, {})) == vqa


def test_official_vqa_accuracy_is_unchanged_and_scores_the_raw_answer() -> None:
    # The function is vqaEval.py's algorithm: unanimous annotators are compared without normalisation.
    assert vqa_accuracy("Green", GREEN) == 0.0
    assert vqa_accuracy("green", GREEN) == 1.0
    # A case's default pipeline runs the EvalAI processor first, as LLaVA's submission script does ...
    assert score("vqa_accuracy", extract("Green.", pipeline_for("vqa_accuracy", None, {})), GREEN).score == 1.0
    # ... and mode: official is the raw answer, no extraction step at all.
    assert pipeline_for("vqa_accuracy", None, {"mode": "official"}) == ()
    assert pipeline_for("vqa_accuracy", ("thinking",), {"mode": "official"}) == ("thinking",)  # the case's own


def test_evalai_processor_matches_the_reference_behaviour() -> None:
    # LLaVA's m4c_evaluator.EvalAIAnswerProcessor: lower case, commas and '?' gone, "'s" split, then VQA's rules.
    assert evalai_answer("Two dogs.") == "2 dogs"
    assert evalai_answer("1,000") == "1000"
    assert evalai_answer("Is it?") == "is it"
    assert evalai_answer("The man's hat") == "man 's hat"
    assert evalai_answer("dont") == "don't"
    assert evalai_answer("3.5") == "3.5"


def test_steps_are_named_and_validated() -> None:
    assert set(DEFAULT_STEPS) >= {"exact", "vqa_accuracy", "anls", "iou", "contains", "relaxed_accuracy"}
    assert all(step in STEPS for steps in DEFAULT_STEPS.values() for step in steps)
    assert validate_steps(None) is None and validate_steps("default") is None
    assert validate_steps("raw") == ()
    assert validate_steps(["thinking", "period"]) == ("thinking", "period")
    with pytest.raises(ValueError, match="unknown step"):
        validate_steps(["thinking", "shout"])


@given(st.text(max_size=200))
def test_extraction_never_crashes_and_is_stable(text: str) -> None:
    for scorer in DEFAULT_STEPS:
        once = extract(text, pipeline_for(scorer, None, {}))
        assert isinstance(once, str)


# --- boxes as real models write them ------------------------------------------------------------------

SIZE = (640, 480)
TRUTH = [160.0, 120.0, 480.0, 360.0]


def test_qwen3_fenced_json_list_with_labels_picks_the_referred_object() -> None:
    answer = (
        "```json\n[\n"
        '\t{"bbox_2d": [0, 0, 100, 100], "label": "grey background"},\n'
        '\t{"bbox_2d": [250, 250, 750, 750], "label": "red rectangle"}\n'
        "]\n```"
    )
    boxes = parse_boxes(answer, "qwen3", image_size=SIZE)
    assert [label for _, label in boxes] == ["grey background", "red rectangle"]
    chosen, how = choose_box(boxes, refer="the red rectangle")
    assert chosen is not None and chosen[0] == pytest.approx(TRUTH) and "labelled 'red rectangle'" in how
    context = ScoreContext(image_sizes=(SIZE,), refer="red rectangle")
    assert score("iou", answer, TRUTH, {}, context).score == pytest.approx(1.0)
    # The case can name the label itself; a label nobody wrote is a wrong answer, not a parse failure.
    assert score("iou", answer, TRUTH, {"label": "red rectangle"}, ScoreContext(image_sizes=(SIZE,))).score == 1.0
    missing = score("iou", answer, TRUTH, {"label": "unicorn"}, ScoreContext(image_sizes=(SIZE,)))
    assert (missing.score, missing.parse_failed) == (0.0, False) and "no box labelled 'unicorn'" in missing.detail


@pytest.mark.parametrize(
    ("convention", "answer"),
    [
        ("qwen3", '[{"bbox": [250, 250, 750, 750], "label": "red"}]'),
        ("qwen3", "The box is [250, 250, 750, 750]."),
        ("qwen3", '{"bbox_2d": [250, 250, 750, 750]}'),
        ("qwen2", "<|object_ref_start|>red<|object_ref_end|><|box_start|>(250,250),(750,750)<|box_end|>"),
        ("internvl", "<ref>red</ref><box>[[250, 250, 750, 750]]</box>"),
        ("internvl", "[[250, 250, 750, 750]]"),
        ("cogvlm", "It is at [[250,250,750,750]]."),
        ("cogvlm", "[[000,000,100,100;250,250,750,750]]"),
        ("minigpt-v2", "<p>red</p> {<25><25><75><75>}"),
        ("qwen-vl", "<ref>red</ref><box>(250,250),(749,749)</box>"),
        ("normalized", "[0.25, 0.25, 0.75, 0.75]"),
    ],
)
def test_each_convention_reads_its_family_answers(convention: str, answer: str) -> None:
    boxes = parse_boxes(answer, convention, image_size=SIZE)
    assert boxes, (convention, answer)
    assert any(box == pytest.approx(TRUTH, abs=1.0) for box, _ in boxes)


@given(st.text(max_size=300), st.sampled_from(sorted(set(BOX_CONVENTIONS) - {"qwen2.5"})))
def test_box_parser_never_crashes(text: str, convention: str) -> None:
    for box, _ in parse_boxes(text, convention, image_size=SIZE):
        assert 0 <= box[0] <= box[2] <= SIZE[0] and 0 <= box[1] <= box[3] <= SIZE[1]
    assert parse_box(text, convention, image_size=SIZE) is None or parse_boxes(text, convention, image_size=SIZE)


# --- the format diagnosis -----------------------------------------------------------------------------


def _turn(scorer: str, reference: tuple, key: str = "expected", threshold: float = 1.0) -> Turn:
    return Turn("What colour is the square?", scorer, reference, key, threshold)


def test_a_right_answer_in_a_sentence_is_a_format_issue_not_a_wrong_answer() -> None:
    turn = _turn("vqa_accuracy", tuple(GREEN), "answers", 0.9)
    issue = format_issue(turn, "The square is green.", ScoreContext())
    assert issue is not None and "'green' appears in a longer answer" in issue and "contains" in issue
    assert format_issue(turn, "The square is blue.", ScoreContext()) is None
    assert format_issue(_turn("exact", ("red",)), "It is red.", ScoreContext()) is not None
    assert format_issue(_turn("exact", ("red",)), "Reddish.", ScoreContext()) is None  # whole words only


def test_a_box_right_in_another_convention_is_a_format_issue() -> None:
    turn = _turn("iou", tuple(TRUTH), "box", 0.5)
    context = ScoreContext(image_sizes=(SIZE,), box_convention="qwen3")
    issue = format_issue(turn, "[0.25, 0.25, 0.75, 0.75]", context)
    assert issue is not None and "'normalized' convention" in issue
    assert format_issue(turn, '{"bbox_2d": [0, 0, 10, 10]}', context) is None
