"""Task prompts as data: the format instruction each kind of question carries, taken from the reference
evaluations, and how a case's question becomes the text the model is sent.

A case (or its file's ``defaults``) names a ``task``; the task's instruction is added around the question unless
the case gives its own ``pre_prompt`` / ``post_prompt`` or a ``prompt`` template with ``{question}``. A case with
no ``task`` and no prompt keys is sent its question verbatim. Grounding by referring expression (``refer:``)
takes its wording from the model's family (``backends/families.py``), so it is rendered per model, not here.
Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "QUESTION_SLOT",
    "SHORT_ANSWER",
    "SHORT_ANSWER_ZH",
    "TASK_PROMPTS",
    "PromptSpec",
    "TaskPrompt",
    "is_chinese",
    "task_prompt",
]

QUESTION_SLOT = "{question}"

# LLaVA-1.5's short-answer instruction (its VQAv2/GQA/TextVQA question files), also lmms-eval's post_prompt for
# vqav2, textvqa, docvqa and gqa.
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
# VLMEvalKit's model wrappers (InternVL, MiniCPM-V, ...) send this instead when the question is Chinese.
SHORT_ANSWER_ZH = "\n请用单个词或短语回答问题。"
# VLMEvalKit's `cn_string`: a question with a character in this range is Chinese.
_CHINESE = re.compile("[\u4e00-\u9fa5]")


def is_chinese(question: str) -> bool:
    """Whether `question` is asked in Chinese (VLMEvalKit's rule: it holds a CJK unified ideograph)."""
    return _CHINESE.search(question) is not None


@dataclass(frozen=True)
class TaskPrompt:
    """A task kind's default instruction around the question, and where it comes from."""

    pre: str = ""
    post: str = ""
    question: str | None = None  # the question itself when a case gives none (captioning)
    source: str = ""
    post_zh: str | None = None  # the instruction after a Chinese question, where one is published


TASK_PROMPTS: dict[str, TaskPrompt] = {
    "vqa": TaskPrompt(
        post=SHORT_ANSWER,
        source="LLaVA-1.5 VQAv2/GQA evaluation; lmms-eval tasks/vqav2 post_prompt",
        post_zh=SHORT_ANSWER_ZH,
    ),
    "count": TaskPrompt(
        post="\nAnswer with a single number.",
        source="lmms-eval tasks/countbenchqa and tasks/pixmo_count post_prompt",
        post_zh=SHORT_ANSWER_ZH,
    ),
    "ocr": TaskPrompt(
        post=SHORT_ANSWER,
        source="lmms-eval tasks/textvqa and tasks/docvqa post_prompt; LLaVA-1.5 TextVQA evaluation",
        post_zh=SHORT_ANSWER_ZH,
    ),
    "chart": TaskPrompt(
        post="\nAnswer the question with a single word.",
        source="lmms-eval tasks/chartqa post_prompt",
        post_zh=SHORT_ANSWER_ZH,
    ),
    "multi_image": TaskPrompt(
        post=SHORT_ANSWER,
        # Multi-image benchmarks publish multiple-choice instructions (MuirBench, BLINK) or none (LLaVA-Interleave's
        # open questions); short open answers get the VQAv2 instruction.
        source="the VQAv2 instruction (no multi-image benchmark publishes one for short open answers)",
        post_zh=SHORT_ANSWER_ZH,
    ),
    "caption": TaskPrompt(
        question="Provide a one-sentence caption for the provided image.",
        source="lmms-eval tasks/coco_cap (COCO Caption) prompt",
    ),
    "choice": TaskPrompt(
        post="\nAnswer with the option's letter from the given choices directly.",
        source="LLaVA-1.5 MMBench evaluation (model_vqa_mmbench.py); VLMEvalKit's multiple-choice prompt",
        post_zh="\n请直接回答选项字母。",
    ),
    "grounding": TaskPrompt(source="the model family's own grounding prompt (refer:), see docs/families.md"),
}


@dataclass(frozen=True)
class PromptSpec:
    """How a question is wrapped: a template with ``{question}``, or text before and after it."""

    pre: str = ""
    post: str = ""
    template: str | None = None
    task: str | None = None

    @property
    def is_plain(self) -> bool:
        return not (self.pre or self.post or self.template)

    def render(self, question: str) -> str:
        """The text sent for `question`. Only the ``{question}`` slot is filled: other braces stay as written."""
        if self.template is not None:
            return self.template.replace(QUESTION_SLOT, question)
        return f"{self.pre}{question}{self.post}"

    @classmethod
    def for_task(cls, task: str | None, question: str = "") -> PromptSpec:
        """`task`'s default instruction; for a Chinese `question` its Chinese one where it has one
        (VLMEvalKit's wrappers switch the same way, see :data:`SHORT_ANSWER_ZH`)."""
        if task is None:
            return cls()
        default = TASK_PROMPTS[task]
        post = default.post_zh if default.post_zh is not None and is_chinese(question) else default.post
        return cls(pre=default.pre, post=post, task=task)


def task_prompt(task: str | None, question: str) -> str:
    """`question` with `task`'s default instruction (what a bundled case of that task sends)."""
    return PromptSpec.for_task(task, question).render(question)
