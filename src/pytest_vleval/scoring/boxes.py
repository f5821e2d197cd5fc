"""Boxes: each family's box convention, the parser that reads a model's box, IoU and the iou scorer."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_vleval.scoring.base import Box, ScoreContext, ScoreResult

BOX_CONVENTIONS: dict[str, str] = {
    "qwen3": 'Qwen3-VL: JSON "bbox_2d": [x1, y1, x2, y2] (or a bare list) on a 0-1000 grid',
    "qwen2": "Qwen2-VL: <|box_start|>(x1,y1),(x2,y2)<|box_end|> on a 0-1000 grid",
    "qwen2.5": 'Qwen2.5-VL: JSON "bbox_2d" in absolute pixels of the resized model input',
    "qwen-vl": "Qwen-VL: <box>(x1,y1),(x2,y2)</box> on a 0-999 grid",
    "cogvlm": "CogVLM: [[x1,y1,x2,y2]] (boxes separated by ';') on a 0-1000 grid, three digits (000-999)",
    "minigpt-v2": "MiniGPT-v2: {<x1><y1><x2><y2>} on a 0-100 grid",
    "internvl": "InternVL: <ref>..</ref><box>[[x1, y1, x2, y2]]</box> on a 0-1000 grid",
    "normalized": "[x1, y1, x2, y2] as fractions of the width and height, in [0, 1]",
}

_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_LIST4 = rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]"
_BBOX_2D = re.compile(rf"""["']?bbox_2d["']?\s*:\s*{_LIST4}""")
_BARE_LIST = re.compile(_LIST4)
_PAIRS = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_BARE_PAIRS = re.compile(_PAIRS)
# A bare `[[x1,y1,x2,y2]]`: InternVL's answer without its <box> tags (its eval parser reads this too).
_COGVLM = re.compile(rf"\[\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[;\]]")


def _numbers(values: Sequence[str]) -> Box | None:
    numbers = tuple(float(v) for v in values)
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers[0], numbers[1], numbers[2], numbers[3]


def _check_size(size: Any, what: str) -> tuple[float, float]:
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (width, height) pair, not {size!r}") from None
    if not (width > 0 and height > 0):
        raise ValueError(f"{what} must be positive, not {size!r}")
    return float(width), float(height)


# Keys under which models put a box in JSON, and the object's name.
_BOX_KEYS = ("bbox_2d", "bbox", "box", "bbox_xyxy", "box_2d", "coordinates")
_LABEL_KEYS = ("label", "name", "object", "category", "description", "ref")


def _as_box(value: Any) -> Box | None:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]  # [[x1, y1, x2, y2]]
    if not (isinstance(value, list) and len(value) == 4):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    return _numbers([str(v) for v in value])


def _walk_json(value: Any, out: list[tuple[Box, str | None]]) -> None:
    """Boxes in a decoded JSON value: objects with a box key (and a label), bare 4-number lists, nested lists."""
    if isinstance(value, dict):
        for key in _BOX_KEYS:
            box = _as_box(value.get(key))
            if box is not None:
                label = next((value[k] for k in _LABEL_KEYS if isinstance(value.get(k), str)), None)
                out.append((box, label))
                return
        for item in value.values():
            _walk_json(item, out)
    elif isinstance(value, list):
        box = _as_box(value)
        if box is not None:
            out.append((box, None))
            return
        for item in value:
            _walk_json(item, out)


_FENCED = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def _json_boxes(text: str) -> list[tuple[Box, str | None]]:
    """Boxes from the first JSON value in the answer (inside a code fence if there is one)."""
    fenced = _FENCED.search(text)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for start, char in enumerate(body):
        if char not in "[{":
            continue
        try:
            value, _ = decoder.raw_decode(body, start)
        except ValueError:
            continue
        out: list[tuple[Box, str | None]] = []
        _walk_json(value, out)
        if out:
            return out
    return []


def _regex_boxes(patterns: Sequence[re.Pattern[str]], text: str) -> list[tuple[Box, str | None]]:
    """Every match of the first pattern that matches; a pattern's named group 'label' is the box's label."""
    for pattern in patterns:
        found = []
        for match in pattern.finditer(text):
            groups = match.groupdict()
            box = _numbers([g for name, g in _indexed_groups(match) if name is None])
            if box is not None:
                label = groups.get("label")
                found.append((box, label.strip() if isinstance(label, str) else None))
        if found:
            return found
    return []


def _indexed_groups(match: re.Match[str]) -> list[tuple[str | None, str]]:
    names = {index: name for name, index in match.re.groupindex.items()}
    return [(names.get(i), match.group(i)) for i in range(1, (match.re.groups or 0) + 1)]


_REF = r"(?:<ref>(?P<label>.*?)</ref>\s*)?"
_OBJ_REF = r"(?:<\|object_ref_start\|>(?P<label>.*?)<\|object_ref_end\|>\s*)?"
_QWEN2_TAGGED_L = re.compile(rf"{_OBJ_REF}<\|box_start\|>\s*{_PAIRS}\s*<\|box_end\|>")
_QWENVL_TAGGED_L = re.compile(rf"{_REF}<box>\s*{_PAIRS}\s*</box>")
_INTERNVL = re.compile(rf"{_REF}<box>\s*\[\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]")
# MiniGPT-v2's eval_ref.py: `{<x1><y1><x2><y2>}`, integers divided by 100 (its `--res`).
_MINIGPT_L = re.compile(
    rf"(?:<p>(?P<label>.*?)</p>\s*)?\{{\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*\}}"
)
# CogVLM's `[[x0,y0,x1,y1;x0,y0,x1,y1]]`: one box per ';'-separated group.
_COGVLM_BOX = re.compile(rf"(?:\[\[|;)\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*(?=[;\]])")


def _raw_boxes(text: str, convention: str) -> tuple[list[tuple[Box, str | None]], float, float]:
    """(boxes as written with their labels, the grid's x and y extent) in `convention`."""
    if convention in ("qwen3", "qwen2.5", "normalized"):
        boxes = _json_boxes(text) or _regex_boxes((_BBOX_2D, _BARE_LIST), text)
        grid = {"qwen3": 1000.0, "normalized": 1.0}.get(convention, 0.0)
        return boxes, grid, grid
    if convention == "qwen2":
        return _regex_boxes((_QWEN2_TAGGED_L, _BARE_PAIRS), text), 1000.0, 1000.0
    if convention == "internvl":
        return _regex_boxes((_INTERNVL, _COGVLM), text), 1000.0, 1000.0
    if convention == "cogvlm":
        return _regex_boxes((_COGVLM_BOX,), text), 1000.0, 1000.0
    if convention == "minigpt-v2":
        return _regex_boxes((_MINIGPT_L,), text), 100.0, 100.0
    return _regex_boxes((_QWENVL_TAGGED_L, _BARE_PAIRS), text), 999.0, 999.0


def parse_boxes(
    text: str,
    convention: str = "qwen3",
    *,
    image_size: tuple[int, int],
    resized_size: tuple[int, int] | None = None,
) -> list[tuple[Box, str | None]]:
    """Every box in a model's answer with its label (None where the model gave none), in original-image pixels
    xyxy, in answer order.

    ``convention`` says how the model writes boxes (see :data:`BOX_CONVENTIONS`); it is never guessed from the
    numbers. JSON conventions read fenced JSON, lists of objects with ``bbox_2d`` / ``bbox`` and ``label``, and
    bare lists. Reversed corners are swapped and boxes are clipped to the image. ``resized_size`` is the
    model-input (width, height), needed for "qwen2.5" only. An unknown convention or a missing size raises
    ValueError: those are set-up errors, not bad answers.
    """
    if convention not in BOX_CONVENTIONS:
        raise ValueError(f"unknown box convention {convention!r}; known: {', '.join(BOX_CONVENTIONS)}")
    width, height = _check_size(image_size, "image_size")
    if convention == "qwen2.5" and resized_size is None:
        raise ValueError("qwen2.5 boxes are pixels of the resized model input: resized_size is needed")
    raw, grid_x, grid_y = _raw_boxes(text, convention)
    if convention == "qwen2.5":
        assert resized_size is not None
        grid_x, grid_y = _check_size(resized_size, "resized_size")
    sx, sy = width / grid_x, height / grid_y
    out = []
    for (a, b, c, d), label in raw:
        x1, x2 = sorted((min(max(a * sx, 0.0), width), min(max(c * sx, 0.0), width)))
        y1, y2 = sorted((min(max(b * sy, 0.0), height), min(max(d * sy, 0.0), height)))
        out.append(((x1, y1, x2, y2), label))
    return out


def parse_box(
    text: str,
    convention: str = "qwen3",
    *,
    image_size: tuple[int, int],
    resized_size: tuple[int, int] | None = None,
) -> Box | None:
    """The first box in a model's answer, as original-image pixels xyxy, or None if there is none
    (:func:`parse_boxes` has every box and its label)."""
    boxes = parse_boxes(text, convention, image_size=image_size, resized_size=resized_size)
    return boxes[0][0] if boxes else None


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold())) - {"a", "an", "the"}


def choose_box(
    boxes: Sequence[tuple[Box, str | None]], *, label: str | None = None, refer: str | None = None
) -> tuple[tuple[Box, str | None] | None, str]:
    """The box a case is scored on, and how it was chosen.

    With ``label`` (the case's option), the first box whose label equals it (case-insensitive) or contains it;
    none is chosen when no label matches. Otherwise, of several boxes, the one whose label shares most words
    with the referring expression (the first on a tie, or when the model wrote no labels).
    """
    if not boxes:
        return None, ""
    if label is not None:
        wanted = label.casefold().strip()
        for box in boxes:
            name = (box[1] or "").casefold().strip()
            if name == wanted or (name and wanted in name):
                return box, f"the box labelled {box[1]!r}"
        labels = ", ".join(repr(b[1]) for b in boxes if b[1]) or "none"
        return None, f"no box labelled {label!r} among {len(boxes)} (labels: {labels})"
    if len(boxes) == 1:
        return boxes[0], ""
    if refer:
        wanted_words = _words(refer)
        overlaps = [len(wanted_words & _words(b[1] or "")) for b in boxes]
        best = max(range(len(boxes)), key=lambda i: (overlaps[i], -i))
        if overlaps[best]:
            return boxes[best], f"of {len(boxes)} boxes, the one labelled {boxes[best][1]!r}"
    return boxes[0], f"the first of {len(boxes)} boxes"


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes on continuous coordinates (no +1), in [0, 1].

    A box with zero or negative area (including reversed corners) scores 0 against anything.
    """
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    area_a = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1)
    area_b = max(0.0, bx2 - bx1) * max(0.0, by2 - by1)
    if not (area_a > 0 and area_b > 0 and math.isfinite(area_a) and math.isfinite(area_b)):
        return 0.0
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = area_a + area_b - inter
    if not (union > 0 and math.isfinite(union)):
        return 0.0
    return min(1.0, max(0.0, inter / union))


_BRACKETS = (("[", "]"), ("{", "}"), ("(", ")"))
_OPEN_TAGS = (("<box>", "</box>"), ("<ref>", "</ref>"), ("<|box_start|>", "<|box_end|>"))


def cut_off(answer: str) -> str | None:
    """What makes `answer` look cut short (a code fence or bracket opened and never closed), or None. A message
    hint only: a generation that ran out of tokens stops mid-structure, and the failure should say so."""
    if answer.count("```") % 2:
        return "a ``` code fence is never closed"
    for opening, closing in _OPEN_TAGS:
        if answer.count(opening) > answer.count(closing):
            return f"{opening} is never closed"
    for opening, closing in _BRACKETS:
        if answer.count(opening) > answer.count(closing):
            return f"{opening!r} is never closed"
    return None


def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in box) + "]"


def score_iou(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    convention = options.get("convention") or context.box_convention or "qwen3"
    if not context.image_sizes:
        raise ValueError("the iou scorer needs the original image size (ScoreContext.image_sizes)")
    resized = context.resized_sizes[0] if context.resized_sizes else None
    boxes = parse_boxes(prediction, convention, image_size=context.image_sizes[0], resized_size=resized)
    if not boxes:
        detail = f"could not parse a box in the {convention!r} convention ({BOX_CONVENTIONS[convention]})"
        cut = cut_off(prediction)
        if cut:
            detail += f"; the answer looks cut off ({cut}): it may have run out of max_new_tokens, raise it"
        return ScoreResult(0.0, detail, True)
    label = options.get("label")
    chosen, how = choose_box(boxes, label=str(label) if label is not None else None, refer=context.refer)
    if chosen is None:
        return ScoreResult(0.0, how)
    value = box_iou(chosen[0], [float(v) for v in reference])
    detail = f"IoU {value:.2f} with predicted box {_fmt_box(chosen[0])} (original pixels)"
    return ScoreResult(value, f"{detail}; {how}" if how else detail)
