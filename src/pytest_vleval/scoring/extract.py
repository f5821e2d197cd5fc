"""Answer extraction: the explicit, named steps that turn a model's raw answer into the text a scorer compares.

Real models wrap short answers in reasoning blocks, code fences, quotes, "Answer:" labels and full stops. The
reference pipelines remove these before the official scoring (LLaVA's VQAv2 submission script runs the EvalAI
answer processor over every prediction); here each scorer has a documented default pipeline
(:data:`DEFAULT_STEPS`), a case may name its own (``answer: [thinking, period]``, or ``answer: raw``), and the
raw and the extracted answer are both shown and stored. The scorers themselves stay the official algorithms.
Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# The backends strip a Thinking model's reasoning too (its answer as decoded), so the step lives with them: the
# answer cache's key covers the backends' code, and scoring changes must not invalidate cached answers.
from pytest_vleval.backends.families import strip_thinking
from pytest_vleval.scoring.cjk import cjk_answer
from pytest_vleval.scoring.vqa import _vqa_clean, _vqa_process_digit_article, _vqa_process_punctuation

__all__ = [
    "DEFAULT_STEPS",
    "STEPS",
    "evalai_answer",
    "extract",
    "pipeline_for",
    "strip_thinking",
    "validate_steps",
]


_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def strip_fences(text: str) -> str:
    """The inside of the first Markdown code fence (```json ... ```), else the text unchanged."""
    found = _FENCE.search(text)
    return found.group(1).strip() if found else text.strip()


# "Answer: x", "Final answer: x", "The answer is x", "答案：x" at the start of the answer.
_LABEL = re.compile(r"^\s*(?:(?:the\s+)?(?:final\s+)?answer\s*(?:[:：]|is\b:?)|答案\s*(?:[:：]|是))\s*", re.IGNORECASE)


def strip_label(text: str) -> str:
    """Drop a leading "Answer:" / "Final answer:" / "The answer is" / "答案：" label."""
    stripped = _LABEL.sub("", text, count=1)
    return stripped.strip() if stripped.strip() else text.strip()


_PAIRS = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("`", "`"), ("**", "**"), ("*", "*"), ("「", "」"))


def strip_quotes(text: str) -> str:
    """Remove quotes or Markdown emphasis around the whole answer ("green", **green**, `green`, 「绿色」),
    also when a full stop follows them ("green"., **Green**.)."""
    text = text.strip()
    changed = True
    while changed:
        changed = False
        body, tail = (text[:-1], text[-1]) if text.endswith((".", "。")) else (text, "")
        for left, right in _PAIRS:
            if len(body) > len(left) + len(right) and body.startswith(left) and body.endswith(right):
                inner = body[len(left) : len(body) - len(right)].strip()
                if left not in inner:  # "a" and "b" is not one quoted answer
                    text, changed = inner + tail, True
                    break
    return text


def strip_period(text: str) -> str:
    """Drop one full stop (. or 。) at the end."""
    text = text.strip()
    return text[:-1].rstrip() if text.endswith((".", "。")) else text


def evalai_answer(text: str) -> str:
    """The EvalAI answer processor, as LLaVA's VQAv2 submission script applies it to every prediction
    (``llava/eval/m4c_evaluator.py`` EvalAIAnswerProcessor, from pythia/MMF): lower case, commas and question
    marks removed, then the official VQA punctuation, number-word, article and contraction rules."""
    word = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return _vqa_process_digit_article(_vqa_process_punctuation(_vqa_clean(word)))


STEPS: dict[str, Callable[[str], str]] = {
    "thinking": strip_thinking,
    "fences": strip_fences,
    "label": strip_label,
    "quotes": strip_quotes,
    "period": strip_period,
    "evalai": evalai_answer,
    "cjk": cjk_answer,
}
STEP_HELP: dict[str, str] = {
    "thinking": "drop <think>...</think> reasoning",
    "fences": "take the inside of a ``` code fence",
    "label": 'drop a leading "Answer:" / "The answer is" / "答案："',
    "quotes": "drop quotes or **emphasis** around the whole answer",
    "period": "drop one trailing full stop (. or 。)",
    "evalai": "the EvalAI answer processor (LLaVA's VQAv2 submission step)",
    "cjk": "NFKC, Chinese punctuation as ASCII, a whole Chinese count as digits (三个 -> 3)",
}

_SHORT = ("thinking", "fences", "label", "quotes", "period")
DEFAULT_STEPS: dict[str, tuple[str, ...]] = {
    "exact": _SHORT,
    "exact_normalized": ("thinking", "fences", "label", "quotes"),
    "any_of": ("thinking", "fences", "label", "quotes"),
    "contains": ("thinking",),
    "regex": ("thinking",),
    "vqa_accuracy": (*_SHORT, "evalai"),
    "anls": _SHORT,
    "numeric": ("thinking", "fences", "label"),
    "relaxed_accuracy": _SHORT,
    # Containment on the raw answer: cutting text away (a full stop, quotes, a fence) can only lose official
    # matches ("WOOD LUMBER CO." is an answer), never add one; only reasoning, which may quote wrong readings, goes.
    "ocrbench": ("thinking",),
    "iou": ("thinking",),  # the box parser reads fences and JSON itself
    "choice": ("thinking", "fences"),  # the letter is read by VLMEvalKit's rules, which see through the rest
}


def validate_steps(value: Any) -> tuple[str, ...] | None:
    """A case's ``answer:`` value as step names; None for "default". Raises ValueError saying what is wrong."""
    if value is None or value == "default":
        return None
    if value == "raw":
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError(f"expected 'default', 'raw' or a list of steps ({', '.join(STEPS)}), got {value!r}")
    unknown = [v for v in items if v not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(map(repr, unknown))}; known: {', '.join(STEPS)}")
    return tuple(items)


def pipeline_for(scorer: str, steps: Sequence[str] | None, options: Mapping[str, Any]) -> tuple[str, ...]:
    """The steps applied before `scorer`: the case's own, else the scorer's default. ``vqa_accuracy`` with
    ``mode: official`` scores the raw answer, exactly as vqaEval.py does."""
    if steps is not None:
        return tuple(steps)
    if scorer == "vqa_accuracy" and options.get("mode") == "official":
        return ()
    if scorer == "vqa_accuracy" and options.get("mode") == "zh":  # the EvalAI step is English; zh normalises itself
        return _SHORT
    return DEFAULT_STEPS.get(scorer, ("thinking",))


def extract(answer: str, steps: Sequence[str]) -> str:
    """`answer` after `steps`, in order."""
    for step in steps:
        answer = STEPS[step](answer)
    return answer
