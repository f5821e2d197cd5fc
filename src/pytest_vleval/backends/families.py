"""Model families: how each is prompted, what it can do, how it writes boxes, and what its answers hold.

The transformers backend (``hf.py``) loads every HF-native family through the Auto classes; a
:class:`FamilyAdapter` carries what differs per family beyond that: the prompt (chat template, or BLIP-2's
``Question: ... Answer:``), capabilities (several images, several turns), the box convention the ``iou``
scorer reads (``scoring.BOX_CONVENTIONS``), the resized input size for families that write boxes in input
pixels (Qwen2.5-VL), end-of-turn tokens, and answer post-processing (a Thinking model's reasoning block).

No torch or transformers at import time: the scorer side (:func:`box_context`) reads ``config.json`` only,
so a run answered entirely from the answer cache never loads a model to score boxes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pytest_vleval.backends.base import Conversation, ModelSpec

__all__ = [
    "ADAPTERS",
    "GENERIC",
    "GROUNDING_PROMPTS",
    "FamilyAdapter",
    "adapter_by_name",
    "adapter_for_config",
    "adapter_for_source",
    "box_context",
    "family_for",
    "strip_thinking",
]


def strip_thinking(text: str) -> str:
    """Remove Qwen3-style ``<think>...</think>`` reasoning and return the stripped answer.

    Chat templates that open ``<think>`` in the prompt leave a dangling ``...</think>`` at the start of the
    output; everything up to the last ``</think>`` is dropped. An unclosed ``<think>`` (generation cut off
    while reasoning) means no answer was given: everything from it on is dropped.
    """
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL)
    _, sep, after = text.rpartition("</think>")
    if sep:
        text = after
    text = text.split("<think>", 1)[0]
    return text.strip()


@dataclass(frozen=True)
class FamilyAdapter:
    """What a family needs beyond the generic AutoProcessor + AutoModelForImageTextToText path.

    A new family is usually one more entry in :data:`ADAPTERS`; override the methods for prompt formats or
    answers that the fields cannot describe.
    """

    name: str  # shown in the summary and in skip reasons
    model_types: tuple[str, ...] = ()  # config.model_type values of the family
    box_convention: str = "normalized"  # a key of scoring.BOX_CONVENTIONS
    multi_image: bool = True
    multi_turn: bool = True
    prompt_style: Literal["chat", "question-answer"] = "chat"
    nested_images: bool = False  # the processor wants the images grouped per prompt ([[a], [b, c]])
    stop_tokens: tuple[str, ...] = ()  # end-of-turn tokens that end an answer besides the eos token
    thinking: bool = False  # the generation prompt opens a reasoning block (Qwen3-VL Thinking)
    remote_code: bool = False  # only loadable with --vl-trust-remote-code or a conftest hook
    # The family's own referring-expression prompt ({ref}: the expression); see GROUNDING_PROMPTS' sources.
    grounding_prompt: str = ""

    def refer_prompt(self, ref: str) -> str:
        """The question that asks this family for the box of `ref`, in the family's own wording."""
        return (self.grounding_prompt or GROUNDING_PROMPTS["generic"]).replace("{ref}", ref)

    @property
    def boxes_in_resized_pixels(self) -> bool:
        return self.box_convention == "qwen2.5"

    def capabilities(self, *, has_chat_template: bool = True) -> dict[str, bool]:
        chat = self.prompt_style == "chat" and has_chat_template
        return {"multi_image": self.multi_image, "multi_turn": self.multi_turn and chat, "chat_template": chat}

    def unsupported(self, conversation: Conversation, *, has_chat_template: bool = True) -> str | None:
        """Why this family cannot answer `conversation` as asked (the case is skipped), or None."""
        abilities = self.capabilities(has_chat_template=has_chat_template)
        if len(conversation.images) > 1 and not abilities["multi_image"]:
            return f"{self.name} takes one image per conversation; this case has {len(conversation.images)}"
        if conversation.history and not abilities["multi_turn"]:
            why = "no chat template" if not abilities["chat_template"] else "single-turn training"
            turns = len(conversation.history) + 1
            return f"{self.name} does not hold a multi-turn dialogue ({why}); this case has {turns} turns"
        return None

    def build_prompt(self, processor: Any, conversation: Conversation) -> str:
        """The prompt text given to the processor with the images (see docs/CONTRACTS.md, prompt format)."""
        has_template = bool(getattr(processor, "chat_template", None))
        if self.prompt_style == "question-answer" or not has_template:
            return question_answer_prompt(conversation)
        messages: list[dict[str, Any]] = []
        if conversation.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": conversation.system}]})
        turns = [*conversation.history, (conversation.question, None)]
        for n, (question, answer) in enumerate(turns):
            content: list[dict[str, Any]] = [{"type": "image"} for _ in conversation.images] if n == 0 else []
            content.append({"type": "text", "text": question})
            messages.append({"role": "user", "content": content})
            if answer is not None:
                messages.append(
                    {"role": "assistant", "content": [{"type": "text", "text": self.history_answer(answer)}]}
                )
        prompt: str = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prompt

    def history_answer(self, answer: str) -> str:
        """An earlier answer as it goes back into the prompt (Thinking models drop their old reasoning)."""
        return answer

    def postprocess(self, answer: str, prompt: str = "") -> str:
        """The answer from the decoded new tokens (already stripped of special tokens)."""
        answer = answer.strip()
        if self.prompt_style == "question-answer" and prompt and answer.startswith(prompt.strip()):
            # Some BLIP-style generate() versions return the prompt with the answer.
            answer = answer[len(prompt.strip()) :].strip()
        if self.thinking or answer.startswith("<think>") or "</think>" in answer:
            opened = self.thinking and prompt.rstrip().endswith("<think>") and "<think>" not in answer
            answer = strip_thinking(("<think>" if opened else "") + answer)
        return answer

    def resized_sizes(self, processor: Any, images: Sequence[Any]) -> tuple[tuple[int, int], ...]:
        """The model-input (width, height) of each PIL image, for families that write boxes in input pixels.

        Qwen2.5-VL's processor resizes each image to sides that are multiples of patch * merge size
        (smart_resize); ``image_grid_thw`` holds the resized size in patches.
        """
        if not self.boxes_in_resized_pixels:
            return ()
        image_processor = getattr(processor, "image_processor", processor)
        patch = int(image_processor.patch_size)
        sizes = []
        for image in images:
            grid = image_processor(images=[image], return_tensors="np")["image_grid_thw"][0]
            sizes.append((int(grid[2]) * patch, int(grid[1]) * patch))
        return tuple(sizes)


class _ThinkingAdapter(FamilyAdapter):
    def history_answer(self, answer: str) -> str:
        return strip_thinking(answer)


def question_answer_prompt(conversation: Conversation) -> str:
    """BLIP-2's VQA prompt; earlier turns are chained as the BLIP-2 paper does for visual dialogue."""
    parts = [f"Question: {q} Answer: {a}" for q, a in conversation.history]
    parts.append(f"Question: {conversation.question} Answer:")
    return " ".join(parts)


# Each family's referring-expression (RefCOCO-style) prompt, from the family's own evaluation or documentation;
# docs/families.md has the table with its sources. The generic one asks, in words, for the generic convention.
GROUNDING_PROMPTS: dict[str, str] = {
    # QwenLM/Qwen3-VL issue 1721 (the team's RefCOCO prompt); answers: fenced JSON list, "bbox_2d" on 0-1000.
    "Qwen3-VL": 'Locate every object that matches the description "{ref}" in the image. Report bbox coordinates '
    "in JSON format.",
    # QwenLM/Qwen3-VL issue 991 (Qwen2.5-VL cookbook wording); answers: JSON "bbox_2d" in resized-input pixels.
    "Qwen2.5-VL": "Locate {ref} in this image and output the bbox coordinates in JSON format.",
    # No official Qwen2-VL RefCOCO prompt is published; this wording reproduced its reported numbers (QwenLM
    # issue 536, a user's report). Answers: <|box_start|>(x1,y1),(x2,y2)<|box_end|> on 0-1000.
    "Qwen2-VL": "Please provide the bounding box coordinate of the region this sentence describes: {ref}",
    # LLaVA-1.5's RefCOCO training/eval instruction (haotian-liu/LLaVA); answers: [x1, y1, x2, y2] in 0-1.
    "LLaVA": "Please provide the bounding box coordinate of the region this sentence describes: {ref}",
    # InternVL's eval/refcoco/evaluate_grounding.py; answers: <ref>..</ref><box>[[x1, y1, x2, y2]]</box> on 0-1000.
    "InternVL": "Please provide the bounding box coordinate of the region this sentence describes: <ref>{ref}</ref>",
    # CogVLM's grounding template (THUDM/CogVLM utils/utils/template.py); answers: [[x0,y0,x1,y1]] on 0-999.
    "CogVLM": "Where is {ref}? answer in [[x0,y0,x1,y1]] format.",
    # MiniGPT-v2's eval_ref.py task identifier; answers: {<x1><y1><x2><y2>} on 0-100.
    "MiniGPT-v2": "[refer] give me the location of {ref}",
    # Qwen-VL's eval_mm/evaluate_grounding.py markup, without the raw completion's opening <box> (a chat model
    # writes it); answers: <ref>..</ref><box>(x1,y1),(x2,y2)</box>, divided by 999 as that script does.
    "Qwen-VL": "<ref>{ref}</ref>",
    # Families without a published grounding prompt (Gemma 3, BLIP-2, SmolVLM, ...): ask for the generic format.
    "generic": 'Give the bounding box of {ref} in the image as JSON {"bbox_2d": [x1, y1, x2, y2]}, with the '
    "coordinates as fractions of the image width and height (0 to 1).",
}

GENERIC = FamilyAdapter(name="generic")

_QWEN_STOP = ("<|im_end|>", "<|endoftext|>")

ADAPTERS: tuple[FamilyAdapter, ...] = (
    FamilyAdapter(
        "Qwen3-VL",
        ("qwen3_vl", "qwen3_vl_moe"),
        box_convention="qwen3",
        stop_tokens=_QWEN_STOP,
        grounding_prompt=GROUNDING_PROMPTS["Qwen3-VL"],
    ),
    FamilyAdapter(
        "Qwen2.5-VL",
        ("qwen2_5_vl",),
        box_convention="qwen2.5",
        stop_tokens=_QWEN_STOP,
        grounding_prompt=GROUNDING_PROMPTS["Qwen2.5-VL"],
    ),
    FamilyAdapter(
        "Qwen2-VL",
        ("qwen2_vl",),
        box_convention="qwen2",
        stop_tokens=_QWEN_STOP,
        grounding_prompt=GROUNDING_PROMPTS["Qwen2-VL"],
    ),
    # LLaVA-1.5 and LLaVA-NeXT (v1.6) were trained on one image per conversation.
    FamilyAdapter("LLaVA-1.5", ("llava",), multi_image=False, grounding_prompt=GROUNDING_PROMPTS["LLaVA"]),
    FamilyAdapter("LLaVA-NeXT", ("llava_next",), multi_image=False, grounding_prompt=GROUNDING_PROMPTS["LLaVA"]),
    FamilyAdapter(
        "LLaVA-OneVision",
        ("llava_onevision",),
        stop_tokens=("<|im_end|>",),
        grounding_prompt=GROUNDING_PROMPTS["LLaVA"],
    ),
    FamilyAdapter("BLIP-2", ("blip-2",), multi_image=False, multi_turn=False, prompt_style="question-answer"),
    FamilyAdapter(
        "InstructBLIP", ("instructblip",), multi_image=False, multi_turn=False, prompt_style="question-answer"
    ),
    FamilyAdapter("Idefics3", ("idefics3",), nested_images=True, stop_tokens=("<end_of_utterance>",)),
    FamilyAdapter("SmolVLM", ("smolvlm",), nested_images=True, stop_tokens=("<end_of_utterance>",)),
    FamilyAdapter(
        "InternVL",
        ("internvl",),
        box_convention="internvl",
        stop_tokens=("<|im_end|>",),
        grounding_prompt=GROUNDING_PROMPTS["InternVL"],
    ),
    FamilyAdapter("Gemma 3", ("gemma3",), nested_images=True, stop_tokens=("<end_of_turn>", "<eos>")),
    # Remote-code families: loaded through the pytest_vleval_load_model hook (docs/families.md); known here so
    # that their boxes are read in their own convention.
    FamilyAdapter(
        "Qwen-VL",
        ("qwen",),
        box_convention="qwen-vl",
        multi_image=True,
        remote_code=True,
        grounding_prompt=GROUNDING_PROMPTS["Qwen-VL"],
    ),
    FamilyAdapter(
        "CogVLM",
        ("cogvlm",),
        box_convention="cogvlm",
        multi_image=False,
        remote_code=True,
        grounding_prompt=GROUNDING_PROMPTS["CogVLM"],
    ),
    # Not a transformers model: a hook backend names it (info["family"]) to get its prompt and box convention.
    FamilyAdapter(
        "MiniGPT-v2",
        (),
        box_convention="minigpt-v2",
        multi_image=False,
        remote_code=True,
        grounding_prompt=GROUNDING_PROMPTS["MiniGPT-v2"],
    ),
)

_BY_MODEL_TYPE = {model_type: adapter for adapter in ADAPTERS for model_type in adapter.model_types}
_BY_NAME = {adapter.name.casefold(): adapter for adapter in (*ADAPTERS, GENERIC)}


def adapter_by_name(name: str) -> FamilyAdapter | None:
    """The adapter called `name` (case-insensitive; "Qwen3-VL Thinking" is Qwen3-VL's), or None."""
    key = name.casefold().removesuffix(" thinking")
    return _BY_NAME.get(key)


def adapter_for_config(config: Any, *, chat_template: str | None = None) -> FamilyAdapter:
    """The adapter of a transformers config (or its dict); the generic adapter for unknown families.

    A chat template that opens ``<think>`` in the generation prompt marks a Thinking variant.
    """
    model_type = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
    adapter = _BY_MODEL_TYPE.get(str(model_type), GENERIC)
    if chat_template and "<think>" in chat_template and adapter.name == "Qwen3-VL":
        fields = {f.name: getattr(adapter, f.name) for f in dataclasses.fields(adapter)}
        fields.update(name="Qwen3-VL Thinking", thinking=True)
        return _ThinkingAdapter(**fields)
    return adapter


def family_for(spec: ModelSpec, info: Mapping[str, object] | None = None) -> FamilyAdapter:
    """The family `spec` is asked as: the loaded backend's ``info["family"]`` (a conftest backend can name
    one), else the model's files (read without loading it), else the generic family."""
    named = info.get("family") if info else None
    if named:
        adapter = adapter_by_name(str(named))
        if adapter is not None:
            return adapter
    return adapter_for_source(spec) or GENERIC


def _config_file(spec: ModelSpec) -> Path | None:
    if spec.is_local:
        path = Path(spec.source) / "config.json"
        return path if path.is_file() else None
    if "://" in spec.source:
        return None
    try:  # the local hub cache only: never the network
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(spec.source, "config.json")
    return Path(found) if isinstance(found, str) else None


def _chat_template_of(folder: Path) -> str | None:
    for name in ("chat_template.jinja", "chat_template.json"):
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            return str(json.loads(text).get("chat_template", "")) if name.endswith(".json") else text
    return None


def adapter_for_source(spec: ModelSpec) -> FamilyAdapter | None:
    """The adapter from the model's files (config.json, chat template) without loading it; None if unreadable."""
    path = _config_file(spec)
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return adapter_for_config(config, chat_template=_chat_template_of(path.parent))


@functools.lru_cache(maxsize=8)
def _image_processor(source: str, trust_remote_code: bool) -> Any:
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)


def box_context(
    spec: ModelSpec,
    images: Sequence[Path],
    *,
    info: Mapping[str, object] | None = None,
    trust_remote_code: bool = False,
    pixels: tuple[int | None, int | None] = (None, None),
) -> tuple[str | None, tuple[tuple[int, int], ...]]:
    """(box convention, resized input sizes) for scoring a case's boxes with model `spec`.

    The convention comes from the loaded backend's ``info["box_convention"]`` (a conftest backend can set
    it), else from the model's files; None (the scorer's default, "qwen3") when neither says. Resized sizes
    are computed only for conventions in input pixels (Qwen2.5-VL), with the model's own image processor under
    the case's `pixels` limits (min, max), as the model saw the images.
    """
    convention = str(info["box_convention"]) if info and info.get("box_convention") else None
    if convention is None:
        adapter = adapter_for_source(spec)
        convention = adapter.box_convention if adapter is not None else None
    if convention != "qwen2.5":
        return convention, ()
    from PIL import Image

    processor = _image_processor(spec.source, trust_remote_code)
    pil = []
    for path in images:
        with Image.open(path) as image:
            pil.append(image.convert("RGB"))
    from pytest_vleval.backends.pixels import limited

    with limited(processor, *pixels):
        return convention, _BY_MODEL_TYPE["qwen2_5_vl"].resized_sizes(processor, pil)
