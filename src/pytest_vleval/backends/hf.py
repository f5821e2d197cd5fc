"""The in-process backend: transformers' AutoProcessor + AutoModelForImageTextToText.

Imported only when a model is loaded, so `import pytest_vleval` and `pytest --help` stay free of torch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from pytest_vleval.backends.base import (
    BackendBase,
    Conversation,
    GenerationFailure,
    ModelLoadError,
    ModelSpec,
    TimedAnswer,
    UnsupportedConversation,
    UnsupportedPrecision,
)
from pytest_vleval.backends.devices import process_device
from pytest_vleval.backends.families import adapter_for_config
from pytest_vleval.backends.hf_load import load_processor_and_model
from pytest_vleval.backends.pixels import effective_size, limited, model_limits, resize_within, takes_limits
from pytest_vleval.backends.precision import FLOAT_DTYPES, precision_label, variant_quantization, weight_bytes

if TYPE_CHECKING:
    from pytest_vleval.options import VlOptions


class FirstTokenClock:
    """A generation streamer that notes when the first new token reaches the host.

    ``generate`` hands the prompt to ``put`` first, then each new token; the second call is the first token.
    """

    def __init__(self, sync: Callable[[], None] = lambda: None) -> None:
        self._sync = sync
        self._calls = 0
        self.first_token_at: float | None = None

    def put(self, value: Any) -> None:
        self._calls += 1
        if self._calls == 2:
            self._sync()
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass


def image_token_count(processor: Any, width: int, height: int) -> int | None:
    """How many tokens an image of this size expands to in the prompt, by the processor's own count.

    ``_get_num_multimodal_tokens`` is the helper vLLM sizes multimodal inputs with; it is private to
    transformers and not every processor has it, so this is the one place that calls it (None where it is
    missing or fails). ``tests/test_transformers_backend.py`` checks it against a real prompt, so a change in
    transformers shows there instead of silently degrading the batch order.
    """
    counter = getattr(processor, "_get_num_multimodal_tokens", None)
    if not callable(counter):
        return None
    try:
        return int(counter(image_sizes=[(height, width)])["num_image_tokens"][0])
    except Exception:
        return None


def resolve_device(requested: str) -> str:
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"--vl-device={requested}: CUDA is not available (torch.cuda.is_available() is False)")
        index = int(requested.split(":", 1)[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"--vl-device={requested}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("--vl-device=mps: MPS is not available on this machine")
    return requested


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    if requested != "auto":
        return getattr(torch, requested)
    if device == "cpu":
        # bfloat16 matmuls run 2-3x slower than float32 on common CPUs.
        return torch.float32
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16


class TransformersBackend(BackendBase):
    """Loads once; answers batches greedily with left padding; answers exclude the prompt."""

    def __init__(self, spec: ModelSpec, options: VlOptions) -> None:
        self.spec = spec
        started = time.perf_counter()
        # Under pytest-xdist each worker binds to its own GPU (gw0 -> cuda:0, ...).
        self.device = resolve_device(process_device(options.device, torch.cuda.device_count()))
        self.dtype, self.quantization = self._precision(spec, options)
        self.processor, self.model = load_processor_and_model(
            spec, options, device=self.device, dtype=self.dtype, quantization=self.quantization
        )
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # Batched generation needs left padding; most reloaded tokenizers default to right.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        chat_template = getattr(self.processor, "chat_template", None)
        self.family = adapter_for_config(self.model.config, chat_template=chat_template)
        self.generation_config = self._greedy_config()
        self.has_chat_template = bool(chat_template)
        self.native_limits = takes_limits(self.processor)
        own_low, own_high = model_limits(self.processor)
        dtype_name = str(self.dtype).removeprefix("torch.")
        self.info: dict[str, object] = {
            "source": spec.source,
            "device": str(self.model.device),
            "dtype": dtype_name,
            "quantization": self.quantization,
            "precision": precision_label(dtype_name, self.quantization),
            **({"variant": spec.precision} if spec.precision else {}),
            "weight_bytes": weight_bytes(self.model),
            "family": self.family.name,
            "box_convention": self.family.box_convention,
            "capabilities": self.family.capabilities(has_chat_template=self.has_chat_template),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "load_seconds": round(time.perf_counter() - started, 3),
            "architecture": type(self.model).__name__,
            # The run's image limits: the option where given, else the model's own (None: no limit).
            "pixels": {
                "min_pixels": options.min_pixels if options.min_pixels is not None else own_low,
                "max_pixels": options.max_pixels if options.max_pixels is not None else own_high,
                "applied_by": "processor" if self.native_limits else "resize",
                "model_default": [own_low, own_high],
            },
        }

    def _precision(self, spec: ModelSpec, options: VlOptions) -> tuple[torch.dtype, str]:
        """The dtype and quantisation this model (or its precision variant, ``MODEL@int8``) loads with."""
        precision = spec.precision
        if precision == "fp16" and not self.device.startswith(("cuda", "mps")):
            raise UnsupportedPrecision(
                f"fp16 needs a GPU (half-precision matmuls are not what a CPU serves with); this run is on "
                f"{self.device}: compare fp32, bf16, int8 and int4 here"
            )
        dtype = resolve_dtype(FLOAT_DTYPES.get(precision or "", options.dtype), self.device)
        quantization = variant_quantization(precision, self.device, options.quantization)
        if quantization.startswith("bnb") and not self.device.startswith("cuda"):
            raise ModelLoadError(
                f"--vl-quantization={quantization} needs a CUDA GPU; the model would run on {self.device}"
            )
        return dtype, quantization

    def _greedy_config(self) -> Any:
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample = False
        config.num_beams = 1
        for attr in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
            if hasattr(config, attr):
                setattr(config, attr, None)
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        # The family's end-of-turn tokens end an answer even where the checkpoint's config lists only eos.
        eos = config.eos_token_id
        stops = [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [eos]
        unk = self.tokenizer.unk_token_id
        for token in self.family.stop_tokens:
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != unk and token_id not in stops:
                stops.append(token_id)
        if stops:
            config.eos_token_id = stops
        return config

    def _prompt(self, conv: Conversation) -> str:
        return self.family.build_prompt(self.processor, conv)

    def _image(self, path: Path, conv: Conversation) -> Image.Image:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        if self.native_limits:  # the processor applies the limits itself (backends/pixels.py)
            return rgb
        return resize_within(rgb, conv.min_pixels, conv.max_pixels)

    def _image_tokens(self, conv: Conversation) -> list[tuple[int | None, int]]:
        """(the processor's token count or None, the image's area as given) per image, without reading pixels."""
        counts = []
        with limited(self.processor, conv.min_pixels, conv.max_pixels):
            for path in conv.images:
                with Image.open(path) as image:
                    width, height = image.size
                if not self.native_limits:
                    width, height = effective_size(width, height, conv.min_pixels, conv.max_pixels)
                counts.append((image_token_count(self.processor, width, height), width * height))
        return counts

    def input_length(self, conv: Conversation) -> int | None:
        """Prompt tokens of `conv` with its images counted as the tokens they expand to, without reading
        pixels (the predictor sorts cases by it so that batches hold less padding)."""
        length = len(self.tokenizer(self._prompt(conv), add_special_tokens=False)["input_ids"])
        for counted, area in self._image_tokens(conv):
            # The prompt already holds one placeholder per image; without the processor's count, a 28-pixel
            # patch per token is Qwen's rate and a fair guess elsewhere (only the order of lengths matters).
            length += counted - 1 if counted is not None else area // (28 * 28)
        return length

    def vision_tokens(self, conv: Conversation) -> int | None:
        """The tokens the conversation's images become, by the processor's own count (None where it has none)."""
        counts = [counted for counted, _ in self._image_tokens(conv)]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    def prepare(self, conversations: Sequence[Conversation]) -> Any:
        """Processor inputs for a batch, on the model's device."""
        prompts = [self._prompt(c) for c in conversations]
        images: list[Any]
        if self.family.nested_images:  # e.g. Gemma 3, Idefics3: one list of images per prompt
            images = [[self._image(p, c) for p in c.images] for c in conversations]
            images = images if any(images) else []
        else:
            images = [self._image(p, c) for c in conversations for p in c.images]
        first = conversations[0]  # _generate groups conversations by their limits
        with limited(self.processor, first.min_pixels, first.max_pixels):
            inputs = self.processor(text=prompts, images=images or None, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def unsupported(self, conversation: Conversation) -> str | None:
        """Why the model's family cannot take `conversation` (asked before a dialogue's first turn), or None."""
        return self.family.unsupported(conversation, has_chat_template=self.has_chat_template)

    def generate(self, conversations: Sequence[Conversation]) -> list[str | GenerationFailure]:
        """Answers in order; a conversation the family cannot take (two images for BLIP-2, a dialogue without
        a chat template) gets an :class:`UnsupportedConversation` instead, and the others still run."""
        answers: list[str | GenerationFailure] = []
        runnable: list[Conversation] = []
        for conv in conversations:
            reason = self.family.unsupported(conv, has_chat_template=self.has_chat_template)
            answers.append(UnsupportedConversation(reason) if reason else "")
            if not reason:
                runnable.append(conv)
        # One generate call per set of pixel limits (a processor call takes one); answers stay in order.
        groups: dict[tuple[int | None, int | None], list[int]] = {}
        for n, conv in enumerate(runnable):
            groups.setdefault((conv.min_pixels, conv.max_pixels), []).append(n)
        done: list[str] = [""] * len(runnable)
        for members in groups.values():
            for n, text in zip(members, self._generate([runnable[m] for m in members]), strict=True):
                done[n] = text
        generated = iter(done)
        return [answer if isinstance(answer, GenerationFailure) else next(generated) for answer in answers]

    @staticmethod
    def _new_tokens(output: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """The generated tokens: decoder-only models return the (left-padded) prompt first, encoder-decoder
        ones (BLIP-2 Flan-T5) only the answer; checking the prefix, not the config, handles both."""
        n = input_ids.shape[1]
        if output.shape[1] >= n and torch.equal(output[:, :n], input_ids.to(output.device)):
            return output[:, n:]
        return output

    def _grad_off(self) -> Any:
        """inference_mode, except for optimum-quanto models: their int4 weights unpack lazily into tensors that
        inference mode would freeze ("Cannot set version_counter for inference tensor")."""
        return torch.no_grad() if self.quantization.startswith("quanto-") else torch.inference_mode()

    def _generate(self, conversations: Sequence[Conversation]) -> list[str]:
        with self._grad_off():
            return self._generate_batch(conversations)

    def _generate_batch(self, conversations: Sequence[Conversation]) -> list[str]:
        inputs = self.prepare(conversations)
        budget = max(c.max_new_tokens for c in conversations)
        config = copy.copy(self.generation_config)
        config.max_new_tokens = budget
        output = self._new_tokens(self.model.generate(**inputs, generation_config=config), inputs["input_ids"])
        # Greedy decoding is prefix-stable: cutting a longer generation at a case's own budget
        # gives exactly what generating with that budget would.
        trimmed = [row[: c.max_new_tokens] for row, c in zip(output, conversations, strict=True)]
        decoded = self.tokenizer.batch_decode(trimmed, skip_special_tokens=True)
        prompts = [self._prompt(c) for c in conversations]
        return [self.family.postprocess(t, p) for t, p in zip(decoded, prompts, strict=True)]

    def generate_timed(self, conversation: Conversation) -> TimedAnswer:
        with self._grad_off():
            return self._generate_timed(conversation)

    def _generate_timed(self, conversation: Conversation) -> TimedAnswer:
        """One conversation alone, timed by stage for the latency benchmarks (``bench/latency.py``), answered
        exactly as :meth:`generate` answers it (the family's post-processing included).

        ``ttft_s`` runs from the request's start (preprocessing included) to the first new token on the host.
        On CUDA every timed boundary is synchronised, so the times include the GPU work.
        """
        reason = self.unsupported(conversation)
        if reason:
            return {"answer": UnsupportedConversation(reason), "total_s": 0.0}

        # Every GPU the model sits on (several with device_map="auto"), and no other: syncing a device
        # would create a CUDA context on it.
        gpus = {p.device for p in self.model.parameters() if p.device.type == "cuda"}

        def sync() -> None:
            for device in gpus:
                torch.cuda.synchronize(device)

        started = time.perf_counter()
        inputs = self.prepare([conversation])
        sync()
        prepared = time.perf_counter()
        config = copy.copy(self.generation_config)
        config.max_new_tokens = conversation.max_new_tokens
        clock = FirstTokenClock(sync)
        output = self.model.generate(**inputs, generation_config=config, streamer=clock)
        sync()
        generated = time.perf_counter()
        new_tokens = self._new_tokens(output, inputs["input_ids"])[0]
        decoded = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        answer = self.family.postprocess(decoded, self._prompt(conversation))
        finished = time.perf_counter()
        return {
            "answer": answer,
            "total_s": finished - started,
            "prepare_s": prepared - started,
            "generate_s": generated - prepared,
            "decode_s": finished - generated,
            "ttft_s": None if clock.first_token_at is None else clock.first_token_at - started,
            "input_tokens": int(inputs["input_ids"].shape[1]),
            "output_tokens": int(new_tokens.shape[0]),
        }

    def close(self) -> None:
        del self.model
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
