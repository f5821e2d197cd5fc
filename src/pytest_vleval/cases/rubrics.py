"""A judged turn's keys (``scorer: judge``): ``rubric`` — a built-in rubric's name, your own text (scored 1 to 5),
or ``{text: ..., scale: [low, high]}`` — and ``judge_image`` (whether the judge sees the case's images; each
rubric has its default). Checked at collection, with the file, case and key in every message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_vleval.cases.checks import closest
from pytest_vleval.scoring.judge_prompt import RUBRICS, Rubric

__all__ = ["JUDGE_KEYS", "parse_rubric"]

JUDGE_KEYS = ("rubric", "judge_image")


def _custom(value: Any, where: Any, key: str) -> Rubric:
    if isinstance(value, str):
        text, low, high = value, 1, 5
    else:
        unknown = sorted(set(value) - {"text", "scale"})
        if unknown:
            raise where.error(key, f"unknown key(s) {', '.join(map(repr, unknown))}; a rubric has text and scale")
        text = value.get("text")
        if not isinstance(text, str) or not text.strip():
            raise where.error(key, "expected the rubric's text under 'text' (what each score means)")
        scale = value.get("scale", [1, 5])
        ok = isinstance(scale, list) and len(scale) == 2 and all(type(v) is int for v in scale)
        if not ok or scale[0] >= scale[1]:
            raise where.error(key, f"'scale' must be two integers [low, high] with low < high, not {scale!r}")
        low, high = scale
    return Rubric("custom", " ".join(text.split()), low, high)


def _rubric(value: Any, where: Any, key: str) -> Rubric:
    if isinstance(value, str) and value.strip() in RUBRICS:
        return RUBRICS[value.strip()]
    if isinstance(value, str) and len(value.split()) == 1:
        match = closest(value, RUBRICS)
        hint = f" (did you mean {match!r}?)" if match else ""
        raise where.error(
            key,
            f"unknown rubric {value!r}{hint}; built-in: {', '.join(RUBRICS)}, or write your own as a sentence "
            "(what each score from 1 to 5 means)",
        )
    if isinstance(value, str | Mapping):
        return _custom(value, where, key)
    raise where.error(key, f"expected a rubric's name, its text or {{text, scale}}, got {type(value).__name__}")


def parse_rubric(
    settings: Mapping[str, Any], scorer: str, reference: tuple[Any, ...], where: Any, prefix: str
) -> tuple[Rubric | None, bool | None]:
    """(the rubric, whether the judge sees the images; None: the rubric's default) of a turn; (None, None) for
    a turn another scorer scores."""
    if scorer != "judge":
        for key in JUDGE_KEYS:
            if key in settings:
                raise where.error(prefix + key, f"read by scorer 'judge' only, not by {scorer!r}")
        return None, None
    if "rubric" in settings:
        rubric = _rubric(settings["rubric"], where, prefix + "rubric")
    elif reference:
        rubric = RUBRICS["correctness"]
    else:
        raise where.error(
            prefix + "rubric",
            f"missing: scorer 'judge' grades on a rubric ({', '.join(RUBRICS)}, or your own text), or against a "
            "reference answer given as 'expected' (rubric correctness)",
        )
    if rubric.needs_reference and not reference:
        raise where.error(prefix + "expected", f"missing: rubric {rubric.name!r} compares with a reference answer")
    if len(reference) > 1:
        raise where.error(prefix + "expected", "a judged answer has one reference answer, not a list")
    image = settings.get("judge_image")
    if image is not None and not isinstance(image, bool):
        raise where.error(prefix + "judge_image", f"expected true or false, got {image!r}")
    return rubric, image
