"""Build small Qwen3-VL checkpoints locally: tokenizer, processor and random-weight model.

Nothing here touches the network. The tokenizer is a byte-level BPE trained with `tokenizers` on a
small corpus, with Qwen2's pre-tokenizer pipeline (so `Qwen2Tokenizer` rebuilds it identically on
reload) and Qwen's special tokens; the processor is the real `Qwen3VLProcessor` with the real
Qwen3-VL chat template; the model is `Qwen3VLForConditionalGeneration` from a shrunken config.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vleval.builtin.chat_template import QWEN3_VL_CHAT_TEMPLATE

if TYPE_CHECKING:
    from transformers import Qwen2Tokenizer, Qwen3VLProcessor

__all__ = [
    "QWEN3_VL_CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_processor",
    "build_random_qwen3vl",
    "build_tokenizer",
    "default_corpus",
]

# Qwen's special tokens in Qwen's order (there from id 151643; here right after the BPE vocabulary).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen3 marks these as added but not special: they survive `skip_special_tokens=True`.
PLAIN_ADDED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)

# Qwen2's pre-tokenizer split pattern (transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX).
_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def default_corpus() -> list[str]:
    """A small English corpus covering the built-in tasks' words, digits and JSON punctuation."""
    words = (
        "a an the of to in on at is are and or with left right top bottom above below middle center "
        "red green blue yellow orange purple black white gray grey pink brown cyan "
        "circle square triangle rectangle star diamond cross hexagon shape shapes object objects "
        "what which where how many colour color is there are describe image picture this that these "
        "first second both same different image images word text read say chart bar bars tallest "
        "highest shortest value answer yes no none one two three four five six seven eight nine ten "
        "locate find box bounding output json label and its next to of the"
    ).split()
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    lines += [w.capitalize() + "?" for w in words]
    lines += [str(n) for n in range(0, 1001)]
    lines += ['{"bbox_2d": [12, 250, 480, 999], "label": "red circle"}', "[0, 0, 1000, 1000]"]
    lines += ["What colour is the shape?", "How many circles are there?", "Describe the image."]
    return lines


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 640) -> Qwen2Tokenizer:
    """Train a byte-level BPE on `corpus` and wrap it as a `Qwen2Tokenizer` with Qwen's special tokens.

    Any text encodes (the 256 byte symbols are always in the vocabulary) and decodes back unchanged.
    The BPE vocabulary gets ids ``0..n-1``, then come `SPECIAL_TOKENS` and `PLAIN_ADDED_TOKENS` in order.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    texts = list(default_corpus() if corpus is None else corpus)
    backend = Tokenizer(models.BPE())
    # The same pipeline as transformers' Qwen2Tokenizer, which rebuilds it from code on reload.
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(SPECIAL_TOKENS) - len(PLAIN_ADDED_TOKENS), len(alphabet)),
        min_frequency=2,
        initial_alphabet=alphabet,
        special_tokens=[],
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)

    import json

    model_state = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(model_state["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]
    for token in (*SPECIAL_TOKENS, *PLAIN_ADDED_TOKENS):
        vocab[token] = len(vocab)

    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in PLAIN_ADDED_TOKENS])
    for token in (*SPECIAL_TOKENS, *PLAIN_ADDED_TOKENS):
        if tokenizer.convert_tokens_to_ids(token) != vocab[token]:
            raise RuntimeError(f"special token {token!r} did not keep id {vocab[token]}")
    return tokenizer


def build_processor(
    out_dir: str | Path | None = None,
    *,
    image_size: int = 64,
    patch_size: int = 16,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    tokenizer: Any = None,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 640,
) -> Qwen3VLProcessor:
    """The real `Qwen3VLProcessor` with a local tokenizer; images are resized to about `image_size`**2 pixels.

    Any input image keeps its aspect ratio and is resized (sides multiple of `patch_size * merge_size`) to
    about `image_size * image_size` pixels, so a 64-pixel model sees `(64/16)**2 = 16` patches, 4 LLM tokens.
    """
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    if tokenizer is None:
        tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)
    pixels = image_size * image_size
    common = {
        "patch_size": patch_size,
        "merge_size": merge_size,
        "temporal_patch_size": temporal_patch_size,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": pixels, "longest_edge": pixels}, **common)
    video_processor = Qwen3VLVideoProcessor(size={"shortest_edge": pixels, "longest_edge": pixels * 8}, **common)
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        processor.save_pretrained(str(out_dir))
    return processor


def _rope(head_dim: int, rope_theta: float) -> dict[str, Any]:
    """Interleaved M-RoPE: the rotary frequencies split over (t, h, w) like Qwen3-VL's [24, 20, 20] of 64."""
    half = head_dim // 2
    hw = (half * 20) // 64
    return {
        "rope_type": "default",
        "rope_theta": rope_theta,
        "mrope_section": [half - 2 * hw, hw, hw],
        "mrope_interleaved": True,
    }


def qwen3vl_config(
    tokenizer: Any,
    *,
    text_hidden: int = 64,
    text_layers: int = 2,
    text_heads: int = 4,
    text_kv_heads: int = 2,
    text_intermediate: int | None = None,
    vision_hidden: int = 64,
    vision_depth: int = 2,
    vision_heads: int = 4,
    vision_intermediate: int | None = None,
    image_size: int = 64,
    patch_size: int = 16,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    max_position_embeddings: int = 4096,
    rope_theta: float = 10000.0,
    tie_word_embeddings: bool = True,
    **overrides: Any,
) -> Any:
    """A shrunken `Qwen3VLConfig` whose token ids match `tokenizer`."""
    from transformers import Qwen3VLConfig

    head_dim = text_hidden // text_heads
    ids = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": text_hidden,
        "intermediate_size": text_intermediate or 3 * text_hidden,
        "num_hidden_layers": text_layers,
        "num_attention_heads": text_heads,
        "num_key_value_heads": text_kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": max_position_embeddings,
        "rope_parameters": _rope(head_dim, rope_theta),
        "pad_token_id": ids("<|endoftext|>"),
        "bos_token_id": None,
        "eos_token_id": ids("<|im_end|>"),
        "tie_word_embeddings": tie_word_embeddings,
    }
    grid_side = max(image_size // patch_size, 2)
    vision_config = {
        "depth": vision_depth,
        "hidden_size": vision_hidden,
        "intermediate_size": vision_intermediate or 4 * vision_hidden,
        "num_heads": vision_heads,
        "patch_size": patch_size,
        "spatial_merge_size": merge_size,
        "temporal_patch_size": temporal_patch_size,
        "out_hidden_size": text_hidden,
        "num_position_embeddings": (2 * grid_side) ** 2,
        "deepstack_visual_indexes": [i for i in (vision_depth // 2 - 1, vision_depth - 1) if i >= 0],
    }
    text_overrides = {k[5:]: overrides.pop(k) for k in list(overrides) if k.startswith("text_")}
    vision_overrides = {k[7:]: overrides.pop(k) for k in list(overrides) if k.startswith("vision_")}
    text_config.update(text_overrides)
    vision_config.update(vision_overrides)
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=tie_word_embeddings,
        **overrides,
    )


def generation_config_for(tokenizer: Any, max_new_tokens: int = 32) -> Any:
    """Greedy decoding that stops at `<|im_end|>` (or `<|endoftext|>`) and pads with `<|endoftext|>`."""
    from transformers import GenerationConfig

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return GenerationConfig(
        do_sample=False,
        eos_token_id=[im_end, eot],
        pad_token_id=eot,
        bos_token_id=None,
        max_new_tokens=max_new_tokens,
    )


def build_random_qwen3vl(
    out_dir: str | Path,
    *,
    seed: int = 0,
    text_hidden: int = 64,
    text_layers: int = 2,
    vision_hidden: int = 64,
    vision_depth: int = 2,
    image_size: int = 64,
    patch_size: int = 16,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 640,
    **overrides: Any,
) -> Path:
    """Save a random-weight `Qwen3VLForConditionalGeneration`, processor and generation config to `out_dir`.

    The directory loads offline with `AutoProcessor.from_pretrained(out_dir)` and
    `AutoModelForImageTextToText.from_pretrained(out_dir)`. Extra keyword arguments go to `qwen3vl_config`
    (`text_heads`, `vision_intermediate`, ... or any `Qwen3VLConfig` field).
    """
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(out, image_size=image_size, patch_size=patch_size, corpus=corpus, vocab_size=vocab_size)
    config = qwen3vl_config(
        processor.tokenizer,
        text_hidden=text_hidden,
        text_layers=text_layers,
        vision_hidden=vision_hidden,
        vision_depth=vision_depth,
        image_size=image_size,
        patch_size=patch_size,
        **overrides,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config = generation_config_for(processor.tokenizer)
    model.save_pretrained(str(out))
    return out
