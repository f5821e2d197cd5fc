"""Reading one case's keys: every check names the file, the line, the case id and the key."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_vleval.cases.checks import YAML_BOOLEAN_HINT, closest
from pytest_vleval.cases.images import ImageProblem, LargeImageWarning, check_image
from pytest_vleval.cases.prompts import QUESTION_SLOT, TASK_PROMPTS, PromptSpec
from pytest_vleval.cases.rubrics import parse_rubric
from pytest_vleval.scoring.base import Scorer
from pytest_vleval.scoring.choice import parse_choices, render_options
from pytest_vleval.scoring.extract import validate_steps
from pytest_vleval.scoring.judge_prompt import Rubric
from pytest_vleval.scoring.registry import SCORERS, get_scorer, validate_reference
from pytest_vleval.scoring.vqa import VQA_MODES, best_vqa_accuracy

__all__ = [
    "PROMPT_KEYS",
    "REFERENCE_KEYS",
    "CaseFileError",
    "Turn",
    "Where",
    "check_keys",
    "image_paths",
    "names",
    "parse_turn",
    "reason",
    "rotations",
    "text",
]

REFERENCE_KEYS = ("expected", "answers", "box")
PROMPT_KEYS = ("task", "pre_prompt", "post_prompt", "prompt")


class CaseFileError(Exception):
    """A case file that cannot be used; the message names the file, the case and the key."""


@dataclass(frozen=True)
class Turn:
    question: str  # as written in the case; for `refer:` the referring expression
    scorer: str
    reference: tuple[Any, ...]  # accepted answers, 10 human answers, or a box (x1, y1, x2, y2)
    reference_key: str
    threshold: float
    options: Mapping[str, Any] = field(default_factory=dict)
    prompt: PromptSpec = field(default_factory=PromptSpec)  # the task's instruction around the question
    refer: bool = False  # `question` is a referring expression: the family words the grounding prompt
    answer_steps: tuple[str, ...] | None = None  # the case's `answer:` pipeline; None: the scorer's default
    choices: tuple[tuple[str, str], ...] = ()  # multiple choice: (letter, option), rendered under the question
    rubric: Rubric | None = None  # scorer judge: what the judge grades on
    judge_image: bool | None = None  # scorer judge: whether the judge sees the images (None: the rubric's default)

    def sent(self, refer_prompt: Callable[[str], str]) -> str:
        """The text the model is sent; `refer_prompt` is the model family's grounding wording."""
        if self.refer:
            return refer_prompt(self.question)
        return self.prompt.render(self.question + render_options(self.choices))

    @property
    def shown_question(self) -> str:
        return f"refer: {self.question}" if self.refer else self.question

    @property
    def expected_text(self) -> str:
        if self.reference_key == "box":
            return "box " + "[" + ", ".join(f"{v:g}" for v in self.reference) + "]"
        if len(self.reference) == 1:
            return repr(self.reference[0])
        if not self.reference:
            return f"rubric {self.rubric.name}" if self.rubric is not None else "(nothing)"
        return "one of " + ", ".join(repr(r) for r in self.reference)


def _yaml_hint(value: Any) -> str:
    if isinstance(value, bool):
        return f" ({YAML_BOOLEAN_HINT}: quote the answer, e.g. expected: 'yes')"
    return ""


def suggest(name: str, known: Iterable[str]) -> str:
    match = closest(name, known)
    return f" (did you mean {match!r}?)" if match else ""


class Where:
    """Builds error messages that name the file, the case and the key."""

    def __init__(self, path: Path, case_id: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.case_id = case_id
        self.line = line

    def _subject(self, key: str | None) -> list[str]:
        parts = [] if self.case_id is None else [f"case {self.case_id!r}"]
        return parts if key is None else [*parts, f"key {key!r}"]

    def error(self, key: str | None, problem: str) -> CaseFileError:
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        return CaseFileError(": ".join([where, *self._subject(key), problem]))

    def warn(self, key: str | None, problem: str, category: type[Warning]) -> None:
        """A warning located at this file and line (not at whichever test runs when it matters); made an error
        by ``-W error``, it is a collection error like any other."""
        message = ": ".join([*self._subject(key), problem])
        try:
            warnings.warn_explicit(category(message), category, str(self.path), self.line or 1)
        except category:
            raise self.error(key, problem) from None


def check_keys(data: Mapping[str, Any], known: frozenset[str], where: Where, what: str) -> None:
    for key in data:
        if not isinstance(key, str):
            raise where.error(str(key), f"{what} keys must be strings{_yaml_hint(key)}")
        if key not in known:
            raise where.error(key, f"unknown key in {what}{suggest(key, known)}; allowed: {', '.join(sorted(known))}")


def text(value: Any, where: Where, key: str) -> str:
    if isinstance(value, bool):
        raise where.error(key, f"expected text, got the boolean {value}{_yaml_hint(value)}")
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise where.error(key, f"expected text, got {type(value).__name__}")
    return value


def texts(value: Any, where: Where, key: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise where.error(key, "expected at least one answer, got an empty list")
    return tuple(text(v, where, key) for v in items)


def _box(value: Any, where: Where) -> tuple[float, ...]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise where.error("box", f"expected [x1, y1, x2, y2] in original-image pixels, got {value!r}")
    box = tuple(float(v) for v in value)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise where.error("box", f"expected x2 > x1 and y2 > y1, got {list(value)!r}")
    return box


def prompt_spec(settings: Mapping[str, Any], where: Where, prefix: str = "", question: str = "") -> PromptSpec:
    """The instruction around a question: the task's default (its Chinese one for a Chinese `question`), then the
    case's own ``pre_prompt`` / ``post_prompt``, or a ``prompt`` template holding ``{question}``."""
    task = settings.get("task")
    if task is not None:
        task = text(task, where, prefix + "task")
        if task not in TASK_PROMPTS:
            raise where.error(
                prefix + "task", f"unknown task {task!r}{suggest(task, TASK_PROMPTS)}; known: {', '.join(TASK_PROMPTS)}"
            )
    spec = PromptSpec.for_task(task, question)
    pre = text(settings["pre_prompt"], where, prefix + "pre_prompt") if "pre_prompt" in settings else spec.pre
    post = text(settings["post_prompt"], where, prefix + "post_prompt") if "post_prompt" in settings else spec.post
    template = settings.get("prompt")
    if template is not None:
        template = text(template, where, prefix + "prompt")
        if QUESTION_SLOT not in template:
            raise where.error(prefix + "prompt", f"a prompt template must hold {QUESTION_SLOT}, got {template!r}")
        if "pre_prompt" in settings or "post_prompt" in settings:
            raise where.error(prefix + "prompt", "give either a prompt template or pre_prompt/post_prompt, not both")
        return PromptSpec(template=template, task=task)
    return PromptSpec(pre=pre, post=post, task=task)


def _question(data: Mapping[str, Any], settings: Mapping[str, Any], where: Where, prefix: str) -> tuple[str, bool]:
    """(question or referring expression, whether it is a referring expression)."""
    if "question" in data and "refer" in data:
        raise where.error(prefix + "refer", "give either a question or refer (the family words the question)")
    if "refer" in data:
        for key in PROMPT_KEYS[1:]:
            if key in data:
                raise where.error(prefix + key, "a refer: case is asked in the model family's own grounding words")
        return text(data["refer"], where, prefix + "refer"), True
    if "question" in data:
        return text(data["question"], where, prefix + "question"), False
    task = settings.get("task")
    default = TASK_PROMPTS[task].question if isinstance(task, str) and task in TASK_PROMPTS else None
    if default is None:
        raise where.error(prefix + "question", "missing (every case or turn asks a question, or refers to an object)")
    return default, False


def parse_turn(data: Mapping[str, Any], settings: Mapping[str, Any], where: Where, prefix: str = "") -> Turn:
    """One question and its reference; `settings` holds the scorer, threshold, options, prompt and answer
    pipeline that apply to it."""
    question, refer = _question(data, settings, where, prefix)
    spec = prompt_spec(settings, where, prefix, question)
    scorer = _scorer(settings, where, prefix)
    if refer and scorer.reference != "box":
        raise where.error(prefix + "scorer", f"a refer: case is scored on its box (scorer 'iou'), not {scorer.name!r}")
    try:
        steps = validate_steps(settings.get("answer"))
    except ValueError as exc:
        raise where.error(prefix + "answer", str(exc)) from None
    key, reference = _reference(data, scorer, where, prefix)
    threshold = _threshold(settings, scorer, reference, where, prefix)
    options = settings.get("options") or {}
    if not isinstance(options, Mapping):
        raise where.error(prefix + "options", f"expected a mapping, got {type(options).__name__}")
    try:
        validate_reference(scorer.name, reference, options)
    except ValueError as exc:
        raise where.error(prefix + ("options" if options else key), str(exc)) from None
    choices = _choices(data, scorer, reference, where, prefix)
    rubric, judge_image = parse_rubric(settings, scorer.name, reference, where, prefix)
    return Turn(
        question=question,
        scorer=scorer.name,
        reference=reference,
        reference_key=key,
        threshold=threshold,
        options=dict(options),
        prompt=spec,
        refer=refer,
        answer_steps=steps,
        choices=choices,
        rubric=rubric,
        judge_image=judge_image,
    )


def rotations(turns: tuple[Turn, ...], where: Where) -> tuple[Turn, ...]:
    """CircularEval (MMBench): one turn per rotation of a multiple-choice question's options, each with its own
    expected letter (the right option's text moves, its letter follows)."""
    if len(turns) != 1 or turns[0].scorer != "choice":
        raise where.error(
            "circular", "CircularEval rotates the options of one multiple-choice question (scorer: choice)"
        )
    turn = turns[0]
    letters = [letter for letter, _ in turn.choices]
    texts = [text for _, text in turn.choices]
    right = letters.index(str(turn.reference[0]))
    out = []
    for shift in range(len(letters)):
        rotated = tuple(zip(letters, texts[shift:] + texts[:shift], strict=True))
        out.append(replace(turn, choices=rotated, reference=(letters[(right - shift) % len(letters)],)))
    return tuple(out)


def _choices(
    data: Mapping[str, Any], scorer: Scorer, reference: tuple[Any, ...], where: Where, prefix: str
) -> tuple[tuple[str, str], ...]:
    """A multiple-choice turn's options; scorer 'choice' needs them and one expected letter among them."""
    if "choices" not in data:
        if scorer.name == "choice":
            raise where.error(
                prefix + "choices", "missing: scorer 'choice' needs the options (a list, or letter: text)"
            )
        return ()
    try:
        choices = parse_choices(data["choices"])
    except ValueError as exc:
        raise where.error(prefix + "choices", str(exc)) from None
    letters = [letter for letter, _ in choices]
    if scorer.name == "choice" and (len(reference) != 1 or str(reference[0]) not in letters):
        raise where.error(
            prefix + "expected", f"expected one option letter of {', '.join(letters)}, got {list(reference)!r}"
        )
    return choices


def _scorer(settings: Mapping[str, Any], where: Where, prefix: str) -> Scorer:
    name = text(settings.get("scorer", "exact"), where, prefix + "scorer")
    try:
        return get_scorer(name)
    except KeyError:
        raise where.error(
            prefix + "scorer",
            f"unknown scorer {name!r}{suggest(name, SCORERS)}; known: {', '.join(sorted(SCORERS))}",
        ) from None


def _reference(data: Mapping[str, Any], scorer: Scorer, where: Where, prefix: str) -> tuple[str, tuple[Any, ...]]:
    given = [k for k in REFERENCE_KEYS if k in data]
    if len(given) > 1:
        raise where.error(prefix + given[1], f"give only one of {', '.join(given)}")
    if not given and scorer.name == "judge":
        return scorer.reference, ()  # a rubric without a reference answer (checked in cases/rubrics.py)
    if not given:
        raise where.error(
            prefix + scorer.reference,
            f"missing: scorer {scorer.name!r} compares the answer with {scorer.reference!r}",
        )
    key = given[0]
    if key != scorer.reference:
        raise where.error(prefix + key, f"scorer {scorer.name!r} reads {scorer.reference!r}, not {key!r}")
    if key == "box":
        return key, _box(data["box"], where)
    return key, texts(data[key], where, prefix + key)


def _threshold(
    settings: Mapping[str, Any], scorer: Scorer, reference: tuple[Any, ...], where: Where, prefix: str
) -> float:
    raw = settings.get("threshold", scorer.default_threshold)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise where.error(prefix + "threshold", f"expected a number, got {raw!r}")
    threshold = float(raw)
    if math.isnan(threshold) or not scorer.low <= threshold <= scorer.high:
        raise where.error(
            prefix + "threshold",
            f"{threshold:g} is outside the range of scorer {scorer.name!r} [{scorer.low:g}, {scorer.high:g}]",
        )
    if scorer.name == "vqa_accuracy":
        # Leave-one-out over few answers caps the score: with one answer it is always 0. The mode's own
        # normalisation decides which answers agree (mode: zh reads 三个 and 3 as one answer).
        options = settings.get("options")
        mode = options.get("mode") if isinstance(options, Mapping) else None
        best = best_vqa_accuracy([str(answer) for answer in reference], mode=mode if mode in VQA_MODES else "official")
        if threshold > best:
            raise where.error(
                prefix + "threshold",
                f"{threshold:g} cannot be reached with {len(reference)} answers (best possible vqa_accuracy "
                f"{best:g}); the official metric expects 10 human answers",
            )
    return threshold


@functools.lru_cache(maxsize=65536)
def _resolved(base: Path, item: str) -> Path:
    """Where a case's image path points (resolved once per folder and name: suites repeat their images)."""
    return (base / item).resolve() if not Path(item).is_absolute() else Path(item)


def image_paths(
    data: Mapping[str, Any], base: Path, where: Where, roots: Sequence[Path] | None = None, *, lazy: bool = False
) -> tuple[Path, ...]:
    """The case's images, each checked (:func:`~pytest_vleval.cases.images.check_image`); `roots`: resolved
    folders they must lie in, None: anywhere. `lazy` (a dataset source's rows): paths only, checked when the
    case runs, so that a large source collects without opening its images."""
    if "image" in data and "images" in data:
        raise where.error("images", "give either image or images, not both")
    if "image" in data:
        raw, key = [data["image"]], "image"
    elif "images" in data:
        raw, key = data["images"], "images"
        if not isinstance(raw, list) or not raw:
            raise where.error("images", "expected a non-empty list of image paths")
    else:
        raise where.error("image", "missing: a case needs an image (or images: [...])")
    paths = []
    for item in raw:
        if not isinstance(item, str) or not item.strip():
            raise where.error(key, f"expected an image path, got {item!r}")
        path = _resolved(base, item)
        if lazy:
            paths.append(path)
            continue
        try:
            note = check_image(path, item, roots)
        except ImageProblem as exc:
            raise where.error(key, str(exc)) from None
        if note is not None:
            where.warn(key, note, LargeImageWarning)
        paths.append(path)
    return tuple(paths)


def names(settings: Mapping[str, Any], key: str, where: Where, what: str) -> tuple[str, ...]:
    """A list of identifiers (tags become pytest marks, fixtures are fixture names); one name alone is a list."""
    value = settings.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.isidentifier() for v in value):
        raise where.error(key, f"expected a list of {what}, got {value!r}")
    return tuple(value)


def reason(settings: Mapping[str, Any], key: str, where: Where) -> str | None:
    """``skip``/``xfail``: None when unset or false, "" when true, else the reason given."""
    value = settings.get(key)
    if value is None or value is False:
        return None
    return "" if value is True else text(value, where, key)
