"""Checking caption-metric inputs, the order the metrics see the images in, and the tokenised
``gts``/``res`` dicts pycocoevalcap's scorers take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pytest_vleval.scoring.caption_tokens import python_tokenizer
from pytest_vleval.scoring.java import JavaStatus, ptb_tokenize
from pytest_vleval.scoring.ptb_fallback import fallback_tokenize

METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")

# Inclusive range of each corpus score. CIDEr(-D) is a mean of clipped cosine similarities times 10.
METRIC_RANGES: Mapping[str, tuple[float, float]] = {
    "Bleu_1": (0.0, 1.0),
    "Bleu_2": (0.0, 1.0),
    "Bleu_3": (0.0, 1.0),
    "Bleu_4": (0.0, 1.0),
    "METEOR": (0.0, 1.0),
    "ROUGE_L": (0.0, 1.0),
    "CIDEr": (0.0, 10.0),
    "SPICE": (0.0, 1.0),
}


def caption_key_order(keys: Iterable[Any]) -> list[Any]:
    """Keys sorted (mixed key types by type, then text): the order error messages list them in. The metrics see
    the caller's order, as COCOEvalCap does."""
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=lambda key: (type(key).__name__, str(key)))


Tokenizer = Literal["ptb", "fallback", "char", "jieba"]


def tokenized(
    keys: list[Any],
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    java: JavaStatus,
    scratch: str,
    tokenize: str = "ptb",
) -> tuple[dict[Any, list[str]], dict[Any, list[str]], Tokenizer]:
    """References and candidates tokenised as pycocoevalcap's ``gts`` and ``res`` dicts, in `keys` order.

    ``ptb``: exactly as COCOEvalCap does it, two PTBTokenizer calls, all references, then all candidates, each in
    `keys` order. The order matters: PTBTokenizer decides some tokens from the line that follows ("no." before a
    line starting with a digit stays "no.", else it is "no"), so tokenising both in one call, or sorted, can give a
    caption other tokens than COCOEvalCap gives it. Without Java a pure-Python stand-in (``fallback``).
    ``char`` / ``jieba``: ``caption_tokens.py``."""
    ref_lists = [list(references[key]) for key in keys]
    flat_refs = [caption for refs in ref_lists for caption in refs]
    flat_res = [candidates[key] for key in keys]
    tokenizer: Tokenizer
    if tokenize != "ptb":
        split = python_tokenizer(tokenize)
        ref_tokens, res_tokens = [split(c) for c in flat_refs], [split(c) for c in flat_res]
        tokenizer = "jieba" if tokenize == "jieba" else "char"
    elif java.usable:
        assert java.path is not None
        ref_tokens = ptb_tokenize(flat_refs, java=java.path, work_dir=scratch)
        res_tokens = ptb_tokenize(flat_res, java=java.path, work_dir=scratch)
        tokenizer = "ptb"
    else:
        ref_tokens, res_tokens = [fallback_tokenize(c) for c in flat_refs], [fallback_tokenize(c) for c in flat_res]
        tokenizer = "fallback"
    gts: dict[Any, list[str]] = {}
    position = 0
    for key, refs in zip(keys, ref_lists, strict=True):
        gts[key] = ref_tokens[position : position + len(refs)]
        position += len(refs)
    res: dict[Any, list[str]] = {key: [res_tokens[i]] for i, key in enumerate(keys)}
    return gts, res, tokenizer


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    requested = tuple(dict.fromkeys(metrics))
    unknown = [m for m in requested if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown caption metric(s) {', '.join(map(repr, unknown))}; valid: {', '.join(METRICS)}")
    if not requested:
        raise ValueError(f"no caption metric requested; valid: {', '.join(METRICS)}")
    return requested


def check_inputs(references: Mapping[Any, Sequence[str]], candidates: Mapping[Any, str]) -> list[Any]:
    if not isinstance(references, Mapping) or not isinstance(candidates, Mapping):
        raise TypeError("references and candidates must be mappings: {key: [reference, ...]} and {key: caption}")
    missing = [key for key in references if key not in candidates]
    extra = [key for key in candidates if key not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no candidate for {len(missing)} key(s): {_key_list(missing)}")
        if extra:
            parts.append(f"{len(extra)} candidate key(s) have no references: {_key_list(extra)}")
        raise ValueError("references and candidates must have the same keys; " + "; ".join(parts))
    if not references:
        raise ValueError("no captions to score: references and candidates are empty")
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise TypeError(f"references[{key!r}] must be a list of strings, got {type(refs).__name__}")
        if not refs:
            raise ValueError(f"references[{key!r}] is empty: every key needs at least one reference caption")
        for ref in refs:
            if not isinstance(ref, str):
                raise TypeError(f"references[{key!r}] contains a {type(ref).__name__}, not a string: {ref!r}")
    for key, caption in candidates.items():
        if not isinstance(caption, str):
            raise TypeError(f"candidates[{key!r}] must be a string, got {type(caption).__name__}: {caption!r}")
    return list(references)  # the caller's order, as COCOEvalCap keeps its image ids' order


def _key_list(keys: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(key) for key in caption_key_order(keys)[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")
