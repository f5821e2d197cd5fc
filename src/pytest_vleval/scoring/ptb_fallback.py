"""A pure-Python stand-in for PTBTokenizer ``-preserveLines -lowerCase``, used only where Java is missing.

It reproduces the tokenizer on ordinary caption text (checked against the real one in the tests); it does not know
CoreNLP's full abbreviation list, URLs, emoticons or its treatment of rarer Unicode. Scores made with it are
flagged ``tokenizer: "fallback"`` and may differ slightly from the official ones.
"""

from __future__ import annotations

import re
import unicodedata

# Characters CoreNLP's lexer treats as line ends; pycocoevalcap only replaces "\n", so any other one
# silently shifts every later caption onto the wrong image. We replace them all with a space.
LINE_BREAKS = re.compile("\r\n|[\n\r\u000b\u000c\u0085\u2028\u2029]")

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "..."})
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr vs etc inc co ltd corp mt prof".split())
_SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "lemme": ("lem", "me"),
}
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_ATOM = re.compile(
    r"""
    (?P<dots>\.{3,})
    | (?P<dashes>--+)
    | (?P<marks>[?!]{2,})
    | (?P<initialism>(?:[^\W\d_]\.){2,})          # u.s. p.m. e.g.
    | (?P<number>\d+(?:[.,:/]\d+)+)               # 3.5 1,000 10:30 3/4
    | (?P<word>[^\W_]+(?:['./&-][^\W_]+)*'?)      # x-ray o'clock a/b dogs'
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_PTB_PUNCTUATION = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"})


def fallback_tokenize(caption: str) -> str:
    """Tokenise one caption like ``PTBTokenizer -preserveLines -lowerCase`` + pycocoevalcap's punctuation
    removal, without Java. Exact for ordinary caption text; an approximation otherwise."""
    text = LINE_BREAKS.sub(" ", caption).lower().translate(_QUOTES)
    tokens: list[str] = []
    for chunk in text.split():
        tokens.extend(_tokenize_chunk(chunk))
    return " ".join(token for token in tokens if token not in _PTB_PUNCTUATION)


def _tokenize_chunk(chunk: str) -> list[str]:
    atoms = [(match.lastgroup, match.group()) for match in _ATOM.finditer(chunk)]
    tokens: list[str] = []
    index = 0
    while index < len(atoms):
        kind, atom = atoms[index]
        index += 1
        if kind == "word":
            if atom in _ABBREVIATIONS and index == len(atoms) - 1 and atoms[index][1] == ".":
                tokens.append(atom + ".")  # "mr." keeps its period; "dog." does not
                index += 1
            else:
                tokens.extend(_split_word(atom))
        elif kind == "other":
            if atom in _BRACKETS:
                tokens.append(_BRACKETS[atom])
            elif atom == '"' or unicodedata.category(atom) in {"So", "Cs", "Co", "Cn"}:
                continue  # quotes become `` and '' (removed); CoreNLP drops what it cannot tokenise (emoji)
            else:
                tokens.append(atom)
        elif kind == "dashes":
            tokens.append("--")
        else:
            tokens.append(atom)
    return tokens


def _split_word(word: str) -> list[str]:
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    if word.endswith("'"):
        return [word[:-1], "'"]
    match = _CLITIC.match(word)
    if match:
        return [*_split_word(match.group(1)), match.group(2)]  # she'd've -> she 'd 've
    return [word]
