"""What case files and golden manifests check the same way: near-miss names and how a YAML value reads."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["YAML_BOOLEAN_HINT", "closest", "kind"]

YAML_BOOLEAN_HINT = "YAML reads unquoted yes/no/on/off/true/false as booleans"


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name `name` was probably meant to be: the same name in another case or with '-' for '_',
    else the nearest by spelling; None when nothing is close."""
    options = sorted(valid)
    folded = {option.lower().replace("-", "_"): option for option in options}
    key = name.lower().replace("-", "_")
    if key in folded and folded[key] != name:
        return folded[key]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return close[0] if close else None


def kind(value: Any) -> str:
    """How a YAML value reads in a message: 'a mapping', 'a list', 'a boolean', ..."""
    for types, name in (
        (dict, "a mapping"),
        (list, "a list"),
        (str, "a string"),
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (type(None), "nothing"),
    ):
        if isinstance(value, types):
            return name
    return type(value).__name__
