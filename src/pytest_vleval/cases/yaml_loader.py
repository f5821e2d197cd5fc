"""The one YAML loader of case files and golden-set manifests, with one set of rules.

- ``yaml.SafeLoader`` underneath (no arbitrary objects).
- A key given twice in one mapping is an error naming the key and both lines (PyYAML silently keeps the last).
- Every mapping remembers the line it starts on (:class:`LineDict`), so errors name the line of a case without
  a second parse of the file.
- A syntax error becomes one :class:`YamlError` with the line, the column, PyYAML's problem and, where a common
  mistake explains it, a hint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["LineDict", "YamlError", "load_yaml", "read_yaml"]


class YamlError(Exception):
    """A file that is not valid YAML (or repeats a key). ``line`` and ``column`` are 1-based."""

    def __init__(self, path: Path, problem: str, line: int | None, column: int | None, hint: str | None) -> None:
        self.path = path
        self.problem = problem
        self.line = line
        self.column = column
        self.hint = hint
        super().__init__(f"{path}: YAML syntax error: {problem}")


class LineDict(dict[Any, Any]):
    """A YAML mapping that knows the (1-based) line it starts on."""

    line: int = 0


# libyaml's parser when PyYAML was built with it (about 5x faster on a 20,000-case file); the constructors, and so
# the line numbers and the duplicate-key check, are the same Python code either way.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    pass


class _PureLoader(yaml.SafeLoader):
    """PyYAML's own parser: a file libyaml refuses is parsed again with it, for its clearer messages (and the
    hints below, written for them)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    mapping = LineDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_PureLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# (what PyYAML says, what usually caused it)
_HINTS: tuple[tuple[str, str], ...] = (
    (
        "mapping values are not allowed",
        "text that contains ': ' must be quoted, e.g. question: \"Caption: describe it\"",
    ),
    ("found character '\\t'", "YAML does not allow tabs for indentation; indent with spaces"),
    ("duplicate key", "each key may appear once; the later value would silently win in plain YAML"),
    ("cannot start any token", "values starting with @, ` or % must be quoted"),
    ("found undefined alias", "a value starting with * is read as an alias; quote it"),
    ("expected <block end>", "the indentation is inconsistent: keys of one mapping must line up"),
    ("could not find expected ':'", "a key is missing its ':' or a quoted string is not closed"),
    ("found unexpected end of stream", "a quoted string or a [list] / {mapping} is not closed"),
)


def _hint(problem: str, line_text: str) -> str | None:
    if "?" in line_text and "{" in line_text:
        return "a '?' inside a {...} flow mapping confuses PyYAML; quote the text ('Is it red?') or use block style"
    found = next((hint for needle, hint in _HINTS if needle in problem), None)
    if found is None and ": " in line_text.split(":", 1)[-1]:
        return "a ': ' inside an unquoted value starts a mapping; quote the value"
    return found


def load_yaml(text: str, path: Path) -> Any:
    """Parse `text` (the content of `path`); raises :class:`YamlError`."""
    try:
        return yaml.load(text, Loader=_Loader)  # a (C)SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        if _Base is not yaml.SafeLoader and not isinstance(exc, yaml.constructor.ConstructorError):
            try:  # the error as PyYAML's own parser words it (an error is rare: its cost does not matter)
                yaml.load(text, Loader=_PureLoader)
            except yaml.YAMLError as pure:
                exc = pure
        mark = getattr(exc, "problem_mark", None)
        problem = str(getattr(exc, "problem", None) or exc)
        lines = text.splitlines()
        line_text = lines[mark.line] if mark is not None and mark.line < len(lines) else ""
        raise YamlError(
            path,
            problem,
            None if mark is None else mark.line + 1,
            None if mark is None else mark.column + 1,
            _hint(problem, line_text),
        ) from None


def read_yaml(path: Path) -> tuple[str, Any]:
    """The text of `path` and its parsed content. OSError/UnicodeDecodeError for an unreadable file,
    :class:`YamlError` for a broken one."""
    text = Path(path).read_text(encoding="utf-8")
    return text, load_yaml(text, path)
