"""Boxes: each family's box convention, the parser that reads a model's box, IoU and the iou scorer."""

from __future__ import annotations

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
    "normalized": "[x1, y1, x2, y2] as fractions of the width and height, in [0, 1]",
}

_NUM = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_LIST4 = rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]"
_BBOX_2D = re.compile(rf"""["']?bbox_2d["']?\s*:\s*{_LIST4}""")
_BARE_LIST = re.compile(_LIST4)
_PAIRS = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*,?\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_QWEN2_TAGGED = re.compile(rf"<\|box_start\|>\s*{_PAIRS}\s*<\|box_end\|>")
_QWENVL_TAGGED = re.compile(rf"<box>\s*{_PAIRS}\s*</box>")
_BARE_PAIRS = re.compile(_PAIRS)
# CogVLM's parser reads `[[x0,y0,x1,y1;...]]` and divides by 1000 (THUDM/CogVLM utils); we take the first box.
_COGVLM = re.compile(rf"\[\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*[;\]]")
# MiniGPT-v2's eval_ref.py: `{<x1><y1><x2><y2>}`, integers divided by 100 (its `--res`).
_MINIGPT = re.compile(rf"\{{\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*<\s*({_NUM})\s*>\s*\}}")


def _four(patterns: Sequence[re.Pattern[str]], text: str) -> Box | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            values = tuple(float(v) for v in found.groups())
            if all(math.isfinite(v) for v in values):
                return values[0], values[1], values[2], values[3]
            return None
    return None


def _check_size(size: Any, what: str) -> tuple[float, float]:
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (width, height) pair, not {size!r}") from None
    if not (width > 0 and height > 0):
        raise ValueError(f"{what} must be positive, not {size!r}")
    return float(width), float(height)


def parse_box(
    text: str,
    convention: str = "qwen3",
    *,
    image_size: tuple[int, int],
    resized_size: tuple[int, int] | None = None,
) -> Box | None:
    """The first box in a model's answer, as original-image pixels xyxy, or None if there is none.

    ``convention`` says how the model writes boxes (see :data:`BOX_CONVENTIONS`); it is never guessed from
    the numbers. Reversed corners are swapped and the box is clipped to the image. ``resized_size`` is the
    model-input (width, height), needed for "qwen2.5" only. An unknown convention or a missing size raises
    ValueError: those are set-up errors, not bad answers.
    """
    if convention not in BOX_CONVENTIONS:
        raise ValueError(f"unknown box convention {convention!r}; known: {', '.join(BOX_CONVENTIONS)}")
    width, height = _check_size(image_size, "image_size")
    if convention == "qwen3":
        raw, sx, sy = _four((_BBOX_2D, _BARE_LIST), text), width / 1000, height / 1000
    elif convention == "normalized":
        raw, sx, sy = _four((_BBOX_2D, _BARE_LIST), text), width, height
    elif convention == "qwen2.5":
        if resized_size is None:
            raise ValueError("qwen2.5 boxes are pixels of the resized model input: resized_size is needed")
        resized_w, resized_h = _check_size(resized_size, "resized_size")
        raw, sx, sy = _four((_BBOX_2D, _BARE_LIST), text), width / resized_w, height / resized_h
    elif convention == "qwen2":
        raw, sx, sy = _four((_QWEN2_TAGGED, _BARE_PAIRS), text), width / 1000, height / 1000
    elif convention == "cogvlm":
        raw, sx, sy = _four((_COGVLM,), text), width / 1000, height / 1000
    elif convention == "minigpt-v2":
        raw, sx, sy = _four((_MINIGPT,), text), width / 100, height / 100
    else:
        raw, sx, sy = _four((_QWENVL_TAGGED, _BARE_PAIRS), text), width / 999, height / 999
    if raw is None:
        return None
    x1, y1, x2, y2 = raw[0] * sx, raw[1] * sy, raw[2] * sx, raw[3] * sy
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    return x1, y1, x2, y2


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


def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in box) + "]"


def score_iou(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    convention = options.get("convention") or context.box_convention or "qwen3"
    if not context.image_sizes:
        raise ValueError("the iou scorer needs the original image size (ScoreContext.image_sizes)")
    resized = context.resized_sizes[0] if context.resized_sizes else None
    box = parse_box(prediction, convention, image_size=context.image_sizes[0], resized_size=resized)
    if box is None:
        return ScoreResult(
            0.0,
            f"could not parse a box in the {convention!r} convention ({BOX_CONVENTIONS[convention]})",
            True,
        )
    value = box_iou(box, [float(v) for v in reference])
    return ScoreResult(value, f"IoU {value:.2f} with predicted box {_fmt_box(box)} (original pixels)")
