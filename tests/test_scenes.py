"""Ground truth of the procedural scenes agrees with the rendered pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_vleval.builtin import scenes
from pytest_vleval.builtin.scenes import BACKGROUND, COLOURS, PLURALS, TASKS, make_example

SEEDS = st.integers(min_value=0, max_value=2**48)
SHAPE_TASKS = ("caption", "colour", "shape", "count", "position", "dialogue", "grounding")


def _components(mask: np.ndarray) -> int:
    """Number of 8-connected components of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    height, width = mask.shape
    count = 0
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        count += 1
        stack = [(y0, x0)]
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
    return count


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _check_shapes(scene: scenes.Scene) -> None:
    arr = np.asarray(scene.image)
    height, width = arr.shape[:2]
    ink = (arr != BACKGROUND).any(axis=2)
    union = np.zeros_like(ink)
    for shape in scene.shapes:
        x1, y1, x2, y2 = shape.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, shape
        own = (arr == COLOURS[shape.colour]).all(axis=2)
        window = np.zeros_like(own)
        window[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = True
        # The box is the tight box of the shape's pixels, and no pixel of its colour lies just outside it.
        assert _tight_box(own & window) == shape.box, shape
        union[y1:y2, x1:x2] |= own[y1:y2, x1:x2]
    # Every non-background pixel belongs to exactly the listed shapes, one blob per shape.
    assert (ink == union).all()
    assert _components(ink) == len(scene.shapes)


@settings(max_examples=60, deadline=None)
@given(task=st.sampled_from(SHAPE_TASKS), seed=SEEDS)
def test_shapes_inside_image_and_boxes_match_pixels(task: str, seed: int) -> None:
    example = make_example(task, seed)
    for scene in example.scenes:
        _check_shapes(scene)


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS)
def test_count_answer_matches_objects(seed: int) -> None:
    example = make_example("count", seed)
    (scene,), ((question, answer),) = example.scenes, example.turns
    if "shapes" in question:
        colour = question.split()[2]
        expected = sum(s.colour == colour for s in scene.shapes)
    else:
        plural = question.split()[2]
        expected = sum(PLURALS[s.kind] == plural for s in scene.shapes)
    assert answer == str(expected)
    assert 1 <= expected <= 5


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_grounding_answer_is_qwen3_json_for_the_named_shape(seed: int) -> None:
    example = make_example("grounding", seed)
    (scene,) = example.scenes
    answer = json.loads(example.turns[0][1])
    assert set(answer) == {"bbox_2d", "label"}
    target = next(s for s in scene.shapes if s.name == answer["label"])
    assert example.box == target.box and example.label == target.name
    width, height = scene.image.size
    back = [v / 1000 * (width if i % 2 == 0 else height) for i, v in enumerate(answer["bbox_2d"])]
    assert np.allclose(back, target.box, atol=0.5)
    assert all(0 <= v <= 1000 for v in answer["bbox_2d"])


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_position_and_caption_agree_with_centres(seed: int) -> None:
    position = make_example("position", seed)
    (scene,) = position.scenes
    cx, cy = scene.shapes[0].center
    width, height = scene.image.size
    region = position.turns[0][1]
    assert {
        "left": cx < width / 3,
        "right": cx > 2 * width / 3,
        "top": cy < height / 3,
        "bottom": cy > 2 * height / 3,
    }[region]
    capt = make_example("caption", seed)
    (scene,) = capt.scenes
    text = capt.turns[0][1]
    if len(scene.shapes) == 2:
        a, b = (next(s for s in scene.shapes if scenes.with_article(s.name) == part) for part in _caption_parts(text))
        if "to the left of" in text:
            assert a.center[0] < b.center[0]
        else:
            assert "above" in text and a.center[1] < b.center[1]
    else:
        assert text == scenes.with_article(scene.shapes[0].name)


def _caption_parts(text: str) -> tuple[str, str]:
    for rel in (" to the left of ", " above "):
        if rel in text:
            first, second = text.split(rel)
            return first, second
    raise AssertionError(text)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_chart_bars_match_pixels_and_answers(seed: int) -> None:
    example = make_example("chart", seed)
    (scene,) = example.scenes
    arr = np.asarray(scene.image)
    for bar in scene.bars:
        own = (arr == COLOURS[bar.colour]).all(axis=2)
        assert _tight_box(own) == bar.box
    heights = {bar.colour: bar.box[3] - bar.box[1] for bar in scene.bars}
    values = {bar.colour: bar.value for bar in scene.bars}
    # Taller bars have larger values, so the picture and the numbers cannot disagree.
    assert sorted(heights, key=heights.__getitem__) == sorted(values, key=values.__getitem__)
    question, answer = example.turns[0]
    if question == "Which bar is the tallest?":
        assert answer == max(values, key=values.__getitem__)
    elif question == "Which bar is the shortest?":
        assert answer == min(values, key=values.__getitem__)
    elif question == "How many bars are there?":
        assert answer == str(len(scene.bars))
    else:
        assert answer == str(values[question.split()[6]])


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_text_is_inside_the_strip(seed: int) -> None:
    example = make_example("ocr", seed)
    (scene,) = example.scenes
    arr = np.asarray(scene.image)
    ink = (arr != BACKGROUND).any(axis=2)
    width, height = scene.image.size
    x1, y1, x2, y2 = scene.text_box
    assert 1 <= x1 < x2 <= width - 1 and 1 <= y1 < y2 <= height - 1
    assert _tight_box(ink) == scene.text_box
    assert example.turns[0][1] == scene.text


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_multi_image_answers(seed: int) -> None:
    example = make_example("multi_image", seed)
    first, second = (s.shapes[0] for s in example.scenes)
    question, answer = example.turns[0]
    if "same colour" in question:
        assert answer == ("yes" if first.colour == second.colour else "no")
    elif "same shape" in question:
        assert answer == ("yes" if first.kind == second.kind else "no")
    else:
        shape = first if "first" in question else second
        assert answer in (shape.colour, shape.kind)


@pytest.mark.parametrize("task", TASKS)
def test_examples_are_deterministic(task: str) -> None:
    for seed in (0, 1, scenes.HELD_OUT_SEED_BASE + 5):
        a, b = make_example(task, seed), make_example(task, seed)
        assert a.turns == b.turns and a.box == b.box
        assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
    assert make_example(task, 0).images[0].tobytes() != make_example(task, 1).images[0].tobytes() or (
        make_example(task, 0).turns != make_example(task, 1).turns
    )


def test_unknown_task_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        make_example("nope", 0)


def test_scenes_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, pytest_vleval.builtin.scenes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("task", scenes.ZH_TASKS)
@given(seed=st.integers(0, 10**9))
@settings(max_examples=15, deadline=None)
def test_chinese_examples_show_the_same_images_in_chinese_words(task: str, seed: int) -> None:
    from pytest_vleval.builtin.words import EN, ZH
    from pytest_vleval.scoring.cjk import has_cjk

    en, zh = make_example(task, seed), make_example(task, seed, lang="zh")
    assert zh.lang == "zh" and len(en.images) == len(zh.images)
    for a, b in zip(en.images, zh.images, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    (_, a_en), (q_zh, a_zh) = en.turns[0], zh.turns[0]
    assert has_cjk(q_zh)
    if task == "ocr" or (task == "chart" and a_en.isdigit() and "几" not in q_zh):
        assert a_zh == a_en  # the text read, a bar's value
    elif task in ("colour", "shape", "position") or (task == "chart" and not a_en.isdigit()):
        assert a_zh == ZH.word(a_en) and EN.word(a_en) == a_en
    else:  # counts carry a measure word, captions are Chinese sentences
        assert has_cjk(a_zh)


def test_chinese_is_offered_only_for_the_chinese_tasks() -> None:
    with pytest.raises(ValueError, match="not asked in 'zh'"):
        make_example("grounding", 0, lang="zh")


def test_tokenizer_keeps_one_token_per_chinese_character() -> None:
    from pytest_vleval.builtin.build import build_tokenizer
    from pytest_vleval.builtin.train_data import corpus

    tokenizer = build_tokenizer(corpus(n_per_task=40), vocab_size=1024)
    text = "一个红色的菱形在一个绿色的正方形的左边"
    pieces = [tokenizer.decode([i]) for i in tokenizer.encode(text)]
    assert pieces == list(text)
