"""The scorer registry: name -> :class:`~pytest_vleval.scoring.base.Scorer`, reference and option checks, and
:func:`score`. A case passes when ``score >= threshold``; callers validate a case's reference and options once, at
collection, with :func:`validate_reference`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pytest_vleval.scoring.base import ScoreContext, Scorer, ScoreResult, ScorerFunc
from pytest_vleval.scoring.boxes import BOX_CONVENTIONS, score_iou
from pytest_vleval.scoring.choice import score_choice
from pytest_vleval.scoring.numbers import score_numeric, score_relaxed
from pytest_vleval.scoring.ocrbench import score_ocrbench
from pytest_vleval.scoring.text import compile_regex, score_anls, score_contains, score_exact, score_regex
from pytest_vleval.scoring.vqa import VQA_MODES, score_any_of, score_exact_normalized, score_vqa


def _run_by_the_judge(
    prediction: str, reference: tuple[Any, ...], options: Mapping[str, Any], context: ScoreContext
) -> ScoreResult:
    raise RuntimeError("scorer 'judge' asks a judge model: scoring/judge.py grades its turns, not score()")


def _scorer(
    name: str,
    func: ScorerFunc,
    reference: Literal["expected", "answers", "box"],
    description: str,
    *,
    default_threshold: float = 1.0,
    options: tuple[str, ...] = (),
) -> Scorer:
    return Scorer(name, func, 0.0, 1.0, default_threshold, reference, frozenset(options), description)


SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in (
        _scorer(
            "exact",
            score_exact,
            "expected",
            "Trimmed, case-insensitive equality (after NFKC: full-width forms as ASCII) with any expected answer; "
            "one trailing '.' or '。' ignored. 0/1.",
        ),
        _scorer(
            "exact_normalized",
            score_exact_normalized,
            "expected",
            "Equality after the official VQA answer normalisation (Chinese punctuation read as ASCII first). 0/1.",
        ),
        _scorer(
            "contains",
            score_contains,
            "expected",
            "Any expected answer appears in the answer as whole words, case-insensitive, after NFKC; an edge "
            "that is a Chinese character needs no word boundary (all: true: every expected answer must appear). 0/1.",
            options=("all",),
        ),
        _scorer(
            "regex",
            score_regex,
            "expected",
            "Expected strings are regexes, searched case-insensitively (flags: none to respect case; "
            "fullmatch: true to match the whole answer). 0/1.",
            options=("flags", "fullmatch"),
        ),
        _scorer(
            "any_of",
            score_any_of,
            "expected",
            "Membership of the VQA-normalised answer in the set of normalised accepted answers (Chinese "
            "punctuation read as ASCII first). 0/1.",
        ),
        _scorer(
            "vqa_accuracy",
            score_vqa,
            "answers",
            "Official VQAv2 accuracy against the human answers (10 recommended); mode: official|evalai|zh (zh: "
            "the same accuracy with the Chinese answer normalisation, cjk.normalize_zh_answer). Default threshold "
            "0.9: at least 3 of 10 annotators agree, the paper's 'fully correct'.",
            default_threshold=0.9,
            options=("mode",),
        ),
        _scorer(
            "anls",
            score_anls,
            "expected",
            "ANLS (DocVQA): 1 - normalised edit distance to the closest answer, 0 at or beyond tau (0.5).",
            default_threshold=0.5,
            options=("tau",),
        ),
        _scorer(
            "numeric",
            score_numeric,
            "expected",
            "First number in the answer (digits, full-width digits, or a Chinese count: 三个, 十二) within "
            "tolerance (relative, default 0.05) or absolute of the target; non-numeric targets need an exact "
            "match. 0/1.",
            options=("tolerance", "absolute"),
        ),
        _scorer(
            "relaxed_accuracy",
            score_relaxed,
            "expected",
            "ChartQA relaxed accuracy: the answer as a number within 5% of the target, else exact. 0/1.",
            options=("tolerance",),
        ),
        _scorer(
            "ocrbench",
            score_ocrbench,
            "answers",
            "OCRBench's official rule: any answer is a substring of the answer, both lower-cased and stripped "
            "(hme: true, for HME100k rows: both with every space removed, case kept). 0/1.",
            options=("hme",),
        ),
        _scorer(
            "choice",
            score_choice,
            "expected",
            "Multiple choice (MMBench): the option letter read from the answer with VLMEvalKit's rules (one "
            "letter standing as a word, else one option's text), equal to the expected letter; the case's "
            "`choices` are rendered under the question. 0/1.",
        ),
        _scorer(
            "judge",
            _run_by_the_judge,
            "expected",
            "A judge model grades the answer on a rubric (`rubric:` correctness, description, helpfulness, or your "
            "own), against `expected` as the reference answer where given; the score is the verdict on 0..1 "
            "(1 to 5 -> 0, 0.25, ..., 1), the mean of --vl-judge-repeat verdicts. Needs --vl-judge. Default "
            "threshold 0.75: 4 of 5.",
            default_threshold=0.75,
        ),
        _scorer(
            "iou",
            score_iou,
            "box",
            "IoU of the predicted box (read in the model's box convention, or the case's option "
            "'convention') with the reference box, original-image pixels xyxy. Of several boxes: the one "
            "labelled as option 'label' says, else the best-labelled match of the referring expression.",
            default_threshold=0.5,
            options=("convention", "label"),
        ),
    )
}


def get_scorer(name: str) -> Scorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; known scorers: {', '.join(sorted(SCORERS))}") from None


def _check_number_option(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high != math.inf else "")
        raise ValueError(f"option {name!r} must be a number {bound}, not {value!r}")


def _validate_options(scorer: Scorer, options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - scorer.options)
    if unknown:
        accepted = ", ".join(sorted(scorer.options)) or "none"
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for scorer {scorer.name!r}; accepted: {accepted}"
        )
    if "flags" in options and options["flags"] not in ("none", "ignorecase"):
        raise ValueError(f"option 'flags' must be 'none' or 'ignorecase', not {options['flags']!r}")
    if "all" in options and not isinstance(options["all"], bool):
        raise ValueError(f"option 'all' must be true or false, not {options['all']!r}")
    if "fullmatch" in options and not isinstance(options["fullmatch"], bool):
        raise ValueError(f"option 'fullmatch' must be true or false, not {options['fullmatch']!r}")
    if "hme" in options and not isinstance(options["hme"], bool):
        raise ValueError(f"option 'hme' must be true or false, not {options['hme']!r}")
    if "mode" in options and options["mode"] not in VQA_MODES:
        raise ValueError(f"option 'mode' must be one of {', '.join(VQA_MODES)}, not {options['mode']!r}")
    if "convention" in options and options["convention"] not in BOX_CONVENTIONS:
        raise ValueError(
            f"option 'convention' must be one of {', '.join(BOX_CONVENTIONS)}, not {options['convention']!r}"
        )
    if "label" in options and not (isinstance(options["label"], str) and options["label"].strip()):
        raise ValueError(f"option 'label' must be the label of the box to score, not {options['label']!r}")
    if "tau" in options:
        _check_number_option("tau", options["tau"], low=0.0, high=1.0, low_open=True)
    if "tolerance" in options:
        _check_number_option("tolerance", options["tolerance"], low=0.0)
    if "absolute" in options:
        _check_number_option("absolute", options["absolute"], low=0.0)
        if "tolerance" in options:
            raise ValueError("give either option 'tolerance' (relative) or 'absolute', not both")


def validate_reference(name: str, reference: Any, options: Mapping[str, Any] | None = None) -> None:
    """Check a case's reference and options for scorer ``name``; raise ValueError saying what is wrong.

    ``reference`` is the value of the scorer's YAML key (a string or a list of answers, or the box).
    """
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; known scorers: {', '.join(sorted(SCORERS))}")
    scorer = SCORERS[name]
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ValueError(f"options for scorer {name!r} must be a mapping, not {options!r}")
    _validate_options(scorer, options)
    key = scorer.reference
    items: Sequence[Any] = (reference,) if isinstance(reference, str) else reference
    if not isinstance(items, Sequence) or isinstance(items, bytes):
        raise ValueError(f"scorer {name!r} reads {key!r}, which must be a list, not {reference!r}")
    if key == "box":
        numbers_ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in items)
        if len(items) != 4 or not numbers_ok:
            raise ValueError(f"'box' must be 4 numbers [x1, y1, x2, y2] in original-image pixels, not {reference!r}")
        x1, y1, x2, y2 = items
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"'box' {list(items)} must have x1 < x2 and y1 < y2 (xyxy, not xywh?)")
        return
    if not items:
        if name == "judge":  # the reference answer is optional; the rubric says whether it needs one
            return
        raise ValueError(f"scorer {name!r} needs at least one entry in {key!r}")
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"{key!r} contains the YAML boolean {item!r}; quote it, e.g. 'yes' or 'no'")
        if not isinstance(item, str | int | float):
            raise ValueError(f"{key!r} entries must be strings, not {item!r}")
        if key == "expected" and not str(item).strip():
            raise ValueError(f"{key!r} contains an empty answer, which would match anything or nothing")
        if name == "regex":
            compile_regex(str(item), options)


def score(
    name: str,
    prediction: str,
    reference: str | Sequence[Any],
    options: Mapping[str, Any] | None = None,
    context: ScoreContext | None = None,
) -> ScoreResult:
    """Validate and run scorer ``name``; ``reference`` may be a single string."""
    scorer = get_scorer(name)  # an unknown name is its KeyError, listing the known ones
    options = {} if options is None else options
    validate_reference(name, reference, options)
    return _run(scorer, prediction, reference, options, context)


def score_checked(
    name: str,
    prediction: str,
    reference: str | Sequence[Any],
    options: Mapping[str, Any],
    context: ScoreContext | None = None,
) -> ScoreResult:
    """:func:`score` for a reference and options already validated (a case's turn, checked at collection)."""
    return _run(get_scorer(name), prediction, reference, options, context)


def _run(
    scorer: Scorer,
    prediction: str,
    reference: str | Sequence[Any],
    options: Mapping[str, Any],
    context: ScoreContext | None,
) -> ScoreResult:
    items = (reference,) if isinstance(reference, str) else tuple(reference)
    return scorer.func(prediction, items, options, context or ScoreContext())
