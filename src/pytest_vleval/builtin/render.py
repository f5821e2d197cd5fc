"""Drawing procedural scenes with exact ground truth: coloured shapes on an 8-pixel grid, rendered words and
numbers, simple bar charts, and how they are described (captions, Qwen3-VL grounding answers).

Boxes are measured on the rendered pixels: `box = (x1, y1, x2, y2)` is the tight box of the object's pixels in
continuous coordinates (`x2 = last column + 1`), so a box and its pixels cannot disagree. PIL and numpy only.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pytest_vleval.builtin.words import EN, Words

BACKGROUND = (128, 128, 128)  # mid-grey: 0 after the Qwen-VL normalisation, so shapes stand out
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 0),
    "purple": (140, 50, 170),
    "orange": (250, 120, 0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
WORDS: tuple[str, ...] = (
    "cat", "dog", "sun", "map", "box", "cup", "pen", "key", "car", "bus",
    "tree", "fish", "bird", "book", "door", "lamp", "milk", "rain", "snow", "star",
    "apple", "bread", "chair", "clock", "green", "house", "light", "music", "paper", "plant",
    "river", "stone", "table", "water", "world", "model", "pixel", "vision", "pytest", "image",
)  # fmt: skip
# Regions for absolute positions, as fractions of the canvas: centre x range, centre y range.
REGIONS = {
    "left": ((0.12, 0.3), (0.3, 0.7)),
    "right": ((0.7, 0.88), (0.3, 0.7)),
    "top": ((0.3, 0.7), (0.12, 0.3)),
    "bottom": ((0.3, 0.7), (0.7, 0.88)),
}
# Objects sit on an 8-pixel grid (the built-in model's patch size), with at least one empty cell between
# them: a small vision transformer then sees each kind of shape as the same few patches wherever it is.
GRID = 8
_GAP = GRID


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    box: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2


@dataclass(frozen=True)
class Bar:
    colour: str
    value: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class Scene:
    image: Image.Image
    shapes: tuple[Shape, ...] = ()
    text: str | None = None
    text_box: tuple[int, int, int, int] | None = None
    bars: tuple[Bar, ...] = ()
    chars: tuple[tuple[str, float, float], ...] = ()  # (character, centre x, centre y) of rendered text


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, box: Sequence[int], fill: object) -> None:
    x1, y1, x2, y2 = box
    # Pillow's coordinates are inclusive; the shape covers columns x1..x2-1 and rows y1..y2-1.
    r, b = x2 - 1, y2 - 1
    if kind == "circle":
        draw.ellipse((x1, y1, r, b), fill=fill)
    elif kind == "square":
        draw.rectangle((x1, y1, r, b), fill=fill)
    elif kind == "triangle":
        draw.polygon([((x1 + r) / 2, y1), (r, b), (x1, b)], fill=fill)
    elif kind == "diamond":
        cx, cy = (x1 + r) / 2, (y1 + b) / 2
        draw.polygon([(cx, y1), (r, cy), (cx, b), (x1, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def _free(box: Sequence[float], taken: Sequence[Sequence[float]]) -> bool:
    x1, y1, x2, y2 = box
    return all(x2 + _GAP <= a1 or a2 + _GAP <= x1 or y2 + _GAP <= b1 or b2 + _GAP <= y1 for a1, b1, a2, b2 in taken)


def _place(
    rng: random.Random,
    size: int,
    side: int,
    taken: Sequence[Sequence[float]],
    region: str | None = None,
) -> tuple[int, int, int, int] | None:
    """A free `side`x`side` box on the `GRID` (centre inside `region` if given), or None."""
    steps = range(0, size - side + 1, GRID)
    if region is None:
        xs = ys = list(steps)
    else:
        (fx1, fx2), (fy1, fy2) = REGIONS[region]
        xs = [x for x in steps if fx1 * size <= x + side / 2 <= fx2 * size]
        ys = [y for y in steps if fy1 * size <= y + side / 2 <= fy2 * size]
    free = [(x, y, x + side, y + side) for x in xs for y in ys if _free((x, y, x + side, y + side), taken)]
    return rng.choice(free) if free else None


def render_shapes(specs: Sequence[tuple[str, str, tuple[int, int, int, int]]], size: int = 64) -> Scene:
    """Draw `(kind, colour, box)` specs on the background and measure each shape's pixel box."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    shapes = []
    for kind, colour, box in specs:
        mask = Image.new("1", (size, size), 0)
        _draw_shape(ImageDraw.Draw(mask), kind, box, 1)
        _draw_shape(draw, kind, box, COLOURS[colour])
        shapes.append(Shape(kind, colour, _mask_box(np.asarray(mask))))
    return Scene(image=image, shapes=tuple(shapes))


def random_shapes(
    rng: random.Random,
    size: int,
    items: Sequence[tuple[str, str, str | None]],
    sides: Sequence[int] = (16, 24),
) -> Scene:
    """Place `(kind, colour, region-or-None)` items without overlap; retries the whole layout if stuck."""
    while True:
        taken: list[tuple[int, int, int, int]] = []
        specs = []
        for kind, colour, region in items:
            box = _place(rng, size, rng.choice(sides), taken, region)
            if box is None:
                break
            taken.append(box)
            specs.append((kind, colour, box))
        else:
            return render_shapes(specs, size)


_FONT_CACHE: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if px not in _FONT_CACHE:
        # Pillow's bundled default font (Aileron Regular): identical on every machine with this Pillow.
        _FONT_CACHE[px] = ImageFont.load_default(size=px)
    return _FONT_CACHE[px]


def render_text(text: str, width: int = 128, height: int = 32, rng: random.Random | None = None, px: int = 12) -> Scene:
    """Render `text` in black on a `width`x`height` strip, one character per `GRID`-pixel cell."""
    rng = rng or random.Random(0)
    cells = width // GRID
    if len(text) > cells - 2:
        raise ValueError(f"{text!r} is longer than {cells - 2} characters")
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(px)
    first = rng.randint(1, cells - 1 - len(text))
    baseline = height // 2 + px // 3
    chars = []
    for i, ch in enumerate(text):
        cx = (first + i) * GRID + GRID / 2
        draw.text((cx, baseline), ch, fill=(0, 0, 0), font=font, anchor="ms")
        chars.append((ch, cx, height / 2))
    arr = np.asarray(image)
    box = _mask_box((arr != BACKGROUND).any(axis=2))
    return Scene(image=image, text=text, text_box=box, chars=tuple(chars))


def render_chart(values: Sequence[tuple[str, int]], size: int = 64, max_value: int = 9) -> Scene:
    """A bar chart: one `GRID`-wide bar per `(colour, value)`, left to right, heights proportional to values."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    base = size - 4
    unit = (base - 4) // max_value
    draw.line((0, base, size - 1, base), fill=(0, 0, 0))
    bars = []
    for i, (colour, value) in enumerate(values):
        x1 = GRID * (1 + 2 * i)
        box = (x1, base - value * unit, x1 + GRID, base)
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=COLOURS[colour])
        bars.append(Bar(colour, value, box))
    return Scene(image=image, bars=tuple(bars))


def to_qwen_grid(box: Sequence[float], width: int, height: int) -> list[int]:
    """Pixel xyxy -> Qwen3-VL's relative 0-1000 grid."""
    x1, y1, x2, y2 = box
    return [
        round(x1 / width * 1000),
        round(y1 / height * 1000),
        round(x2 / width * 1000),
        round(y2 / height * 1000),
    ]


def grounding_answer(box: Sequence[float], label: str, width: int, height: int) -> str:
    """The answer Qwen3-VL gives to a grounding question: JSON with `bbox_2d` on the 0-1000 grid."""
    return json.dumps({"bbox_2d": to_qwen_grid(box, width, height), "label": label})


def _relation(a: Shape, b: Shape) -> str:
    """Where `a` is relative to `b`: the dominant axis of the centre offset."""
    (ax, ay), (bx, by) = a.center, b.center
    if abs(ax - bx) >= abs(ay - by):
        return "to the left of" if ax < bx else "to the right of"
    return "above" if ay < by else "below"


def with_article(noun_phrase: str) -> str:
    """'a red circle', 'an orange square'."""
    return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase


def caption_parts(scene: Scene) -> tuple[Shape, str, Shape]:
    """The two shapes a caption names, in the order it names them, and the relation between them ("to the left
    of", "to the right of" or "above")."""
    first, second = sorted(scene.shapes[:2], key=lambda s: s.center[0] + 0.001 * s.center[1])
    rel = _relation(first, second)
    if rel in ("above", "below"):
        first, second = sorted(scene.shapes[:2], key=lambda s: s.center[1])
        rel = "above"
    return first, rel, second


def caption(scene: Scene, words: Words = EN) -> str:
    """The canonical caption: 'a red circle', or 'a red circle to the left of a blue square'
    (in Chinese: '一个红色的圆形', '一个红色的圆形在一个蓝色的正方形的左边')."""
    if len(scene.shapes) == 1:
        return words.a(scene.shapes[0].colour, scene.shapes[0].kind)
    first, rel, second = caption_parts(scene)
    return words.relation(words.a(first.colour, first.kind), rel, words.a(second.colour, second.kind))
