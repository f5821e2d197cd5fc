"""Which model a ``--vl-model`` value names: the alias table, built-in models, served models, directories, hub ids.

No torch here, and nothing is loaded: a :class:`~pytest_vleval.backends.base.ModelSpec` only says where a model
loads from and how its test ids are labelled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pytest_vleval.backends.base import ModelSpec
from pytest_vleval.builtin import BUILTIN_DIR, BUILTIN_MODELS

__all__ = ["ALIASES", "BUILTIN_DIR", "BUILTIN_MODELS", "REMOTE_CODE_ALIASES", "resolve_model", "resolve_models"]

# Short names for the families the seed comparisons use; extended as families get adapters.
ALIASES: dict[str, str] = {
    "Qwen3-VL-2B": "Qwen/Qwen3-VL-2B-Instruct",
    "Qwen3-VL-4B": "Qwen/Qwen3-VL-4B-Instruct",
    "Qwen3-VL-8B": "Qwen/Qwen3-VL-8B-Instruct",
    "Qwen3-VL-32B": "Qwen/Qwen3-VL-32B-Instruct",
    "Qwen3-VL-30B": "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "Qwen3-VL-30B-A3B": "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "Qwen2.5-VL-3B": "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen2.5-VL-7B": "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen2.5-VL-32B": "Qwen/Qwen2.5-VL-32B-Instruct",
    "Qwen2.5-VL-72B": "Qwen/Qwen2.5-VL-72B-Instruct",
    "Qwen2-VL-2B": "Qwen/Qwen2-VL-2B-Instruct",
    "Qwen2-VL-7B": "Qwen/Qwen2-VL-7B-Instruct",
    "LLaVA-1.5-7B": "llava-hf/llava-1.5-7b-hf",
    "LLaVA-1.5-13B": "llava-hf/llava-1.5-13b-hf",
    "LLaVA-NeXT-7B": "llava-hf/llava-v1.6-mistral-7b-hf",
    "BLIP-2-OPT-2.7B": "Salesforce/blip2-opt-2.7b",
    "BLIP-2-FlanT5-XL": "Salesforce/blip2-flan-t5-xl",
    "InstructBLIP-7B": "Salesforce/instructblip-vicuna-7b",
    # Family adapters (families.py): Thinking variants, more sizes and the other HF-native families.
    "Qwen3-VL-2B-Thinking": "Qwen/Qwen3-VL-2B-Thinking",
    "Qwen3-VL-4B-Thinking": "Qwen/Qwen3-VL-4B-Thinking",
    "Qwen3-VL-8B-Thinking": "Qwen/Qwen3-VL-8B-Thinking",
    "Qwen3-VL-32B-Thinking": "Qwen/Qwen3-VL-32B-Thinking",
    "Qwen3-VL-30B-A3B-Thinking": "Qwen/Qwen3-VL-30B-A3B-Thinking",
    "LLaVA-NeXT-Vicuna-7B": "llava-hf/llava-v1.6-vicuna-7b-hf",
    "LLaVA-NeXT-Vicuna-13B": "llava-hf/llava-v1.6-vicuna-13b-hf",
    "LLaVA-NeXT-34B": "llava-hf/llava-v1.6-34b-hf",
    "LLaVA-OneVision-0.5B": "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
    "LLaVA-OneVision-7B": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
    "LLaVA-OneVision-72B": "llava-hf/llava-onevision-qwen2-72b-ov-hf",
    "BLIP-2-OPT-6.7B": "Salesforce/blip2-opt-6.7b",
    "BLIP-2-FlanT5-XXL": "Salesforce/blip2-flan-t5-xxl",
    "InstructBLIP-13B": "Salesforce/instructblip-vicuna-13b",
    "InstructBLIP-FlanT5-XL": "Salesforce/instructblip-flan-t5-xl",
    "Idefics3-8B": "HuggingFaceM4/Idefics3-8B-Llama3",
    "SmolVLM-256M": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "SmolVLM-500M": "HuggingFaceTB/SmolVLM-500M-Instruct",
    "SmolVLM-2B": "HuggingFaceTB/SmolVLM-Instruct",
    "SmolVLM2-2.2B": "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    "InternVL3-1B": "OpenGVLab/InternVL3-1B-hf",
    "InternVL3-2B": "OpenGVLab/InternVL3-2B-hf",
    "InternVL3-8B": "OpenGVLab/InternVL3-8B-hf",
    "InternVL3-14B": "OpenGVLab/InternVL3-14B-hf",
    "Gemma-3-4B": "google/gemma-3-4b-it",
    "Gemma-3-12B": "google/gemma-3-12b-it",
    "Gemma-3-27B": "google/gemma-3-27b-it",
    # Remote-code families: need --vl-trust-remote-code and a pytest_vleval_load_model hook (docs/families.md).
    "Qwen-VL-Chat": "Qwen/Qwen-VL-Chat",
    "mPLUG-Owl3-7B": "mPLUG/mPLUG-Owl3-7B-240728",
    "CogVLM-17B": "THUDM/cogvlm-chat-hf",
}

# Aliases whose code lives in their hub repository: the built-in loader cannot prompt them.
REMOTE_CODE_ALIASES = frozenset({"Qwen-VL-Chat", "mPLUG-Owl3-7B", "CogVLM-17B"})


def _label_for(requested: str) -> str:
    if requested in ALIASES or requested in BUILTIN_MODELS:
        return requested
    cleaned = requested.rstrip("/\\")
    name = re.split(r"[/\\]", cleaned)[-1] or cleaned
    return re.sub(r"[\[\]\s]", "_", name)


def looks_like_path(requested: str) -> bool:
    """Written as a path (``./``, ``../``, ``/``, ``~``, a Windows drive), never a hub id."""
    return requested.startswith(("./", "../", "/", "~", ".\\", "..\\")) or bool(re.match(r"[A-Za-z]:[\\/]", requested))


def resolve_model(requested: str, *, rootdir: Path | None = None) -> ModelSpec:
    """Resolve an alias, a built-in name, a served model (openai://HOST:PORT/v1/MODEL), a service
    (http://HOST:PORT/PATH, gradio://HOST:PORT/API_NAME), a local directory or a hub id. A malformed URL, or a path
    that is not a directory, raises ValueError."""
    if "://" in requested:
        from pytest_vleval.backends.openai_api import is_openai_spec, parse_spec

        if is_openai_spec(requested):
            return ModelSpec(requested, requested, _label_for(parse_spec(requested).model), False)
        from pytest_vleval.backends.service_spec import is_service_spec, service_label

        if is_service_spec(requested):
            return ModelSpec(requested, requested.strip(), service_label(requested), False)
    from pytest_vleval.backends.precision import split_precision

    base, precision = split_precision(requested)
    if precision is not None and not Path(requested).expanduser().is_dir():
        spec = resolve_model(base, rootdir=rootdir)
        if "://" in spec.source:
            raise ValueError(f"{requested!r}: a served model runs at the server's precision; @{precision} is for "
                             "models loaded here")  # fmt: skip
        return replace(spec, requested=requested, label=f"{spec.label}@{precision}", precision=precision)
    if requested in BUILTIN_MODELS:
        return ModelSpec(requested, str(BUILTIN_MODELS[requested]), requested, True)
    candidate = Path(requested).expanduser()
    if not candidate.is_absolute() and rootdir is not None and not candidate.exists():
        candidate = rootdir / candidate
    if candidate.is_dir():
        return ModelSpec(requested, str(candidate.resolve()), _label_for(requested), True)
    if looks_like_path(requested) or candidate.is_file():
        problem = "is a file, not a model directory" if candidate.exists() else "does not exist"
        raise ValueError(
            f"{requested!r} looks like a local path, but {candidate} {problem}: give a directory holding the "
            "model's config.json and weights (as saved by save_pretrained), an alias (e.g. Qwen3-VL-8B) or a hub id"
        )
    source = ALIASES.get(requested, requested)
    return ModelSpec(requested, source, _label_for(requested), False)


def resolve_models(requested: Sequence[str], *, rootdir: Path | None = None) -> list[ModelSpec]:
    """Resolve every model and make their labels unique (a label is part of each test id)."""
    specs = [resolve_model(r, rootdir=rootdir) for r in requested]
    counts: dict[str, int] = {}
    unique = []
    for spec in specs:
        n = counts.get(spec.label, 0)
        counts[spec.label] = n + 1
        if n:
            spec = ModelSpec(spec.requested, spec.source, f"{spec.label}-{n + 1}", spec.is_local)
        unique.append(spec)
    return unique
