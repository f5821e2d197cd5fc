"""Procedural scenes with exact ground truth, for training and testing the built-in model.

Every scene is a pure function of `(task, seed)`: coloured shapes (kind, colour, count, position,
pixel-exact bounding boxes), rendered words and numbers, simple bar charts, and pairs of scenes (drawn by
``render.py``). `make_example` turns a scene into questions and answers in the phrasing the built-in model is
trained on; each task has its own builder below, drawing from the example's own random stream.

Only PIL and numpy are used here (no torch), so the suite generator and the tests stay light.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from PIL import Image

from pytest_vleval.builtin.render import (
    BACKGROUND,
    COLOURS,
    GRID,
    NUMBER_WORDS,
    PLURALS,
    REGIONS,
    SHAPES,
    WORDS,
    Bar,
    Scene,
    Shape,
    caption,
    grounding_answer,
    random_shapes,
    render_chart,
    render_shapes,
    render_text,
    to_qwen_grid,
    with_article,
)
from pytest_vleval.cases.prompts import TASK_PROMPTS

__all__ = [
    "BACKGROUND",
    "COLOURS",
    "GRID",
    "HELD_OUT_SEED_BASE",
    "NUMBER_WORDS",
    "PLURALS",
    "SHAPES",
    "TASKS",
    "WORDS",
    "Bar",
    "Example",
    "Scene",
    "Shape",
    "caption",
    "grounding_answer",
    "make_example",
    "render_chart",
    "render_shapes",
    "render_text",
    "to_qwen_grid",
    "with_article",
]

# Each task's examples come from its own stream; the bundled suite draws from seeds at or above this base.
HELD_OUT_SEED_BASE = 1 << 40
TASKS: tuple[str, ...] = (
    "caption",
    "colour",
    "shape",
    "count",
    "position",
    "ocr",
    "chart",
    "multi_image",
    "dialogue",
    "grounding",
)


@dataclass(frozen=True, eq=False)
class Example:
    """One or more images and a dialogue about them; `turns` are `(question, answer)` pairs."""

    task: str
    seed: int
    scenes: tuple[Scene, ...]
    turns: tuple[tuple[str, str], ...]
    box: tuple[int, int, int, int] | None = None  # grounding target, original pixels
    label: str | None = None  # grounding target's label
    meta: dict = field(default_factory=dict)

    @property
    def images(self) -> tuple[Image.Image, ...]:
        return tuple(s.image for s in self.scenes)


class _Made(NamedTuple):
    scenes: tuple[Scene, ...]
    turns: tuple[tuple[str, str], ...]
    box: tuple[int, int, int, int] | None = None
    label: str | None = None
    meta: dict | None = None


def _distinct(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` (kind, colour) pairs with all kinds and all colours different."""
    return list(zip(rng.sample(SHAPES, n), rng.sample(list(COLOURS), n), strict=True))


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]


def _caption(rng: random.Random, size: int) -> _Made:
    (k1, c1), (k2, c2) = _distinct(rng, 2)
    if rng.random() < 0.3:
        scene = random_shapes(rng, size, [(k1, c1, None)])
    else:
        r1, r2 = rng.choice([("left", "right"), ("top", "bottom")])
        scene = random_shapes(rng, size, [(k1, c1, r1), (k2, c2, r2)])
    # Drawn after the scene, so the choice of wording never changes an image. The bundled suite and golden set
    # ask with lmms-eval's COCO caption prompt (cases/prompts.py), drawn most often here.
    coco = TASK_PROMPTS["caption"].question
    q = _pick(rng, (coco, coco, "Describe the image.", "Describe the image briefly.", "What is in the image?"))
    return _Made((scene,), ((q, caption(scene)),))


def _one_of(rng: random.Random, size: int, alone: Sequence[str], among: Sequence[str], ask_by: int) -> _Made:
    """One to three shapes; the question names the target by its colour or kind (`ask_by`: 1 or 0) and the
    answer is the other attribute."""
    n = rng.choice((1, 1, 2, 3))
    items = _distinct(rng, n)
    scene = random_shapes(rng, size, [(k, c, None) for k, c in items])
    target = rng.randrange(n)
    q = _pick(rng, alone) if n == 1 else _pick(rng, among).format(items[target][ask_by])
    return _Made((scene,), ((q, items[target][1 - ask_by]),))


def _colour(rng: random.Random, size: int) -> _Made:
    alone = ("What colour is the shape?", "What color is the shape?", "What colour is it?")
    return _one_of(rng, size, alone, ("What colour is the {}?", "What color is the {}?"), ask_by=0)


def _shape(rng: random.Random, size: int) -> _Made:
    alone = ("What shape is this?", "What shape is in the image?")
    return _one_of(rng, size, alone, ("What shape is {}?", "Which shape is {}?"), ask_by=1)


def _count(rng: random.Random, size: int) -> _Made:
    n = rng.randint(1, 5)
    by_colour = rng.random() < 0.4
    others = rng.randint(0, min(2, 6 - n))
    if by_colour:
        colour, other_colours = rng.choice(list(COLOURS)), list(COLOURS)
        other_colours.remove(colour)
        items = [(rng.choice(SHAPES), colour, None) for _ in range(n)]
        items += [(rng.choice(SHAPES), rng.choice(other_colours), None) for _ in range(others)]
        q = f"How many {colour} shapes are there?"
    else:
        kind, other_kinds = rng.choice(SHAPES), [s for s in SHAPES]
        other_kinds.remove(kind)
        items = [(kind, rng.choice(list(COLOURS)), None) for _ in range(n)]
        items += [(rng.choice(other_kinds), rng.choice(list(COLOURS)), None) for _ in range(others)]
        q = f"How many {PLURALS[kind]} are there?"
    rng.shuffle(items)
    scene = random_shapes(rng, size, items, sides=(16,))
    return _Made((scene,), ((q, str(n)),))


def _position(rng: random.Random, size: int) -> _Made:
    region = rng.choice(list(REGIONS))
    n = rng.choice((1, 2))
    items = _distinct(rng, n)
    placed = [(items[0][0], items[0][1], region)]
    if n == 2:
        other = rng.choice([r for r in REGIONS if r != region])
        placed.append((items[1][0], items[1][1], other))
    scene = random_shapes(rng, size, placed)
    q = _pick(rng, ("Where is the {}?", "Where is the {} in the image?")).format(scene.shapes[0].name)
    return _Made((scene,), ((q, region),))


def _ocr(rng: random.Random, size: int) -> _Made:
    if rng.random() < 0.7:
        text = rng.choice(WORDS)
        q = _pick(rng, ("What word is written in the image?", "Read the text in the image."))
    else:
        text = str(rng.randint(0, 999))
        q = _pick(rng, ("What number is written in the image?", "Read the text in the image."))
    scene = render_text(text, width=2 * size, height=size // 2, rng=rng)
    return _Made((scene,), ((q, text),))


def _chart(rng: random.Random, size: int) -> _Made:
    n = rng.randint(3, 4)
    colours = rng.sample(list(COLOURS), n)
    while True:
        values = [rng.randint(1, 9) for _ in range(n)]
        if values.count(max(values)) == 1 and values.count(min(values)) == 1:
            break
    scene = render_chart(list(zip(colours, values, strict=True)), size)
    kind = rng.choice(("value", "value", "max", "min", "count"))
    if kind == "value":
        i = rng.randrange(n)
        q, a = f"What is the value of the {colours[i]} bar?", str(values[i])
    elif kind == "max":
        q, a = "Which bar is the tallest?", colours[values.index(max(values))]
    elif kind == "min":
        q, a = "Which bar is the shortest?", colours[values.index(min(values))]
    else:
        q, a = "How many bars are there?", str(n)
    return _Made((scene,), ((q, a),), meta={"kind": kind})


def _multi_image(rng: random.Random, size: int) -> _Made:
    (k1, c1), (k2, c2) = _distinct(rng, 2)
    kind = rng.choice(("colour", "shape", "which_colour", "which_shape"))
    if kind in ("colour", "shape") and rng.random() < 0.5:
        k2, c2 = (rng.choice([k for k in SHAPES if k != k1]), c1) if kind == "colour" else (k1, c2)
    a = random_shapes(rng, size, [(k1, c1, None)])
    b = random_shapes(rng, size, [(k2, c2, None)])
    if kind == "colour":
        q, ans = "Are the shapes in the two images the same colour?", "yes" if c1 == c2 else "no"
    elif kind == "shape":
        q, ans = "Do the two images show the same shape?", "yes" if k1 == k2 else "no"
    elif kind == "which_colour":
        first = rng.random() < 0.5
        q = f"What colour is the shape in the {'first' if first else 'second'} image?"
        ans = c1 if first else c2
    else:
        first = rng.random() < 0.5
        q = f"What shape is in the {'first' if first else 'second'} image?"
        ans = k1 if first else k2
    return _Made((a, b), ((q, ans),), meta={"kind": kind})


def _dialogue(rng: random.Random, size: int) -> _Made:
    (k1, c1), (k2, c2) = _distinct(rng, 2)
    scene = random_shapes(rng, size, [(k1, c1, "left"), (k2, c2, "right")])
    side, (kind, colour) = rng.choice([("left", (k1, c1)), ("right", (k2, c2))])
    if rng.random() < 0.5:
        turns = (
            (f"What shape is on the {side}?", kind),
            (_pick(rng, ("And what colour is it?", "What colour is it?")), colour),
        )
    else:
        turns = (
            (f"What colour is the {kind}?", colour),
            (_pick(rng, ("And where is it?", "Where is it?")), side),
        )
    return _Made((scene,), turns)


def _grounding(rng: random.Random, size: int) -> _Made:
    n = rng.randint(1, 3)
    items = _distinct(rng, n)
    scene = random_shapes(rng, size, [(k, c, None) for k, c in items])
    target = scene.shapes[rng.randrange(n)]
    q = f"Locate the {target.name} and output its bbox coordinates in JSON format."
    return _Made((scene,), ((q, grounding_answer(target.box, target.name, size, size)),), target.box, target.name)


_BUILDERS: dict[str, Callable[[random.Random, int], _Made]] = {
    "caption": _caption,
    "colour": _colour,
    "shape": _shape,
    "count": _count,
    "position": _position,
    "ocr": _ocr,
    "chart": _chart,
    "multi_image": _multi_image,
    "dialogue": _dialogue,
    "grounding": _grounding,
}


def make_example(task: str, seed: int, size: int = 64) -> Example:
    """The example number `seed` of `task`; the same arguments always give the same images and answers."""
    if task not in _BUILDERS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    made = _BUILDERS[task](random.Random(f"{task}/{seed}"), size)
    return Example(
        task=task, seed=seed, scenes=made.scenes, turns=made.turns, box=made.box, label=made.label, meta=made.meta or {}
    )
