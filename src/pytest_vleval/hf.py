"""The in-process backend: transformers' AutoProcessor + AutoModelForImageTextToText.

Imported only when a model is loaded, so `import pytest_vleval` and `pytest --help` stay free of torch.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pytest_vleval.devices import process_device
from pytest_vleval.models import Conversation, ModelLoadError, ModelSpec
from pytest_vleval.options import VlOptions


def resolve_device(requested: str) -> str:
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"--vl-device={requested}: CUDA is not available (torch.cuda.is_available() is False)"
            )
        index = int(requested.split(":", 1)[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"--vl-device={requested}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if requested == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
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


def _load_model(source: str, *, dtype: torch.dtype, device: str, trust_remote_code: bool) -> Any:
    import transformers

    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if device == "cuda":
        kwargs["device_map"] = "auto"
    elif device.startswith("cuda:"):
        kwargs["device_map"] = {"": device}
    errors = []
    for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM"):
        auto = getattr(transformers, name, None)
        if auto is None:
            continue
        try:
            model = auto.from_pretrained(source, **kwargs)
        except ValueError as exc:  # "Unrecognized configuration class ... for this kind of AutoModel"
            errors.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        if "device_map" not in kwargs:
            model = model.to(device)
        return model.eval()
    raise ModelLoadError(f"no transformers Auto class can load {source}: " + "; ".join(errors))


class TransformersBackend:
    """Loads once; answers batches greedily with left padding; answers exclude the prompt."""

    def __init__(self, spec: ModelSpec, options: VlOptions) -> None:
        import transformers

        self.spec = spec
        started = time.perf_counter()
        # Under pytest-xdist each worker binds to its own GPU (gw0 -> cuda:0, ...).
        self.device = resolve_device(process_device(options.device, torch.cuda.device_count()))
        self.dtype = resolve_dtype(options.dtype, self.device)
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(
                spec.source, trust_remote_code=options.trust_remote_code
            )
            self.model = _load_model(
                spec.source, dtype=self.dtype, device=self.device, trust_remote_code=options.trust_remote_code
            )
        except ModelLoadError:
            raise
        except (OSError, ValueError, ImportError) as exc:
            where = "local directory" if spec.is_local else "hub id (needs network or a local cache)"
            raise ModelLoadError(
                f"cannot load model {spec.requested!r} from {where} {spec.source}: {exc}"
            ) from exc
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # Batched generation needs left padding; most reloaded tokenizers default to right.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.generation_config = self._greedy_config()
        self.has_chat_template = bool(getattr(self.processor, "chat_template", None))
        self.info: dict[str, object] = {
            "source": spec.source,
            "device": str(self.model.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "load_seconds": round(time.perf_counter() - started, 3),
            "architecture": type(self.model).__name__,
        }

    def _greedy_config(self) -> Any:
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample = False
        config.num_beams = 1
        for attr in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
            if hasattr(config, attr):
                setattr(config, attr, None)
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        return config

    def _prompt(self, conv: Conversation) -> str:
        if not self.has_chat_template:
            parts = [f"Question: {q} Answer: {a}" for q, a in conv.history]
            parts.append(f"Question: {conv.question} Answer:")
            return " ".join(parts)
        messages: list[dict[str, Any]] = []
        if conv.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": conv.system}]})
        turns = [*conv.history, (conv.question, None)]
        for n, (question, answer) in enumerate(turns):
            content: list[dict[str, Any]] = [{"type": "image"} for _ in conv.images] if n == 0 else []
            content.append({"type": "text", "text": question})
            messages.append({"role": "user", "content": content})
            if answer is not None:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @staticmethod
    def _image(path: Path) -> Image.Image:
        with Image.open(path) as image:
            return image.convert("RGB")

    def prepare(self, conversations: Sequence[Conversation]) -> Any:
        """Processor inputs for a batch, on the model's device."""
        prompts = [self._prompt(c) for c in conversations]
        images = [self._image(p) for c in conversations for p in c.images]
        inputs = self.processor(text=prompts, images=images or None, padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    @torch.inference_mode()
    def generate(self, conversations: Sequence[Conversation]) -> list[str]:
        if not conversations:
            return []
        inputs = self.prepare(conversations)
        budget = max(c.max_new_tokens for c in conversations)
        config = copy.copy(self.generation_config)
        config.max_new_tokens = budget
        output = self.model.generate(**inputs, generation_config=config)
        if not self.model.config.is_encoder_decoder and output.shape[1] >= inputs["input_ids"].shape[1]:
            output = output[:, inputs["input_ids"].shape[1] :]
        # Greedy decoding is prefix-stable: cutting a longer generation at a case's own budget
        # gives exactly what generating with that budget would.
        trimmed = [row[: c.max_new_tokens] for row, c in zip(output, conversations, strict=True)]
        return [t.strip() for t in self.tokenizer.batch_decode(trimmed, skip_special_tokens=True)]

    @torch.inference_mode()
    def generate_timed(self, conversation: Conversation) -> dict[str, Any]:
        """One conversation alone, timed by stage for the latency benchmarks (``latency.py``).

        ``ttft_s`` runs from the request's start (preprocessing included) to the first new token on the host.
        On CUDA every timed boundary is synchronised, so the times include the GPU work.
        """
        from pytest_vleval.latency import FirstTokenClock

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
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_length:] if not self.model.config.is_encoder_decoder else output[0]
        answer = self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        finished = time.perf_counter()
        return {
            "answer": answer,
            "total_s": finished - started,
            "prepare_s": prepared - started,
            "generate_s": generated - prepared,
            "decode_s": finished - generated,
            "ttft_s": None if clock.first_token_at is None else clock.first_token_at - started,
            "input_tokens": int(prompt_length),
            "output_tokens": int(new_tokens.shape[0]),
        }

    def close(self) -> None:
        del self.model
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
