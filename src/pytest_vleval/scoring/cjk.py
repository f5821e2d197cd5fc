"""Chinese (CJK) text for the scorers: Unicode NFKC, Chinese punctuation, where words end, Chinese numerals.

English-only rules give wrong numbers on Chinese answers rather than errors: full-width ``３`` is not a digit to
a regex, ``。`` is not a full stop, ``\\b`` finds no word boundary inside ``这是红色的圆形``, and ``三个`` holds no
number. Each scorer's documentation (README, "Scorers") says which of these rules it applies; the official
algorithms (VQAv2 accuracy, ANLS, ChartQA relaxed accuracy, OCRBench) are left as published, and Chinese answers
reach them through the visible ``cjk`` answer step or the ``mode: zh`` variant of ``vqa_accuracy``.
Standard library only.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "CJK_CHARS",
    "COUNTERS",
    "chinese_number",
    "cjk_answer",
    "find_chinese_numbers",
    "has_cjk",
    "nfkc",
    "normalize_zh_answer",
    "to_ascii_punctuation",
]

# Han ideographs (with extension A and compatibility ideographs), kana, Hangul: scripts written without spaces.
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK = re.compile(f"[{CJK_CHARS}]")

# Chinese punctuation NFKC leaves alone, as its ASCII counterpart (NFKC already maps the full-width forms
# ，！？：；（）［］ to , ! ? : ; ( ) [ ]).
_PUNCTUATION = str.maketrans(
    {
        "。": ".",
        "、": ",",
        "“": '"',
        "”": '"',
        "‘": "'",
        "’": "'",
        "《": "<",
        "》": ">",
        "【": "[",
        "】": "]",
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "〈": "<",
        "〉": ">",
        "…": "...",
        "—": "-",
        "·": " ",
    }
)

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5}
_DIGITS |= {"六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG_UNITS = {"万": 10**4, "亿": 10**8}
_NUMERAL = "零〇一二两俩三四五六七八九十百千万亿"
# Measure words that make a numeral a count (三个, 两只, 四根). 角 (三角形), 边 (四边形) and 分 (十分) are left out
# on purpose: after a numeral they usually start a word, not a count.
COUNTERS = "个只根张条块位本辆件头匹颗棵朵台支把次名座片架艘双对种层杯瓶碗道幅间扇盏尾枚份套岁元年天人"
_NUMERAL_RUN = re.compile(f"[{_NUMERAL}]+")
_WHOLE_COUNT = re.compile(f"\\s*([{_NUMERAL}]+|[0-9]+(?:\\.[0-9]+)?)\\s*[{COUNTERS}]?\\s*")


def nfkc(text: str) -> str:
    """Unicode NFKC: full-width letters, digits and punctuation become ASCII (``ＲＥＤ３！`` -> ``RED3!``)."""
    return unicodedata.normalize("NFKC", text)


def has_cjk(text: str) -> bool:
    """Whether `text` holds a Chinese, Japanese or Korean character."""
    return _CJK.search(text) is not None


def to_ascii_punctuation(text: str) -> str:
    """NFKC, then the Chinese punctuation NFKC keeps (。、“”‘’《》【】「」…) as its ASCII counterpart."""
    return nfkc(text).translate(_PUNCTUATION)


def chinese_number(numeral: str) -> int | None:
    """The value of a Chinese numeral: 三 -> 3, 十二 -> 12, 二十 -> 20, 一百零五 -> 105, 两千 -> 2000,
    三万五千 -> 35000, digit by digit 二〇二四 -> 2024; None when `numeral` is not one."""
    if not numeral or any(ch not in _NUMERAL for ch in numeral):
        return None
    if len(numeral) > 1 and all(ch in _DIGITS for ch in numeral):
        return int("".join(str(_DIGITS[ch]) for ch in numeral))
    total = section = 0
    digit: int | None = None
    for ch in numeral:
        if ch in _DIGITS:
            if digit is not None and digit != 0:
                return None  # two digits in a row inside a positional numeral: 三四十
            digit = _DIGITS[ch]
        elif ch in _UNITS:
            section += (1 if digit is None else digit) * _UNITS[ch]
            digit = None
        elif ch == "亿":
            total = (total + section + (digit or 0)) * _BIG_UNITS[ch]
            section, digit = 0, None
        else:  # 万 multiplies what came since the last 亿
            total += (section + (digit or 0)) * _BIG_UNITS[ch]
            section, digit = 0, None
    return total + section + (digit or 0)


def find_chinese_numbers(text: str) -> list[tuple[int, int]]:
    """(position, value) of each Chinese numeral in free text that reads as a number: followed by a counter
    (三个, 两只), several characters long (十二, 二十三), or the whole text (三). A lone 一 inside a word (一样,
    一些) or a numeral that starts a word (三角形, 四边形) is not a number."""
    found = []
    stripped = text.strip(" \t\n.,!?:;。，！？")
    for match in _NUMERAL_RUN.finditer(text):
        value = chinese_number(match.group())
        if value is None:
            continue
        after = text[match.end() : match.end() + 1]
        if (after and after in COUNTERS) or len(match.group()) > 1 or match.group() == stripped:
            found.append((match.start(), value))
    return found


def cjk_answer(text: str) -> str:
    """The ``cjk`` answer step: NFKC, Chinese punctuation as ASCII, and a whole answer that is a count (a Chinese
    numeral or digits, with or without its counter: 三个, 十二, 4根) as Arabic digits."""
    text = to_ascii_punctuation(text).strip()
    whole = _WHOLE_COUNT.fullmatch(text.rstrip("."))
    if whole:
        value = chinese_number(whole.group(1))
        return whole.group(1) if value is None else str(value)
    return text


_ZH_STRIP = re.compile(r"[^\w\s.]|(?<!\d)\.|\.(?!\d)")  # punctuation, but not a decimal point
_SPACE_NEXT_TO_CJK = re.compile(f"(?<=[{CJK_CHARS}])\\s+|\\s+(?=[{CJK_CHARS}])")


def normalize_zh_answer(text: str) -> str:
    """The answer normalisation of ``vqa_accuracy`` with ``mode: zh``, instead of the English one (articles,
    contractions and number words mean nothing in Chinese): :func:`cjk_answer` (NFKC, Chinese punctuation,
    counts as digits), lower case, every punctuation mark removed (a decimal point kept), no space next to a CJK
    character, runs of spaces as one."""
    text = cjk_answer(text.replace("\n", " ").replace("\t", " ")).lower()
    text = _ZH_STRIP.sub("", text)
    text = _SPACE_NEXT_TO_CJK.sub("", text)
    return " ".join(text.split())
