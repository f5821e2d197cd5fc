"""What a judge model is asked: the built-in rubrics, the versioned prompt templates shipped with the package
(``judge_templates/``), their content hashes, and the presentation variants ``--vl-judge-repeat`` cycles through.

A template never changes in place: a new wording is a new file (``judge-v2.txt``), so a record's
``template`` name and hash say exactly what every verdict in it was asked with."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "CHOICE_TEMPLATE",
    "JUDGE_TEMPLATE",
    "RUBRICS",
    "VARIANTS",
    "JudgePrompt",
    "Rubric",
    "choice_prompt",
    "judge_prompt",
    "template_sha256",
    "template_text",
]

JUDGE_TEMPLATE = "judge-v1"
CHOICE_TEMPLATE = "choice-v1"  # VLMEvalKit's answer-matching prompt for multiple choice (vlmeval/utils build_prompt)


@dataclass(frozen=True)
class Rubric:
    """A grading scale: `text` tells the judge what each score means; `low`..`high` are the scores it may give."""

    name: str
    text: str
    low: int = 1
    high: int = 5
    needs_reference: bool = False
    sees_image: bool = False  # the default; a case's `judge_image:` overrides it

    def normalized(self, score: int) -> float:
        """`score` on 0..1 (`low` -> 0, `high` -> 1): what a case's `threshold` is compared with."""
        return (score - self.low) / (self.high - self.low)


# The built-in rubrics. The built-in judge `tiny-judge` was trained on `correctness` and `description` only.
RUBRICS: dict[str, Rubric] = {
    "correctness": Rubric(
        "correctness",
        "5 = it gives the reference answer (other wording is fine); 1 = it gives another answer or none; "
        "2 to 4 = partly right.",
        needs_reference=True,
    ),
    # The seeds' description-accuracy scale: how well a description matches the image.
    "description": Rubric(
        "description",
        "5 = every object, colour and position it names is in the image; 3 = one of them is wrong; "
        "1 = two or more are wrong, or it describes another image.",
        sees_image=True,
    ),
    "helpfulness": Rubric(
        "helpfulness",
        "5 = it answers the question directly, correctly and completely; 3 = it answers part of it or with "
        "errors; 1 = it does not answer it.",
    ),
}

# The order of the prompt's sections in each variant: repeat k of a verdict is asked with VARIANTS[k % 4] (of the
# two distinct orders when there is no reference answer), so a judge that favours whatever comes first or last
# shows up as disagreement between repeats.
VARIANTS: tuple[tuple[str, ...], ...] = (
    ("rubric", "question", "reference", "answer"),
    ("rubric", "question", "answer", "reference"),
    ("question", "reference", "answer", "rubric"),
    ("question", "answer", "reference", "rubric"),
)
_LABELS = {"rubric": "Rubric", "question": "Question", "reference": "Reference answer", "answer": "Answer to grade"}


@cache
def template_text(name: str) -> str:
    """The shipped template `name` (``judge-v1``, ``choice-v1``)."""
    return resources.files("pytest_vleval.scoring").joinpath("judge_templates", f"{name}.txt").read_text("utf-8")


@cache
def template_sha256(name: str) -> str:
    return hashlib.sha256(template_text(name).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JudgePrompt:
    text: str
    variant: int


def _one_line(text: str) -> str:
    return " ".join(text.split())


def judge_prompt(
    rubric: Rubric, question: str, answer: str, reference: str | None = None, variant: int = 0
) -> JudgePrompt:
    """The text sent to the judge for one verdict (template `JUDGE_TEMPLATE`, section order `VARIANTS[variant]`)."""
    values = {"rubric": rubric.text, "question": question, "reference": reference, "answer": answer}
    # Without a reference answer two of the four orders coincide: repeats cycle over the distinct ones.
    orders = list(dict.fromkeys(tuple(key for key in order if values[key] is not None) for order in VARIANTS))
    index = variant % len(orders)
    sections = "\n".join(f"{_LABELS[key]}: {_one_line(str(values[key]))}" for key in orders[index])
    text = string.Template(template_text(JUDGE_TEMPLATE)).substitute(
        sections=sections, low=rubric.low, high=rubric.high
    )
    return JudgePrompt(text.rstrip("\n"), index)


def choice_prompt(question: str, options: dict[str, str], answer: str) -> str:
    """VLMEvalKit's prompt for matching a free answer to one option (``Z`` when none matches), filled as its
    ``extract_answer_from_item`` fills it (vlmeval/dataset/utils/multiple_choice.py): the question, the options
    as ``build_option_str`` writes them, the answer. The template file is its text verbatim."""
    rendered = "There are several options: \n" + "".join(f"{letter}. {text}\n" for letter, text in options.items())
    return string.Template(template_text(CHOICE_TEMPLATE)).substitute(
        question=question, options=rendered, answer=answer
    )
