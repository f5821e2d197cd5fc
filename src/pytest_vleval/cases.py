"""YAML case files parsed into frozen dataclasses, validated once at collection.

Every error names the file, the case id and the key, so a broken file is a readable collection error
for that file alone.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_vleval import scoring

ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

# Keys a case (or `defaults`) may set; "turns" entries accept TURN_KEYS.
SHARED_KEYS = frozenset(
    {"scorer", "threshold", "options", "max_new_tokens", "tags", "skip", "xfail", "system", "fixtures"}
)
CASE_KEYS = SHARED_KEYS | {"id", "image", "images", "question", "turns", "expected", "answers", "box"}
TURN_KEYS = frozenset({"question", "expected", "answers", "box", "scorer", "threshold", "options"})
TOP_KEYS = frozenset({"defaults", "cases", "description"})
REFERENCE_KEYS = ("expected", "answers", "box")

YAML_BOOL_WORDS = {"yes", "no", "on", "off", "true", "false", "y", "n"}


class CaseFileError(Exception):
    """A case file that cannot be used; the message names the file, the case and the key."""


@dataclass(frozen=True)
class Turn:
    question: str
    scorer: str
    reference: tuple[Any, ...]  # accepted answers, 10 human answers, or a box (x1, y1, x2, y2)
    reference_key: str
    threshold: float
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def expected_text(self) -> str:
        if self.reference_key == "box":
            return "box " + "[" + ", ".join(f"{v:g}" for v in self.reference) + "]"
        if len(self.reference) == 1:
            return repr(self.reference[0])
        return "one of " + ", ".join(repr(r) for r in self.reference)


@dataclass(frozen=True)
class Case:
    id: str
    path: Path
    line: int
    images: tuple[Path, ...]
    turns: tuple[Turn, ...]
    max_new_tokens: int | None
    tags: tuple[str, ...] = ()
    fixtures: tuple[str, ...] = ()
    skip: str | None = None
    xfail: str | None = None
    system: str | None = None

    @property
    def is_dialogue(self) -> bool:
        return len(self.turns) > 1


@dataclass(frozen=True)
class CaseFile:
    path: Path
    cases: tuple[Case, ...]
    description: str | None = None


def _yaml_hint(value: Any) -> str:
    if isinstance(value, bool):
        return " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the answer, e.g. expected: 'yes')"
    return ""


class _Where:
    """Builds error messages that name the file, the case and the key."""

    def __init__(self, path: Path, case_id: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.case_id = case_id
        self.line = line

    def error(self, key: str | None, problem: str) -> CaseFileError:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.case_id is not None:
            parts.append(f"case {self.case_id!r}")
        if key is not None:
            parts.append(f"key {key!r}")
        return CaseFileError(": ".join(parts) + ": " + problem)


def _suggest(key: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(data: Mapping[str, Any], known: frozenset[str], where: _Where, what: str) -> None:
    for key in data:
        if not isinstance(key, str):
            raise where.error(str(key), f"{what} keys must be strings{_yaml_hint(key)}")
        if key not in known:
            raise where.error(
                key, f"unknown key in {what}{_suggest(key, known)}; allowed: {', '.join(sorted(known))}"
            )


def _text(value: Any, where: _Where, key: str) -> str:
    if isinstance(value, bool):
        raise where.error(key, f"expected text, got the boolean {value}{_yaml_hint(value)}")
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise where.error(key, f"expected text, got {type(value).__name__}")
    return value


def _texts(value: Any, where: _Where, key: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise where.error(key, "expected at least one answer, got an empty list")
    return tuple(_text(v, where, key) for v in items)


def _box(value: Any, where: _Where) -> tuple[float, ...]:
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


def _turn(data: Mapping[str, Any], settings: Mapping[str, Any], where: _Where, prefix: str = "") -> Turn:
    if "question" not in data:
        raise where.error(prefix + "question", "missing (every case or turn asks a question)")
    question = _text(data["question"], where, prefix + "question")

    scorer_name = _text(settings.get("scorer", "exact"), where, prefix + "scorer")
    try:
        scorer = scoring.get_scorer(scorer_name)
    except KeyError:
        raise where.error(
            prefix + "scorer",
            f"unknown scorer {scorer_name!r}{_suggest(scorer_name, frozenset(scoring.SCORERS))}; "
            f"known: {', '.join(sorted(scoring.SCORERS))}",
        ) from None

    given = [k for k in REFERENCE_KEYS if k in data]
    if len(given) > 1:
        raise where.error(prefix + given[1], f"give only one of {', '.join(given)}")
    if not given:
        raise where.error(
            prefix + scorer.reference,
            f"missing: scorer {scorer.name!r} compares the answer with {scorer.reference!r}",
        )
    key = given[0]
    if key != scorer.reference:
        raise where.error(prefix + key, f"scorer {scorer.name!r} reads {scorer.reference!r}, not {key!r}")
    reference: tuple[Any, ...]
    if key == "box":
        reference = _box(data["box"], where)
    else:
        reference = _texts(data[key], where, prefix + key)

    threshold_raw = settings.get("threshold", scorer.default_threshold)
    if isinstance(threshold_raw, bool) or not isinstance(threshold_raw, (int, float)):
        raise where.error(prefix + "threshold", f"expected a number, got {threshold_raw!r}")
    threshold = float(threshold_raw)
    if math.isnan(threshold) or not scorer.low <= threshold <= scorer.high:
        raise where.error(
            prefix + "threshold",
            f"{threshold:g} is outside the range of scorer {scorer.name!r} [{scorer.low:g}, {scorer.high:g}]",
        )

    if scorer.name == "vqa_accuracy":
        # Leave-one-out over few answers caps the score: with one answer it is always 0.
        answers = [str(answer) for answer in reference]
        best = max(scoring.vqa_accuracy(answer, answers) for answer in answers)
        if threshold > best:
            raise where.error(
                prefix + "threshold",
                f"{threshold:g} cannot be reached with {len(reference)} answers (best possible vqa_accuracy "
                f"{best:g}); the official metric expects 10 human answers",
            )

    options = settings.get("options") or {}
    if not isinstance(options, Mapping):
        raise where.error(prefix + "options", f"expected a mapping, got {type(options).__name__}")
    try:
        scoring.validate_reference(scorer.name, reference, options)
    except ValueError as exc:
        raise where.error(prefix + ("options" if options else key), str(exc)) from None

    return Turn(
        question=question,
        scorer=scorer.name,
        reference=reference,
        reference_key=key,
        threshold=threshold,
        options=dict(options),
    )


def _image_paths(data: Mapping[str, Any], base: Path, where: _Where) -> tuple[Path, ...]:
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
        path = (base / item).resolve() if not Path(item).is_absolute() else Path(item)
        if not path.is_file():
            raise where.error(key, f"image not found: {item} (looked for {path})")
        paths.append(path)
    return tuple(paths)


def _case_lines(text: str) -> list[int]:
    """1-based line of each entry of the top-level `cases` list (best effort)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "cases" and isinstance(value, yaml.SequenceNode):
            return [node.start_mark.line + 1 for node in value.value]
    return []


def _yaml_error(path: Path, exc: yaml.YAMLError, text: str) -> CaseFileError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    hint = ""
    if mark is not None:
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        if "?" in line and "{" in line:
            hint = (
                "\nhint: a '?' inside a {...} flow mapping confuses PyYAML; "
                "quote the text ('Is it red?') or use block style"
            )
        elif ": " in line.split(":", 1)[-1]:
            hint = "\nhint: a ': ' inside an unquoted value starts a mapping; quote the value"
    return CaseFileError(f"{where}: YAML syntax error: {exc}{hint}")


def load_case_file(path: Path, *, default_max_new_tokens: int | None = None) -> CaseFile:
    """Parse and validate one case file; raises :class:`CaseFileError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc, text) from None

    file_where = _Where(path)
    if not isinstance(data, Mapping):
        raise file_where.error(None, "expected a mapping with a 'cases' list at the top level")
    _check_keys(data, TOP_KEYS, file_where, "the file")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise file_where.error("defaults", "expected a mapping")
    _check_keys(defaults, SHARED_KEYS, file_where, "defaults")
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise file_where.error("cases", "expected a non-empty list of cases")

    lines = _case_lines(text)
    seen: dict[str, int] = {}
    cases = []
    for index, raw in enumerate(raw_cases):
        line = lines[index] if index < len(lines) else None
        cases.append(_case(raw, index, line, path, defaults, seen, default_max_new_tokens))
    description = data.get("description")
    return CaseFile(path=path, cases=tuple(cases), description=str(description) if description else None)


def _case(
    raw: Any,
    index: int,
    line: int | None,
    path: Path,
    defaults: Mapping[str, Any],
    seen: dict[str, int],
    default_max_new_tokens: int | None,
) -> Case:
    where = _Where(path, f"#{index + 1}", line)
    if not isinstance(raw, Mapping):
        raise where.error(None, f"expected a mapping, got {type(raw).__name__}")
    if "id" not in raw:
        raise where.error("id", "missing")
    case_id = _text(raw["id"], where, "id")
    where = _Where(path, case_id, line)
    if not ID_RE.match(case_id):
        raise where.error("id", "use letters, digits, '_', '.' and '-' only")
    if case_id in seen:
        raise where.error("id", f"duplicate id (also case #{seen[case_id] + 1})")
    seen[case_id] = index
    _check_keys(raw, CASE_KEYS, where, "a case")

    settings = {**defaults, **raw}
    images = _image_paths(raw, path.parent, where)

    if "turns" in raw:
        for key in ("question", *REFERENCE_KEYS):
            if key in raw:
                raise where.error(key, "a case with turns puts its questions and answers inside the turns")
        raw_turns = raw["turns"]
        if not isinstance(raw_turns, list) or not raw_turns:
            raise where.error("turns", "expected a non-empty list of {question, expected} turns")
        turns = []
        for n, raw_turn in enumerate(raw_turns, start=1):
            prefix = f"turns[{n}]."
            if not isinstance(raw_turn, Mapping):
                raise where.error(f"turns[{n}]", f"expected a mapping, got {type(raw_turn).__name__}")
            _check_keys(raw_turn, TURN_KEYS, _Where(path, case_id, line), f"turn {n}")
            shared = {k: v for k, v in settings.items() if k in ("scorer", "threshold", "options")}
            turns.append(_turn(raw_turn, {**shared, **raw_turn}, where, prefix))
    else:
        turns = [_turn(raw, settings, where)]

    max_new = settings.get("max_new_tokens", default_max_new_tokens)
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1):
        raise where.error("max_new_tokens", f"expected a positive integer, got {max_new!r}")

    tags = settings.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.isidentifier() for t in tags):
        raise where.error("tags", f"expected a list of identifiers (they become pytest marks), got {tags!r}")

    fixtures = settings.get("fixtures") or []
    if isinstance(fixtures, str):
        fixtures = [fixtures]
    if not isinstance(fixtures, list) or not all(isinstance(f, str) and f.isidentifier() for f in fixtures):
        raise where.error("fixtures", f"expected a list of fixture names, got {fixtures!r}")

    def reason(key: str) -> str | None:
        value = settings.get(key)
        if value is None or value is False:
            return None
        return "" if value is True else _text(value, where, key)

    system = settings.get("system")
    return Case(
        id=case_id,
        path=path,
        line=line or 1,
        images=images,
        turns=tuple(turns),
        max_new_tokens=max_new,
        tags=tuple(tags),
        fixtures=tuple(fixtures),
        skip=reason("skip"),
        xfail=reason("xfail"),
        system=_text(system, where, "system") if system is not None else None,
    )


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, pattern) for pattern in patterns)
