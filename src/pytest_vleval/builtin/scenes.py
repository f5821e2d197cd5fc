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
from pytest_vleval.builtin.words import EN, LANGS, ZH_CAPTION_PROMPT, ZH_TASKS, Words
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
    "ZH_TASKS",
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
    lang: str = "en"  # the language of the questions and answers (builtin/words.py)

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


def _caption(rng: random.Random, size: int, w: Words) -> _Made:
    (k1, c1), (k2, c2) = _distinct(rng, 2)
    if rng.random() < 0.3:
        scene = random_shapes(rng, size, [(k1, c1, None)])
    else:
        r1, r2 = rng.choice([("left", "right"), ("top", "bottom")])
        scene = random_shapes(rng, size, [(k1, c1, r1), (k2, c2, r2)])
    # Drawn after the scene, so the choice of wording never changes an image. The bundled suite and golden set
    # ask with lmms-eval's COCO caption prompt (cases/prompts.py), drawn most often here.
    asked = str(TASK_PROMPTS["caption"].question) if w is EN else ZH_CAPTION_PROMPT
    q = _pick(rng, (asked, asked, *w.questions["caption"]))
    return _Made((scene,), ((q, caption(scene, w)),))


def _one_of(rng: random.Random, size: int, w: Words, task: str, ask_by: int) -> _Made:
    """One to three shapes; the question names the target by its colour or kind (`ask_by`: 1 or 0) and the
    answer is the other attribute."""
    n = rng.choice((1, 1, 2, 3))
    items = _distinct(rng, n)
    scene = random_shapes(rng, size, [(k, c, None) for k, c in items])
    target = rng.randrange(n)
    if n == 1:
        q = _pick(rng, w.questions[f"{task}_alone"])
    else:
        q = _pick(rng, w.questions[f"{task}_among"]).format(w.word(items[target][ask_by]))
    return _Made((scene,), ((q, w.word(items[target][1 - ask_by])),))


def _colour(rng: random.Random, size: int, w: Words) -> _Made:
    return _one_of(rng, size, w, "colour", ask_by=0)


def _shape(rng: random.Random, size: int, w: Words) -> _Made:
    return _one_of(rng, size, w, "shape", ask_by=1)


def _count(rng: random.Random, size: int, w: Words) -> _Made:
    n = rng.randint(1, 5)
    by_colour = rng.random() < 0.4
    others = rng.randint(0, min(2, 6 - n))
    if by_colour:
        colour, other_colours = rng.choice(list(COLOURS)), list(COLOURS)
        other_colours.remove(colour)
        items = [(rng.choice(SHAPES), colour, None) for _ in range(n)]
        items += [(rng.choice(SHAPES), rng.choice(other_colours), None) for _ in range(others)]
        q = w.questions["count_colour"][0].format(w.colours[colour])
    else:
        kind, other_kinds = rng.choice(SHAPES), [s for s in SHAPES]
        other_kinds.remove(kind)
        items = [(kind, rng.choice(list(COLOURS)), None) for _ in range(n)]
        items += [(rng.choice(other_kinds), rng.choice(list(COLOURS)), None) for _ in range(others)]
        q = w.questions["count_kind"][0].format(w.plurals[kind])
    rng.shuffle(items)
    scene = random_shapes(rng, size, items, sides=(16,))
    return _Made((scene,), ((q, w.count(n)),))


def _position(rng: random.Random, size: int, w: Words) -> _Made:
    region = rng.choice(list(REGIONS))
    n = rng.choice((1, 2))
    items = _distinct(rng, n)
    placed = [(items[0][0], items[0][1], region)]
    if n == 2:
        other = rng.choice([r for r in REGIONS if r != region])
        placed.append((items[1][0], items[1][1], other))
    scene = random_shapes(rng, size, placed)
    target = scene.shapes[0]
    q = _pick(rng, w.questions["position"]).format(w.name(target.colour, target.kind))
    return _Made((scene,), ((q, w.regions[region]),))


def _ocr(rng: random.Random, size: int, w: Words) -> _Made:
    if rng.random() < 0.7:
        text = rng.choice(WORDS)
        q = _pick(rng, w.questions["ocr_word"])
    else:
        text = str(rng.randint(0, 999))
        q = _pick(rng, w.questions["ocr_number"])
    scene = render_text(text, width=2 * size, height=size // 2, rng=rng)
    return _Made((scene,), ((q, text),))


def _chart(rng: random.Random, size: int, w: Words) -> _Made:
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
        q, a = w.questions["chart_value"][0].format(w.colours[colours[i]]), str(values[i])
    elif kind == "max":
        q, a = w.questions["chart_max"][0], w.colours[colours[values.index(max(values))]]
    elif kind == "min":
        q, a = w.questions["chart_min"][0], w.colours[colours[values.index(min(values))]]
    else:
        q, a = w.questions["chart_count"][0], w.count(n, "根")
    return _Made((scene,), ((q, a),), meta={"kind": kind})


def _multi_image(rng: random.Random, size: int, w: Words) -> _Made:
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


def _dialogue(rng: random.Random, size: int, w: Words) -> _Made:
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


def _grounding(rng: random.Random, size: int, w: Words) -> _Made:
    n = rng.randint(1, 3)
    items = _distinct(rng, n)
    scene = random_shapes(rng, size, [(k, c, None) for k, c in items])
    target = scene.shapes[rng.randrange(n)]
    q = f"Locate the {target.name} and output its bbox coordinates in JSON format."
    return _Made((scene,), ((q, grounding_answer(target.box, target.name, size, size)),), target.box, target.name)


_BUILDERS: dict[str, Callable[[random.Random, int, Words], _Made]] = {
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


def make_example(task: str, seed: int, size: int = 64, lang: str = "en") -> Example:
    """The example number `seed` of `task`, asked in `lang` ("en", or "zh" for the tasks in `ZH_TASKS`); the same
    arguments always give the same images and answers, and the same task and seed the same images in both."""
    if task not in _BUILDERS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if lang != "en" and (lang not in LANGS or task not in ZH_TASKS):
        raise ValueError(f"task {task!r} is not asked in {lang!r}; Chinese tasks: {', '.join(ZH_TASKS)}")
    made = _BUILDERS[task](random.Random(f"{task}/{seed}"), size, LANGS[lang])
    return Example(
        task=task,
        seed=seed,
        scenes=made.scenes,
        turns=made.turns,
        box=made.box,
        label=made.label,
        meta=made.meta or {},
        lang=lang,
    )
