"""YAML case files parsed into frozen dataclasses, validated once at collection.

Every error names the file, the case id and the key, so a broken file is a readable collection error
for that file alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from pytest_vleval.cases.fields import (
    PROMPT_KEYS,
    REFERENCE_KEYS,
    CaseFileError,
    Turn,
    Where,
    check_keys,
    image_paths,
    names,
    parse_turn,
    reason,
    rotations,
    text,
)
from pytest_vleval.cases.images import resolved_roots
from pytest_vleval.cases.rubrics import JUDGE_KEYS
from pytest_vleval.cases.yaml_loader import LineDict, YamlError, read_yaml

__all__ = ["CASE_KEYS", "Case", "CaseFile", "CaseFileError", "Turn", "load_case_file", "matches_any"]

ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

# Keys a case (or `defaults`) may set; "turns" entries accept TURN_KEYS.
# Keys a turn takes from its case (and the case from `defaults`) unless it sets its own.
TURN_SETTINGS = ("scorer", "threshold", "options", "answer", *PROMPT_KEYS, *JUDGE_KEYS)
SHARED_KEYS = frozenset(
    {
        *TURN_SETTINGS,
        "max_new_tokens",
        "tags",
        "skip",
        "xfail",
        "system",
        "fixtures",
        "min_pixels",
        "max_pixels",
        "circular",
    }
)
CASE_KEYS = SHARED_KEYS | {"id", "image", "images", "question", "refer", "choices", "turns", *REFERENCE_KEYS}
TURN_KEYS = frozenset({"question", "refer", "choices", *TURN_SETTINGS, *REFERENCE_KEYS})
TOP_KEYS = frozenset({"defaults", "cases", "description", "source"})


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
    min_pixels: int | None = None  # image resolution limits for this case (None: the run's, else the model's)
    circular: bool = False  # CircularEval: each turn is one rotation of the options, asked without the others
    max_pixels: int | None = None

    @property
    def is_dialogue(self) -> bool:
        return len(self.turns) > 1


@dataclass(frozen=True)
class CaseFile:
    path: Path
    cases: tuple[Case, ...]
    description: str | None = None
    sourced: bool = False  # some cases come from a `source:` block's dataset files


def load_case_file(
    path: Path,
    *,
    default_max_new_tokens: int | None = None,
    roots: Sequence[Path] | None = None,
    image_store: Path | None = None,
) -> CaseFile:
    """Parse and validate one case file; raises :class:`CaseFileError`. `roots`: the folders its images must
    lie in once symlinks and '..' are resolved (the plugin passes the rootdir and ini ``vl_data_roots``);
    None: anywhere. A ``source:`` block's rows become cases too (``cases/sources``); their images are not
    opened at collection, and images embedded in a dataset are written once to `image_store` (default: a
    ``.vleval/images`` folder next to the file)."""
    path = Path(path)
    data = _read(path)
    file_where = Where(path)
    if not isinstance(data, Mapping):
        raise file_where.error(None, "expected a mapping with a 'cases' list (or a 'source' block) at the top level")
    check_keys(data, TOP_KEYS, file_where, "the file")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise file_where.error("defaults", "expected a mapping")
    check_keys(defaults, SHARED_KEYS, file_where, "defaults")
    raw_cases = data.get("cases")
    if "source" not in data and (not isinstance(raw_cases, list) or not raw_cases):
        raise file_where.error("cases", "expected a non-empty list of cases")
    if raw_cases is not None and not isinstance(raw_cases, list):
        raise file_where.error("cases", "expected a list of cases")

    seen: dict[str, int] = {}
    allowed = resolved_roots(roots)
    cases = [
        _case(raw, index, path, defaults, seen, default_max_new_tokens, allowed)
        for index, raw in enumerate(raw_cases or [])
    ]
    if "source" in data:
        store = image_store if image_store is not None else path.parent / ".vleval" / "images"
        rows, source_defaults = _source_rows(data["source"], path, store)
        merged = {**source_defaults, **defaults}
        for row in rows:
            reachable_threshold(row, merged)
        start = len(cases)
        cases += [
            _case(row, start + index, path, merged, seen, default_max_new_tokens, None, lazy_images=True)
            for index, row in enumerate(rows)
        ]
    description = data.get("description")
    return CaseFile(
        path=path,
        cases=tuple(cases),
        description=str(description) if description else None,
        sourced="source" in data,
    )


def _read(path: Path) -> Any:
    try:
        _, data = read_yaml(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(f"{path}: cannot read: {exc}") from None
    except YamlError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else str(path)
        hint = f"\nhint: {exc.hint}" if exc.hint else ""
        raise CaseFileError(f"{where}: YAML syntax error: {exc.problem}{hint}") from None
    return data


def reachable_threshold(row: dict[str, Any], settings: Mapping[str, Any]) -> None:
    """A dataset row whose annotators disagree cannot reach vqa_accuracy's threshold (0.9 needs 3 of 10 giving one
    answer): it passes at the best score its answers allow instead of making the whole source a collection error.
    The score itself, and so the mean (the official number), is untouched."""
    from collections import Counter

    from pytest_vleval.scoring.registry import get_scorer
    from pytest_vleval.scoring.vqa import best_vqa_accuracy

    scorer = row.get("scorer", settings.get("scorer"))
    answers = row.get("answers")
    if scorer != "vqa_accuracy" or not isinstance(answers, list) or not answers:
        return
    texts = [str(answer) for answer in answers]
    if Counter(texts).most_common(1)[0][1] >= 3:
        return  # three identical answers score 1.0
    threshold = row.get("threshold", settings.get("threshold", get_scorer("vqa_accuracy").default_threshold))
    best = best_vqa_accuracy(texts)
    if isinstance(threshold, (int, float)) and threshold > best:
        row["threshold"] = best


def _source_rows(block: Any, path: Path, store: Path) -> tuple[list[LineDict], Mapping[str, Any]]:
    """A ``source:`` block's rows as case mappings located at the block's line, and its format's settings."""
    from pytest_vleval.cases.sources import SourceError, expand_source

    line = block.line if isinstance(block, LineDict) else None
    try:
        expanded = expand_source(block, path.parent, store)
    except SourceError as exc:
        raise Where(path, None, line).error("source", str(exc)) from None
    rows = []
    for row in expanded.rows:
        located = LineDict(row)
        located.line = line or 1
        rows.append(located)
    return rows, expanded.defaults


def _case(
    raw: Any,
    index: int,
    path: Path,
    defaults: Mapping[str, Any],
    seen: dict[str, int],
    default_max_new_tokens: int | None,
    roots: Sequence[Path] | None = None,
    *,
    lazy_images: bool = False,
) -> Case:
    line = raw.line if isinstance(raw, LineDict) else None
    where = Where(path, f"#{index + 1}", line)
    if not isinstance(raw, Mapping):
        raise where.error(None, f"expected a mapping, got {type(raw).__name__}")
    if "id" not in raw:
        raise where.error("id", "missing")
    case_id = text(raw["id"], where, "id")
    where = Where(path, case_id, line)
    if not ID_RE.match(case_id):
        raise where.error("id", "use letters, digits, '_', '.' and '-' only")
    if case_id in seen:
        raise where.error("id", f"duplicate id (also case #{seen[case_id] + 1})")
    seen[case_id] = index
    check_keys(raw, CASE_KEYS, where, "a case")

    settings = {**defaults, **raw}
    max_new = settings.get("max_new_tokens", default_max_new_tokens)
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1):
        raise where.error("max_new_tokens", f"expected a positive integer, got {max_new!r}")
    system = settings.get("system")
    min_pixels, max_pixels = _pixels(settings, where)
    turns = _turns(raw, settings, where)
    circular = settings.get("circular", False)
    if not isinstance(circular, bool):
        raise where.error("circular", f"expected true or false, got {circular!r}")
    if circular:
        turns = rotations(turns, where)
    return Case(
        id=case_id,
        path=path,
        line=line or 1,
        images=image_paths(raw, path.parent, where, roots, lazy=lazy_images),
        turns=turns,
        max_new_tokens=max_new,
        # A case's tags and fixtures add to the defaults' (as a test's marks add to its class's); other keys replace.
        tags=_merged(defaults, raw, "tags", where, "identifiers (they become pytest marks)"),
        fixtures=_merged(defaults, raw, "fixtures", where, "fixture names"),
        skip=reason(settings, "skip", where),
        xfail=reason(settings, "xfail", where),
        system=text(system, where, "system") if system is not None else None,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        circular=circular,
    )


def _merged(defaults: Mapping[str, Any], raw: Mapping[str, Any], key: str, where: Where, what: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*names(defaults, key, where, what), *names(raw, key, where, what))))


def _pixels(settings: Mapping[str, Any], where: Where) -> tuple[int | None, int | None]:
    values = []
    for key in ("min_pixels", "max_pixels"):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise where.error(key, f"expected a positive number of pixels (e.g. {256 * 28 * 28}), got {value!r}")
        values.append(value)
    low, high = values
    if low is not None and high is not None and low > high:
        raise where.error("min_pixels", f"min_pixels {low} is above max_pixels {high}")
    return low, high


def _turns(raw: Mapping[str, Any], settings: Mapping[str, Any], where: Where) -> tuple[Turn, ...]:
    if "turns" not in raw:
        return (parse_turn(raw, settings, where),)
    for key in ("question", "refer", "choices", *REFERENCE_KEYS):
        if key in raw:
            raise where.error(key, "a case with turns puts its questions and answers inside the turns")
    raw_turns = raw["turns"]
    if not isinstance(raw_turns, list) or not raw_turns:
        raise where.error("turns", "expected a non-empty list of {question, expected} turns")
    shared = {k: v for k, v in settings.items() if k in TURN_SETTINGS}
    turns = []
    for n, raw_turn in enumerate(raw_turns, start=1):
        if not isinstance(raw_turn, Mapping):
            raise where.error(f"turns[{n}]", f"expected a mapping, got {type(raw_turn).__name__}")
        check_keys(raw_turn, TURN_KEYS, where, f"turn {n}")
        turns.append(parse_turn(raw_turn, {**shared, **raw_turn}, where, f"turns[{n}]."))
    return tuple(turns)


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch(name, pattern) for pattern in patterns)
