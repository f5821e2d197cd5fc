"""What the built-in model is trained on: the chat-template texts of procedural examples, answer-only labels,
seeded batches, and the dense auxiliary targets of the vision tokens (``train.py`` runs the training)."""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Sequence
from typing import Any

from pytest_vleval.backends.families import ADAPTERS
from pytest_vleval.builtin import scenes
from pytest_vleval.builtin.scenes import TASKS, ZH_TASKS, Example, make_example
from pytest_vleval.cases.prompts import task_prompt

__all__ = [
    "SUITE_TASKS",
    "TASK_WEIGHTS",
    "Batches",
    "answer_labels",
    "aux_heads",
    "aux_loss",
    "aux_targets",
    "corpus",
    "messages_for",
    "sent_example",
]

# How often each task is drawn: harder tasks (long or numeric answers) more often.
TASK_WEIGHTS: dict[str, float] = {
    "caption": 1.0,
    "colour": 1.0,
    "shape": 1.5,
    "count": 2.0,
    "position": 0.8,
    "ocr": 1.2,
    "chart": 1.5,
    "multi_image": 1.5,  # 1.0 in the first bilingual run: it forgot which image is "the first" (0.86 -> 0.63)
    "dialogue": 1.0,
    "grounding": 2.0,
}
_QWEN3 = next(adapter for adapter in ADAPTERS if adapter.name == "Qwen3-VL")
_TRAIN_SEED_STRIDE = 1_000_000_000  # training seed S draws example seeds S*stride + i, all below the held-out base


# The bundled suite's `task:` for each scene task: its questions carry that task's format instruction.
SUITE_TASKS: dict[str, str] = {
    "caption": "caption",
    "colour": "vqa",
    "shape": "vqa",
    "count": "count",
    "position": "vqa",
    "ocr": "ocr",
    "chart": "chart",
    "multi_image": "multi_image",
    "dialogue": "vqa",
    "grounding": "grounding",
}
# A quarter of the training examples keep the bare question, so a user's case without a task still gets answers.
BARE_SHARE = 0.25
# The share of the Chinese tasks' examples asked in Chinese (builtin/words.py); the rest stay English.
ZH_SHARE = 0.35


def sent_example(example: Example) -> Example:
    """`example` with the questions the plugin sends for the bundled suite's case of it: the task's format
    instruction (``cases/prompts.py``) after each question, grounding as Qwen3-VL's referring prompt."""
    turns: tuple[tuple[str, str], ...]
    if example.task == "grounding":
        assert example.label is not None
        turns = ((_QWEN3.refer_prompt(example.label), example.turns[0][1]),)
    else:
        task = SUITE_TASKS[example.task]
        turns = tuple((task_prompt(task, q), a) for q, a in example.turns)
    return dataclasses.replace(example, turns=turns)


def language(task: str, seed: int) -> str:
    """The language training asks example `seed` of `task` in (a fixed draw per task and seed)."""
    if task not in ZH_TASKS:
        return "en"
    return "zh" if random.Random(f"lang/{task}/{seed}").random() < ZH_SHARE else "en"


def is_bare(example: Example) -> bool:
    """Whether training shows `example` with its bare question (a fixed draw per task and seed)."""
    return random.Random(f"bare/{example.task}/{example.seed}").random() < BARE_SHARE


def messages_for(n_images: int, history: Sequence[tuple[str, str]], question: str) -> list[dict]:
    """The contract's messages: images then text in the first user turn; `history` is earlier (q, a)."""
    messages: list[dict] = []
    for i, (q, a) in enumerate((*history, (question, None))):
        content = [{"type": "image"} for _ in range(n_images)] if i == 0 else []
        content.append({"type": "text", "text": q})
        messages.append({"role": "user", "content": content})
        if a is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
    return messages


def training_text(example: Example) -> str:
    """The chat-template rendering of the whole dialogue with its answers (checked against the template)."""
    vision = "<|vision_start|><|image_pad|><|vision_end|>" * len(example.scenes)
    parts = []
    for i, (q, a) in enumerate(example.turns):
        parts.append(f"<|im_start|>user\n{vision if i == 0 else ''}{q}<|im_end|>\n")
        parts.append(f"<|im_start|>assistant\n{a}<|im_end|>\n")
    return "".join(parts)


_CJK_CHAR = re.compile(r"([\u3000-\u303f\u4e00-\u9fff\uff00-\uffef])")


def tokenizer_texts(text: str) -> list[str]:
    """`text` as the tokenizer's trainer sees it: each CJK character (and CJK punctuation) on its own.

    Qwen2's pre-tokenizer keeps a run of Chinese characters together, so a BPE trained on whole Chinese
    sentences learns tokens like 一个红色的菱形在一个 and the model cannot tell the colour from the shape;
    trained on single characters, every character the scenes use becomes one token and no token spans two."""
    return [part for part in _CJK_CHAR.split(text) if part.strip()]


def corpus(n_per_task: int = 400, seed: int = 0) -> list[str]:
    """Texts the tokenizer is trained on: the tasks' questions and answers plus role names (see
    `tokenizer_texts` for Chinese)."""
    from pytest_vleval.builtin.build import default_corpus

    texts = ["user", "assistant", "system", *default_corpus()]
    for task in TASKS:
        for lang in ("en", "zh") if task in ZH_TASKS else ("en",):
            for i in range(n_per_task):
                example = make_example(task, seed * _TRAIN_SEED_STRIDE + 10**8 + i, lang=lang)
                for q, a in (*example.turns, *sent_example(example).turns):
                    texts += [*tokenizer_texts(q), *tokenizer_texts(a)]
    return texts


def answer_labels(input_ids: Any, tokenizer: Any) -> Any:
    """-100 everywhere except the assistant answers and the `<|im_end|>` that closes each of them."""
    import torch

    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    header = tokenizer.encode("assistant\n", add_special_tokens=False)
    labels = torch.full_like(input_ids, -100)
    for row, ids in enumerate(input_ids.tolist()):
        i = 0
        while i < len(ids):
            if ids[i] == im_start and ids[i + 1 : i + 1 + len(header)] == header:
                start = i + 1 + len(header)
                end = ids.index(im_end, start)
                labels[row, start : end + 1] = input_ids[row, start : end + 1]
                i = end
            i += 1
    return labels


class Batches:
    """An endless, seeded stream of training batches (the same seed gives the same batches)."""

    def __init__(self, processor: Any, batch_size: int, seed: int, size: int, micro: int = 1) -> None:
        self.processor = processor
        self.micro = micro
        ip = processor.image_processor
        self.window = ip.patch_size * ip.merge_size
        self.batch_size = batch_size
        self.size = size
        self.rng = random.Random(seed)
        self.next_seed = {task: seed * _TRAIN_SEED_STRIDE + i * 10**7 for i, task in enumerate(TASKS)}
        self.tasks = list(TASK_WEIGHTS)
        self.weights = [TASK_WEIGHTS[t] for t in self.tasks]

    def examples(self) -> list[Example]:
        out = []
        for task in self.rng.choices(self.tasks, self.weights, k=self.batch_size):
            seed = self.next_seed[task]
            example = make_example(task, seed, self.size, language(task, seed))
            out.append(example if is_bare(example) else sent_example(example))
            self.next_seed[task] += 1
        return out

    def __next__(self) -> list[tuple[dict[str, Any], list[str]]]:
        """The next batch, as `micro` length-sorted micro-batches (less padding) with their tasks."""
        examples = sorted(self.examples(), key=lambda e: len(training_text(e)) + 40 * len(e.scenes))
        self.processor.tokenizer.padding_side = "right"
        out = []
        per = math.ceil(len(examples) / self.micro)
        for start in range(0, len(examples), per):
            chunk = examples[start : start + per]
            inputs = self.processor(
                text=[training_text(e) for e in chunk],
                images=[im for e in chunk for im in e.images],
                return_tensors="pt",
                padding=True,
            )
            inputs["labels"] = answer_labels(inputs["input_ids"], self.processor.tokenizer)
            inputs["aux"] = aux_targets(chunk, self.window)
            out.append((dict(inputs), [e.task for e in chunk]))
        return out


AUX_KINDS = (*scenes.SHAPES, "bar")
AUX_COLOURS = tuple(scenes.COLOURS)
AUX_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def aux_targets(examples: Sequence[Example], window: int) -> dict[str, Any]:
    """Dense targets for the vision merger's output tokens (one per `window`-pixel square, raster order).

    Per token: the colour and kind of the object covering most of it (0 = none), whether an object's
    centre lies in it, that object's box as fractions of the image, and for text the characters centred
    in its left and right halves. They train auxiliary heads that are thrown away (the saved model is a
    plain Qwen3-VL) and teach the vision tower early what the language model will need to read.
    """
    import torch

    obj, centre, centre_obj, box, chars, char_mask = [], [], [], [], [], []
    for example in examples:
        for scene in example.scenes:
            width, height = scene.image.size
            cols, rows = width // window, height // window
            o = torch.zeros(rows, cols, dtype=torch.long)
            area = torch.zeros(rows, cols)
            ctr = torch.zeros(rows, cols)
            cobj = torch.zeros(rows, cols, dtype=torch.long)
            b = torch.zeros(rows, cols, 4)
            c = torch.zeros(rows, cols, 2, dtype=torch.long)
            items = [(s.colour, s.kind, s.box) for s in scene.shapes] + [(r.colour, "bar", r.box) for r in scene.bars]
            for colour, kind, (x1, y1, x2, y2) in items:
                label = 1 + AUX_COLOURS.index(colour) * len(AUX_KINDS) + AUX_KINDS.index(kind)
                target = torch.tensor([x1 / width, y1 / height, x2 / width, y2 / height])
                for r in range(int(y1 // window), min(rows, math.ceil(y2 / window))):
                    for k in range(int(x1 // window), min(cols, math.ceil(x2 / window))):
                        overlap = (min(x2, (k + 1) * window) - max(x1, k * window)) * (
                            min(y2, (r + 1) * window) - max(y1, r * window)
                        )
                        if overlap > area[r, k]:
                            area[r, k], o[r, k], b[r, k] = overlap, label, target
                cell = min(int((y1 + y2) / 2 // window), rows - 1), min(int((x1 + x2) / 2 // window), cols - 1)
                ctr[cell] = 1
                cobj[cell] = label
            for ch, cx, _ in scene.chars:
                if ch.lower() in AUX_CHARS:
                    k = min(int(cx // window), cols - 1)
                    c[:, k, int((cx % window) >= window / 2)] = 1 + AUX_CHARS.index(ch.lower())
            obj.append(o.flatten())
            centre.append(ctr.flatten())
            centre_obj.append(cobj.flatten())
            box.append(b.view(-1, 4))
            chars.append(c.view(-1, 2))
            char_mask.append(torch.full((rows * cols,), bool(scene.chars)))
    return {
        "obj": torch.cat(obj),
        "centre": torch.cat(centre),
        "centre_obj": torch.cat(centre_obj),
        "box": torch.cat(box),
        "box_mask": torch.cat(obj) > 0,
        "chars": torch.cat(chars),
        "char_mask": torch.cat(char_mask),
    }


def aux_heads(hidden: int) -> Any:
    import torch

    return torch.nn.ModuleDict(
        {
            "obj": torch.nn.Linear(hidden, 1 + len(AUX_COLOURS) * len(AUX_KINDS)),
            "centre": torch.nn.Linear(hidden, 1),
            # Trained only with `centre_obj_aux`; always built because building it draws from the RNG
            # stream the shipped weights were trained with (dropping it changes every later draw).
            "centre_obj": torch.nn.Linear(hidden, 1 + len(AUX_COLOURS) * len(AUX_KINDS)),
            "box": torch.nn.Linear(hidden, 4),
            "chars": torch.nn.Linear(hidden, 2 * (1 + len(AUX_CHARS))),
        }
    )


def aux_loss(heads: Any, tokens: Any, targets: dict[str, Any], *, centre_obj: bool = False) -> Any:
    import torch
    import torch.nn.functional as F

    loss = F.cross_entropy(heads["obj"](tokens), targets["obj"])
    loss = loss + F.binary_cross_entropy_with_logits(heads["centre"](tokens).squeeze(-1), targets["centre"])
    if centre_obj:  # off by default: it made a 6-layer run worse on 8 of 10 tasks (README, built-in model)
        loss = loss + F.cross_entropy(heads["centre_obj"](tokens), targets["centre_obj"])
    if targets["box_mask"].any():
        pred = torch.sigmoid(heads["box"](tokens[targets["box_mask"]]))
        loss = loss + 5 * F.l1_loss(pred, targets["box"][targets["box_mask"]])
    if targets["char_mask"].any():
        logits = heads["chars"](tokens[targets["char_mask"]]).view(-1, 1 + len(AUX_CHARS))
        loss = loss + F.cross_entropy(logits, targets["chars"][targets["char_mask"]].view(-1))
    return loss


def check_training_text(processor: Any, example: Example) -> None:
    """`training_text` must be the chat template's rendering, prompt for prompt."""
    (q1, a1), (q2, a2) = example.turns
    full = processor.apply_chat_template(
        [
            *messages_for(1, [(q1, a1), (q2, a2)][:1], q2),
            {"role": "assistant", "content": [{"type": "text", "text": a2}]},
        ],
        tokenize=False,
    )
    prompt = processor.apply_chat_template(messages_for(1, [], q1), add_generation_prompt=True, tokenize=False)
    text = training_text(example)
    if full != text or not text.startswith(prompt):
        raise RuntimeError(f"training text differs from the chat template:\n{full!r}\n{text!r}")
