"""Tiny random checkpoints of every HF-native family, built offline from the families' own classes.

Each builder writes a directory that ``AutoProcessor`` and ``AutoModelForImageTextToText`` load: a tokenizer
of the family's tokenizer class trained locally on a small corpus (through that class's own normalizer and
pre-tokenizer, so that reloading rebuilds the same pipeline), the family's real processor and image processor
classes, its chat template where it has one, and a random model from a shrunken config whose special token
ids match the tokenizer. Sizes are minimal: a few thousand parameters per tower, images of 32-64 pixels.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pytest_vleval.builtin.build import QWEN3_VL_CHAT_TEMPLATE, build_tokenizer, default_corpus

# Chat templates as the families publish them (the llava-hf, Qwen2-VL, SmolVLM/Idefics3, InternVL-hf,
# LLaVA-OneVision and Gemma 3 processor templates), so prompts are built exactly as for the real models.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != "
    "'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] "
    "== 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value "
    "+ 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|>"
    "<|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = "
    "video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|>"
    "<|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3-VL Thinking opens the reasoning block in the generation prompt.
QWEN3_VL_THINKING_CHAT_TEMPLATE = QWEN3_VL_CHAT_TEMPLATE.replace(
    "    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
    "    {{- '<|im_start|>assistant\\n<think>\\n' }}\n{%- endif %}\n",
)
IDEFICS3_CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]"
    "['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if "
    "line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM_CHAT_TEMPLATE = IDEFICS3_CHAT_TEMPLATE.replace("<|begin_of_text|>", "<|im_start|>", 1)
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}{% if message['content'] is string "
    "%}{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' "
    "%}{{ '<IMG_CONTEXT>\n' }}{% elif content['type'] == 'video' %}{{ '<video>\n' }}{% elif content['type'] == 'text' "
    "%}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}{{'<|im_end|>\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{'<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- set first_user_prefix = messages[0]"
    "['content'][0]['text'] + '\n\n' -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set "
    'first_user_prefix = "" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in '
    "loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ "
    'raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n    {%- endif -%}'
    "\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + "
    "(first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ "
    "message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in "
    "message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' "
    "}}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            "
    '{%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception("Invalid content '
    "type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}"
    "\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)

_MEAN = [0.5, 0.5, 0.5]


def corpus() -> list[str]:
    return [*default_corpus(), "Question: What is it? Answer: a red circle", "USER: ASSISTANT: User: Assistant:"]


def train_tokenizer(
    cls: type,
    *,
    specials: Iterable[str],
    extra_specials: Iterable[str] = (),
    vocab_size: int = 600,
    byte_fallback: bool = False,
    **kwargs: Any,
) -> Any:
    """A tokenizer of class `cls` whose BPE is trained through `cls`'s own normalizer and pre-tokenizer.

    `specials` get the first ids (then the byte-fallback tokens); `extra_specials` are added afterwards as
    special added tokens. Keyword arguments go to `cls` (token names, add_bos_token...).
    """
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from transformers import AddedToken

    template = cls(**kwargs)
    backend = Tokenizer.from_str(template.backend_tokenizer.to_str())
    specials = list(dict.fromkeys(specials))
    texts = corpus()
    byte_level = "ByteLevel" in backend.to_str()
    if byte_level:
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        alphabet = sorted({c for text in texts for c in text} | {"\u2581"})
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, initial_alphabet=alphabet, special_tokens=specials, show_progress=False
    )
    backend.train_from_iterator(texts, trainer=trainer)
    state = json.loads(backend.to_str())["model"]
    trained: dict[str, int] = state["vocab"]
    vocab = {token: n for n, token in enumerate(specials)}
    if byte_fallback:
        for byte in range(256):
            vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    for token in sorted(trained, key=trained.__getitem__):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = cls(vocab=vocab, merges=merges, **kwargs)
    extra = [t for t in dict.fromkeys(extra_specials) if t not in vocab]
    if extra:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in extra], special_tokens=True)
    return tokenizer


def _ids(tokenizer: Any, *tokens: str) -> list[int]:
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    unk = tokenizer.unk_token_id
    unknown = [t for t, i in zip(tokens, ids, strict=True) if i is None or (i == unk and t != tokenizer.unk_token)]
    if unknown:
        raise RuntimeError(f"tokens missing from the vocabulary: {unknown}")
    return ids


def _save(out: Path, processor: Any, model: Any, eos: list[int], pad: int | None, bos: int | None = None) -> Path:
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(str(out))
    model.generation_config = GenerationConfig(
        do_sample=False, eos_token_id=eos, pad_token_id=pad, bos_token_id=bos, max_new_tokens=16
    )
    model.eval().save_pretrained(str(out))
    return out


def _seed(seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)


def _llama_text(tokenizer: Any, hidden: int = 32, **overrides: Any) -> dict[str, Any]:
    config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
    }
    config.update(overrides)
    return config


def _clip_vision(image_size: int = 32, patch_size: int = 8, hidden: int = 32, **overrides: Any) -> dict[str, Any]:
    config = {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": patch_size,
        "projection_dim": hidden,
    }
    config.update(overrides)
    return config


# --- Qwen family -------------------------------------------------------------------------------------


def _qwen_processor(
    processor_cls: type, video_cls: type, template: str, image_size: int, patch: int, max_pixels: int | None = None
) -> Any:
    from transformers import Qwen2VLImageProcessor

    tokenizer = build_tokenizer(corpus())
    pixels = image_size * image_size
    common = {"patch_size": patch, "merge_size": 2, "temporal_patch_size": 2, "image_mean": _MEAN, "image_std": _MEAN}
    image_processor = Qwen2VLImageProcessor(min_pixels=pixels // 4, max_pixels=max_pixels or pixels, **common)
    video_processor = video_cls(size={"shortest_edge": pixels // 4, "longest_edge": pixels * 4}, **common)
    return processor_cls(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=template
    )


def _qwen_text(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    ids = tokenizer.convert_tokens_to_ids
    config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "pad_token_id": ids("<|endoftext|>"),
        "bos_token_id": None,
        "eos_token_id": ids("<|im_end|>"),
        "tie_word_embeddings": True,
    }
    config.update(extra)
    return config


def _qwen_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids("<|image_pad|>"),
        "video_token_id": ids("<|video_pad|>"),
        "vision_start_token_id": ids("<|vision_start|>"),
        "vision_end_token_id": ids("<|vision_end|>"),
    }


def _qwen_save(out: Path, processor: Any, model: Any) -> Path:
    ids = processor.tokenizer.convert_tokens_to_ids
    return _save(out, processor, model, [ids("<|im_end|>"), ids("<|endoftext|>")], ids("<|endoftext|>"))


def build_qwen2_vl(out: Path) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, Qwen2VLVideoProcessor

    processor = _qwen_processor(Qwen2VLProcessor, Qwen2VLVideoProcessor, QWEN2_VL_CHAT_TEMPLATE, 56, 14)
    tokenizer = processor.tokenizer
    text = _qwen_text(
        tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    )
    vision = {
        "depth": 1,
        "embed_dim": 32,
        "hidden_size": 32,
        "num_heads": 2,
        "mlp_ratio": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "in_channels": 3,
    }
    config = Qwen2VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tokenizer))
    _seed()
    return _qwen_save(out, processor, Qwen2VLForConditionalGeneration(config))


def build_qwen2_5_vl(out: Path) -> Path:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
    )

    # Qwen2.5-VL's own pixel limits (min 56*56, max 12845056), so a 640x480 image becomes 644x476 as on the Hub;
    # the small test images still become 56x56 (4 tokens).
    processor = _qwen_processor(
        Qwen2_5_VLProcessor, Qwen2VLVideoProcessor, QWEN2_VL_CHAT_TEMPLATE, 112, 14, max_pixels=12845056
    )
    tokenizer = processor.tokenizer
    text = _qwen_text(
        tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    )
    vision = {
        "depth": 1,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 32,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [0],
    }
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tokenizer))
    _seed()
    return _qwen_save(out, processor, Qwen2_5_VLForConditionalGeneration(config))


def build_qwen3_vl(out: Path, *, thinking: bool = False) -> Path:
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor

    from pytest_vleval.builtin.build import qwen3vl_config

    template = QWEN3_VL_THINKING_CHAT_TEMPLATE if thinking else QWEN3_VL_CHAT_TEMPLATE
    processor = _qwen_processor(Qwen3VLProcessor, Qwen3VLVideoProcessor, template, 64, 16)
    config = qwen3vl_config(
        processor.tokenizer,
        text_hidden=32,
        text_layers=1,
        text_heads=2,
        text_kv_heads=1,
        vision_hidden=32,
        vision_depth=2,
        vision_heads=2,
    )
    _seed()
    return _qwen_save(out, processor, Qwen3VLForConditionalGeneration(config))


def build_qwen3_vl_moe(out: Path) -> Path:
    from transformers import (
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from pytest_vleval.builtin.build import qwen3vl_config

    processor = _qwen_processor(Qwen3VLProcessor, Qwen3VLVideoProcessor, QWEN3_VL_CHAT_TEMPLATE, 64, 16)
    dense = qwen3vl_config(
        processor.tokenizer,
        text_hidden=32,
        text_layers=1,
        text_heads=2,
        text_kv_heads=1,
        vision_hidden=32,
        vision_depth=2,
        vision_heads=2,
    ).to_dict()
    text = dict(
        dense["text_config"],
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    )
    config = Qwen3VLMoeConfig(text_config=text, vision_config=dense["vision_config"], **_qwen_ids(processor.tokenizer))
    _seed()
    return _qwen_save(out, processor, Qwen3VLMoeForConditionalGeneration(config))


# --- LLaVA family ------------------------------------------------------------------------------------


def _llama_tokenizer(*extra: str) -> Any:
    from transformers import LlamaTokenizer

    tokenizer = train_tokenizer(
        LlamaTokenizer, specials=["<unk>", "<s>", "</s>"], extra_specials=["<pad>", *extra], byte_fallback=True
    )
    tokenizer.pad_token = "<pad>"
    return tokenizer


def build_llava(out: Path) -> Path:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = _llama_tokenizer("<image>")
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=_MEAN, image_std=_MEAN
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        vision_config=dict(_clip_vision(), model_type="clip_vision_model"),
        text_config=dict(_llama_text(tokenizer), model_type="llama"),
        image_token_id=_ids(tokenizer, "<image>")[0],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=16,
        projector_hidden_act="gelu",
    )
    _seed()
    return _save(
        out,
        processor,
        LlavaForConditionalGeneration(config),
        [tokenizer.eos_token_id],
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )


def build_llava_next(out: Path) -> Path:
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tokenizer = _llama_tokenizer("<image>")
    pinpoints = [[32, 32], [32, 64], [64, 32]]
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_grid_pinpoints=pinpoints,
        image_mean=_MEAN,
        image_std=_MEAN,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    config = LlavaNextConfig(
        vision_config=dict(_clip_vision(), model_type="clip_vision_model"),
        text_config=dict(_llama_text(tokenizer), model_type="llama"),
        image_token_id=_ids(tokenizer, "<image>")[0],
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=16,
    )
    _seed()
    return _save(
        out,
        processor,
        LlavaNextForConditionalGeneration(config),
        [tokenizer.eos_token_id],
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )


def build_llava_onevision(out: Path) -> Path:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    base = build_tokenizer(corpus())
    tokenizer = base
    from transformers import AddedToken

    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<image>", "<video>")], special_tokens=True
    )
    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": 32, "width": 32},
        crop_size={"height": 32, "width": 32},
        image_grid_pinpoints=pinpoints,
        image_mean=_MEAN,
        image_std=_MEAN,
    )
    video_processor = LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32})
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=ONEVISION_CHAT_TEMPLATE,
    )
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=dict(_qwen_text(tokenizer), model_type="qwen2"),
        image_token_id=_ids(tokenizer, "<image>")[0],
        video_token_id=_ids(tokenizer, "<video>")[0],
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    _seed()
    return _qwen_save(out, processor, LlavaOnevisionForConditionalGeneration(config))


# --- BLIP-2 / InstructBLIP ---------------------------------------------------------------------------

_QUERY_TOKENS = 4


def _qformer(hidden: int = 32, encoder_hidden: int = 32) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden,
        "encoder_hidden_size": encoder_hidden,
        "vocab_size": 64,
        "max_position_embeddings": 64,
    }


def _blip_vision() -> dict[str, Any]:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }


def build_blip2_opt(out: Path) -> Path:
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        GPT2Tokenizer,
    )

    tokenizer = train_tokenizer(
        GPT2Tokenizer,
        specials=["<pad>", "</s>"],
        extra_specials=["<image>"],
        unk_token="</s>",
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tokenizer.image_token = "<image>"  # the processor reads it from the tokenizer (saved as an extra token)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32}, image_mean=_MEAN, image_std=_MEAN)
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=_QUERY_TOKENS)
    text = {
        "model_type": "opt",
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "ffn_dim": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "word_embed_proj_dim": 32,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config = Blip2Config(
        vision_config=_blip_vision(),
        qformer_config=_qformer(),
        text_config=text,
        num_query_tokens=_QUERY_TOKENS,
        image_token_index=_ids(tokenizer, "<image>")[0],
    )
    _seed()
    return _save(
        out,
        processor,
        Blip2ForConditionalGeneration(config),
        [tokenizer.eos_token_id],
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )


def build_blip2_flan_t5(out: Path) -> Path:
    """BLIP-2 with an encoder-decoder language model: generate() returns only the answer's tokens."""
    from tokenizers import Tokenizer, trainers
    from transformers import (
        AddedToken,
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        GenerationConfig,
        T5Tokenizer,
    )

    backend = Tokenizer.from_str(T5Tokenizer(extra_ids=0).backend_tokenizer.to_str())
    trainer = trainers.UnigramTrainer(
        vocab_size=500, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    backend.train_from_iterator(corpus(), trainer=trainer)
    pieces = [(piece, float(score)) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.image_token = "<image>"
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32}, image_mean=_MEAN, image_std=_MEAN)
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=_QUERY_TOKENS)
    text = {
        "model_type": "t5",
        "vocab_size": len(tokenizer),
        "d_model": 32,
        "d_kv": 16,
        "d_ff": 64,
        "num_layers": 1,
        "num_decoder_layers": 1,
        "num_heads": 2,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
    }
    config = Blip2Config(
        vision_config=_blip_vision(),
        qformer_config=_qformer(),
        text_config=text,
        num_query_tokens=_QUERY_TOKENS,
        image_token_index=_ids(tokenizer, "<image>")[0],
    )
    _seed()
    model = Blip2ForConditionalGeneration(config)
    out.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(str(out))
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        max_new_tokens=16,
    )
    model.eval().save_pretrained(str(out))
    return out


def build_instructblip(out: Path) -> Path:
    from transformers import (
        BertTokenizer,
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    tokenizer = _llama_tokenizer("<image>")
    words = sorted({w.lower().strip("?.,") for line in corpus() for w in line.split()} - {""})
    qvocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words[:200]]
    qformer_tokenizer = BertTokenizer(vocab={t: n for n, t in enumerate(qvocab)})
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32}, image_mean=_MEAN, image_std=_MEAN)
    processor = InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=qformer_tokenizer,
        num_query_tokens=_QUERY_TOKENS,
    )
    qformer = dict(_qformer(), vocab_size=len(qvocab))
    config = InstructBlipConfig(
        vision_config=_blip_vision(),
        qformer_config=qformer,
        text_config=dict(_llama_text(tokenizer), model_type="llama"),
        num_query_tokens=_QUERY_TOKENS,
        image_token_index=_ids(tokenizer, "<image>")[0],
    )
    _seed()
    return _save(
        out,
        processor,
        InstructBlipForConditionalGeneration(config),
        [tokenizer.eos_token_id],
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )


# --- Idefics3 / SmolVLM ------------------------------------------------------------------------------

_IDEFICS_TOKENS = [
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
]


def _idefics_config(config_cls: type, tokenizer: Any) -> Any:
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    return config_cls(
        vision_config=vision,
        text_config=dict(_llama_text(tokenizer), model_type="llama"),
        scale_factor=2,
        image_token_id=_ids(tokenizer, "<image>")[0],
        pad_token_id=tokenizer.pad_token_id,
    )


def _idefics_image_processor(cls: type) -> Any:
    return cls(
        size={"longest_edge": 32},
        max_image_size={"longest_edge": 32},
        do_image_splitting=False,
        image_mean=_MEAN,
        image_std=_MEAN,
    )


def build_idefics3(out: Path) -> Path:
    from transformers import (
        GPT2Tokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tokenizer = train_tokenizer(
        GPT2Tokenizer,
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
        extra_specials=_IDEFICS_TOKENS,
        unk_token="<|end_of_text|>",
        bos_token="<|begin_of_text|>",
        eos_token="<end_of_utterance>",
        pad_token="<|end_of_text|>",
    )
    processor = Idefics3Processor(
        image_processor=_idefics_image_processor(Idefics3ImageProcessor),
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    _seed()
    model = Idefics3ForConditionalGeneration(_idefics_config(Idefics3Config, tokenizer))
    return _save(
        out,
        processor,
        model,
        _ids(tokenizer, "<end_of_utterance>", "<|end_of_text|>"),
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )


def build_smolvlm(out: Path) -> Path:
    from transformers import (
        GPT2Tokenizer,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    tokenizer = train_tokenizer(
        GPT2Tokenizer,
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        extra_specials=_IDEFICS_TOKENS,
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|im_end|>",
    )
    video_processor = SmolVLMVideoProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    processor = SmolVLMProcessor(
        image_processor=_idefics_image_processor(SmolVLMImageProcessor),
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=4,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    _seed()
    model = SmolVLMForConditionalGeneration(_idefics_config(SmolVLMConfig, tokenizer))
    return _save(
        out,
        processor,
        model,
        _ids(tokenizer, "<end_of_utterance>", "<|endoftext|>"),
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )


# --- InternVL (HF-native) and Gemma 3 ----------------------------------------------------------------


def build_internvl(out: Path) -> Path:
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        Qwen2Tokenizer,
    )

    from pytest_vleval.builtin.build import SPECIAL_TOKENS

    named = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer = train_tokenizer(
        Qwen2Tokenizer,
        specials=list(SPECIAL_TOKENS),
        extra_specials=list(named.values()),
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=named,
    )
    image_processor = GotOcr2ImageProcessor(
        size={"height": 32, "width": 32}, crop_to_patches=False, image_mean=_MEAN, image_std=_MEAN
    )
    video_processor = InternVLVideoProcessor(size={"height": 32, "width": 32})
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_length=4,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": [32, 32],
        "patch_size": [8, 8],
    }
    config = InternVLConfig(
        vision_config=vision,
        text_config=dict(_qwen_text(tokenizer), model_type="qwen2"),
        image_token_id=_ids(tokenizer, "<IMG_CONTEXT>")[0],
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
    )
    _seed()
    return _qwen_save(out, processor, InternVLForConditionalGeneration(config))


def build_gemma3(out: Path) -> Path:
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
        GemmaTokenizer,
    )

    named = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
    tokenizer = train_tokenizer(
        GemmaTokenizer,
        specials=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"],
        extra_specials=["<start_of_turn>", "<end_of_turn>", *named.values()],
        byte_fallback=True,
        extra_special_tokens=named,
    )
    image_processor = Gemma3ImageProcessor(size={"height": 32, "width": 32}, image_mean=_MEAN, image_std=_MEAN)
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4, chat_template=GEMMA3_CHAT_TEMPLATE
    )
    ids = dict(zip(named, _ids(tokenizer, *named.values()), strict=True))
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "max_position_embeddings": 2048,
        "sliding_window": 64,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        image_token_index=ids["image_token"],
        boi_token_index=ids["boi_token"],
        eoi_token_index=ids["eoi_token"],
    )
    _seed()
    return _save(
        out,
        processor,
        Gemma3ForConditionalGeneration(config),
        _ids(tokenizer, "<eos>", "<end_of_turn>"),
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
    )


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen3_vl": build_qwen3_vl,
    "qwen3_vl_thinking": lambda out: build_qwen3_vl(out, thinking=True),
    "qwen3_vl_moe": build_qwen3_vl_moe,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen2_vl": build_qwen2_vl,
    "llava": build_llava,
    "llava_next": build_llava_next,
    "llava_onevision": build_llava_onevision,
    "blip2_opt": build_blip2_opt,
    "blip2_flan_t5": build_blip2_flan_t5,
    "instructblip": build_instructblip,
    "idefics3": build_idefics3,
    "smolvlm": build_smolvlm,
    "internvl": build_internvl,
    "gemma3": build_gemma3,
}
