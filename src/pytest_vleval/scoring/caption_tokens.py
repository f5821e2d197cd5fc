"""How caption sets in languages written without spaces are split into words before the COCO scorers.

PTBTokenizer (the official COCO step) splits English on spaces and punctuation; a Chinese sentence has neither,
so it stays one token and BLEU/CIDEr compare whole sentences. A golden set chooses ``tokenize:``

- ``ptb``: Stanford PTBTokenizer, exactly as COCOEvalCap runs it (the default; English).
- ``jieba``: jieba's word segmentation (precise mode, its default dictionary), as AI Challenger's Chinese caption
  evaluation segments references and candidates before the same COCO scorers.
- ``char``: one token per CJK character, the other common choice for Chinese; runs of letters or digits stay one.

For ``jieba`` and ``char`` the text is first NFKC-normalised and lower-cased, and tokens made only of punctuation
are dropped (as pycocoevalcap drops PTBTokenizer's punctuation tokens); BLEU, ROUGE_L and CIDEr then run on the
tokens unchanged. METEOR (English WordNet and stemmer) and SPICE (an English parser) are not scored for them.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from collections.abc import Callable

from pytest_vleval.scoring.cjk import CJK_CHARS, nfkc

__all__ = [
    "ENGLISH_ONLY",
    "JIEBA_INSTALL",
    "TOKENIZE_CHOICES",
    "english_only_reason",
    "python_tokenizer",
    "tokenize_problem",
]

TOKENIZE_CHOICES: tuple[str, ...] = ("ptb", "char", "jieba")
ENGLISH_ONLY: tuple[str, ...] = ("METEOR", "SPICE")
JIEBA_INSTALL = "pip install 'pytest-vleval[zh]' (or pip install jieba)"

_CHAR_TOKEN = re.compile(f"[{CJK_CHARS}]|[^\\W{CJK_CHARS}]+|\\S")


def _is_punctuation(token: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") for ch in token)


def _prepare(text: str) -> str:
    return nfkc(text).lower()


def char_tokenize(text: str) -> str:
    """One token per CJK character; a run of other letters or digits is one token; punctuation dropped."""
    tokens = _CHAR_TOKEN.findall(_prepare(text))
    return " ".join(token for token in tokens if not _is_punctuation(token))


def jieba_tokenize(text: str) -> str:
    """jieba's precise-mode segmentation (``jieba.lcut(text, cut_all=False)``); spaces and punctuation dropped."""
    import jieba

    tokens = (token.strip() for token in jieba.lcut(_prepare(text), cut_all=False))
    return " ".join(token for token in tokens if token and not _is_punctuation(token))


def python_tokenizer(tokenize: str) -> Callable[[str], str]:
    """The tokenizer function of ``tokenize: char`` or ``tokenize: jieba``."""
    if tokenize == "char":
        return char_tokenize
    if tokenize == "jieba":
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict ..." lines are not ours to print
        return jieba_tokenize
    raise ValueError(f"tokenize must be one of {', '.join(TOKENIZE_CHOICES)}, not {tokenize!r}")


def tokenize_problem(tokenize: object) -> str | None:
    """Why `tokenize` cannot be used here (an unknown name, jieba not installed), or None."""
    if tokenize not in TOKENIZE_CHOICES:
        return f"must be one of {', '.join(TOKENIZE_CHOICES)}, not {tokenize!r}"
    if tokenize == "jieba" and importlib.util.find_spec("jieba") is None:
        return f"jieba is not installed: {JIEBA_INSTALL}"
    return None


def english_only_reason(metric: str, tokenize: str) -> str:
    what = "matches English words (WordNet synonyms, an English stemmer)" if metric == "METEOR" else (
        "parses English sentences into scene graphs"
    )  # fmt: skip
    return f"{metric} {what}; not scored for a set tokenized with {tokenize} (a non-English set)"
