"""How the built-in scenes are put into words, in English and in Chinese: the names of colours, shapes and
regions, numbers with their counters, captions, and each task's question wordings.

The scene builders (``scenes.py``) draw the same random choices whatever the language (each tuple of wordings
has the same length in both), so an example's images never depend on the language it is asked in. Chinese is
asked for the tasks in :data:`ZH_TASKS`; the wordings are the plain ones a Chinese speaker would use, answers are
the short forms (``红色``, ``圆形``, ``左边``) and counts carry their counter (``三个``, ``四根``), as
instruction-tuned Chinese models answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EN", "LANGS", "ZH", "ZH_TASKS", "Words"]

# Tasks the built-in model is trained and tested on in Chinese (grounding, dialogue and multi-image stay English).
ZH_TASKS: tuple[str, ...] = ("caption", "colour", "shape", "count", "position", "ocr", "chart")

_ZH_DIGITS = "零一二三四五六七八九"


def _zh_number(n: int) -> str:
    """0..99 in Chinese numerals; 2 before a counter is 两 (两个), as spoken."""
    if n == 2:
        return "两"
    if n < 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _ZH_DIGITS[tens]) + "十" + (_ZH_DIGITS[ones] if ones else "")


@dataclass(frozen=True)
class Words:
    """One language's words for the scenes."""

    lang: str
    colours: dict[str, str]
    shapes: dict[str, str]
    plurals: dict[str, str]
    regions: dict[str, str]
    relations: dict[str, str]
    questions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def name(self, colour: str, kind: str) -> str:
        """'red circle' / '红色的圆形'."""
        if self.lang == "zh":
            return f"{self.colours[colour]}的{self.shapes[kind]}"
        return f"{colour} {kind}"

    def word(self, english: str) -> str:
        """A colour, shape or region's word in this language (its English name in, the translation out)."""
        for table in (self.colours, self.shapes, self.regions):
            if english in table:
                return table[english]
        raise KeyError(english)

    def count(self, n: int, counter: str = "个") -> str:
        """A count as answered: '3' / '三个' (bars: '三根')."""
        return f"{_zh_number(n)}{counter}" if self.lang == "zh" else str(n)

    def a(self, colour: str, kind: str) -> str:
        """'a red circle', 'an orange square' / '一个红色的圆形'."""
        if self.lang == "zh":
            return "一个" + self.name(colour, kind)
        phrase = self.name(colour, kind)
        return ("an " if phrase[0] in "aeiou" else "a ") + phrase

    def relation(self, first: str, relation: str, second: str) -> str:
        """'A to the left of B' / 'A在B的左边'."""
        if self.lang == "zh":
            return f"{first}在{second}的{self.relations[relation]}"
        return f"{first} {relation} {second}"

    def yes_no(self, yes: bool) -> str:
        return ("是" if yes else "否") if self.lang == "zh" else ("yes" if yes else "no")


_ENGLISH_NAMES = ("red", "green", "blue", "yellow", "purple", "orange")
EN = Words(
    lang="en",
    colours={c: c for c in _ENGLISH_NAMES},
    shapes={k: k for k in ("circle", "square", "triangle", "diamond")},
    plurals={"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds"},
    regions={r: r for r in ("left", "right", "top", "bottom")},
    relations={r: r for r in ("to the left of", "to the right of", "above", "below")},
    questions={
        "caption": ("Describe the image.", "Describe the image briefly.", "What is in the image?"),
        "colour_alone": ("What colour is the shape?", "What color is the shape?", "What colour is it?"),
        "colour_among": ("What colour is the {}?", "What color is the {}?"),
        "shape_alone": ("What shape is this?", "What shape is in the image?"),
        "shape_among": ("What shape is {}?", "Which shape is {}?"),
        "count_colour": ("How many {} shapes are there?",),
        "count_kind": ("How many {} are there?",),
        "position": ("Where is the {}?", "Where is the {} in the image?"),
        "ocr_word": ("What word is written in the image?", "Read the text in the image."),
        "ocr_number": ("What number is written in the image?", "Read the text in the image."),
        "chart_value": ("What is the value of the {} bar?",),
        "chart_max": ("Which bar is the tallest?",),
        "chart_min": ("Which bar is the shortest?",),
        "chart_count": ("How many bars are there?",),
    },
)
ZH = Words(
    lang="zh",
    colours={"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"},
    shapes={"circle": "圆形", "square": "正方形", "triangle": "三角形", "diamond": "菱形"},
    plurals={"circle": "圆形", "square": "正方形", "triangle": "三角形", "diamond": "菱形"},
    regions={"left": "左边", "right": "右边", "top": "上边", "bottom": "下边"},
    relations={"to the left of": "左边", "to the right of": "右边", "above": "上面", "below": "下面"},
    questions={
        "caption": ("描述这张图片。", "简单描述这张图片。", "图中有什么？"),
        "colour_alone": ("这个形状是什么颜色？", "图中的形状是什么颜色的？", "它是什么颜色？"),
        "colour_among": ("{}是什么颜色？", "{}是什么颜色的？"),
        "shape_alone": ("这是什么形状？", "图中是什么形状？"),
        "shape_among": ("{}的是什么形状？", "{}的形状是什么？"),
        "count_colour": ("图中有几个{}的形状？",),
        "count_kind": ("图中有几个{}？",),
        "position": ("{}在哪里？", "{}在图中的什么位置？"),
        "ocr_word": ("图中写的是什么单词？", "读出图中的文字。"),
        "ocr_number": ("图中写的是什么数字？", "读出图中的文字。"),
        "chart_value": ("{}柱子的数值是多少？",),
        "chart_max": ("哪根柱子最高？",),
        "chart_min": ("哪根柱子最矮？",),
        "chart_count": ("图中有几根柱子？",),
    },
)
LANGS: dict[str, Words] = {"en": EN, "zh": ZH}
# The Chinese caption question of the golden set and bundled caption cases (no harness publishes one for short
# Chinese captions; this is the plain request, "describe this image in one sentence").
ZH_CAPTION_PROMPT = "用一句话描述这张图片。"
