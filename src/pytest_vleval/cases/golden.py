"""Golden caption sets: a YAML manifest + COCO-format references + images, parsed and validated once.

Manifest format (docs/CONTRACTS.md, "Golden caption sets")::

    name: shapes                     # optional, default: the manifest's folder name
    prompt: Describe the image.      # the question asked for every image
    references: captions.json        # COCO format, relative to the manifest
    images_dir: images               # optional, default: the manifest's folder; COCO file_name is relative to it
    max_new_tokens: 24               # optional, default: the plugin's
    thresholds: {CIDEr: 0.8, Bleu_4: 0.25, METEOR: 0.2}   # metric -> minimum corpus score
    tokenize: ptb                    # optional: ptb (English, default) | jieba | char (Chinese)

Every problem raises :class:`GoldenSetError` naming the file, the key (and image id) and what is wrong.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vleval.cases.checks import closest, kind
from pytest_vleval.cases.coco import read_coco
from pytest_vleval.cases.images import resolved_roots
from pytest_vleval.cases.yaml_loader import YamlError, load_yaml
from pytest_vleval.scoring.caption_inputs import METRIC_RANGES, METRICS
from pytest_vleval.scoring.caption_tokens import ENGLISH_ONLY, JIEBA_INSTALL, english_only_reason, tokenize_problem
from pytest_vleval.scoring.cjk import has_cjk

if TYPE_CHECKING:
    from pytest_vleval.scoring.captions import CaptionScores

MANIFEST_KEYS: tuple[str, ...] = (
    "name",
    "prompt",
    "references",
    "images_dir",
    "max_new_tokens",
    "thresholds",
    "tokenize",
)


class GoldenSetWarning(pytest.PytestWarning):
    """A golden set that loads but would be scored in a way its author probably did not mean (Chinese references
    tokenised by PTBTokenizer)."""


_REQUIRED_KEYS = ("prompt", "references")


class GoldenSetError(ValueError):
    """A golden set that cannot be used. The message names the file, the key (and image id) and the problem."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: str,
        problem: str,
        *,
        image_id: int | str | None = None,
        hint: str | None = None,
        manifest: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.key = key
        self.problem = problem
        self.image_id = image_id
        self.hint = hint
        self.manifest = Path(manifest) if manifest is not None else None
        where = f"{path}: {key}" + (f" (image id {image_id!r})" if image_id is not None else "")
        message = f"{where}: {problem}"
        if hint:
            message += f". Hint: {hint}"
        if manifest is not None:
            message += f" [references of golden set {manifest}]"
        super().__init__(message)


@dataclass(frozen=True)
class GoldenImage:
    """One image of a golden set. ``key`` (``str(image_id)``) is the key used for the caption metrics."""

    key: str
    image_id: int | str
    path: Path
    references: tuple[str, ...]


@dataclass(frozen=True)
class GoldenSet:
    """A parsed, validated golden caption set. ``max_new_tokens`` is None where the manifest leaves it to the
    plugin's default; ``thresholds`` is read-only, in manifest order."""

    path: Path
    name: str
    prompt: str
    images: tuple[GoldenImage, ...]
    thresholds: Mapping[str, float]
    max_new_tokens: int | None
    references_path: Path
    images_dir: Path
    tokenize: str = "ptb"

    @property
    def references(self) -> dict[str, tuple[str, ...]]:
        """{key: references}, the ``references`` argument of :func:`pytest_vleval.metrics.caption_scores`."""
        return {image.key: image.references for image in self.images}

    def image(self, key: str) -> GoldenImage:
        for image in self.images:
            if image.key == key:
                return image
        raise KeyError(key)

    def evaluate(self, candidates: Mapping[str, str], **options: Any) -> CaptionScores:
        """Score ``candidates`` ({key: caption}) against this set's references (options as for
        :func:`pytest_vleval.metrics.evaluate_captions`)."""
        from pytest_vleval.scoring.captions import evaluate_captions

        return evaluate_captions(self.references, candidates, **{"tokenize": self.tokenize, **options})


def load_golden_set(path: str | os.PathLike[str], *, roots: Sequence[Path] | None = None) -> GoldenSet:
    """Parse and validate the golden set manifest at ``path`` (a ``golden*.yaml`` file, or a folder holding
    exactly one). ``roots``: the folders its images must lie in once symlinks and '..' are resolved (the plugin
    passes the rootdir and ini ``vl_data_roots``); None: anywhere."""
    manifest = Path(path)
    if manifest.is_dir():
        found = sorted([*manifest.glob("golden*.yaml"), *manifest.glob("golden*.yml")])
        if len(found) != 1:
            raise GoldenSetError(manifest, "manifest", f"expected one golden*.yaml in the folder, found {len(found)}")
        manifest = found[0]
    data = _read_manifest(manifest)
    folder = manifest.parent

    unknown = [key for key in data if key not in MANIFEST_KEYS]
    if unknown:
        key = str(unknown[0])
        raise GoldenSetError(
            manifest,
            key,
            f"unknown key; valid keys: {', '.join(MANIFEST_KEYS)}",
            hint=_suggest(key, MANIFEST_KEYS),
        )
    for key in _REQUIRED_KEYS:
        if data.get(key) is None:
            raise GoldenSetError(manifest, key, "missing (required)")

    name = _text(manifest, data, "name") if data.get("name") is not None else folder.resolve().name
    prompt = _text(manifest, data, "prompt")
    references_path = folder / _text(manifest, data, "references")
    if not references_path.is_file():
        raise GoldenSetError(manifest, "references", f"file not found: {references_path}")
    images_dir = folder / _text(manifest, data, "images_dir") if data.get("images_dir") is not None else folder
    if not images_dir.is_dir():
        raise GoldenSetError(manifest, "images_dir", f"folder not found: {images_dir}")
    max_new_tokens = _max_new_tokens(manifest, data.get("max_new_tokens"))
    thresholds = _thresholds(manifest, data.get("thresholds"))
    tokenize = _tokenize(manifest, data.get("tokenize", "ptb"), thresholds)
    images = read_coco(references_path, images_dir, manifest, resolved_roots(roots))
    if tokenize == "ptb" and any(has_cjk(ref) for image in images for ref in image.references):
        warnings.warn(
            GoldenSetWarning(
                f"{manifest}: the references are Chinese (or Japanese/Korean) but tokenize is ptb: PTBTokenizer "
                "leaves such a sentence as one token, so BLEU and CIDEr compare whole sentences. Set tokenize: "
                f"jieba ({JIEBA_INSTALL}) or tokenize: char in the manifest"
            ),
            stacklevel=2,
        )
    return GoldenSet(
        path=manifest,
        name=name,
        prompt=prompt,
        images=images,
        thresholds=MappingProxyType(thresholds),
        max_new_tokens=max_new_tokens,
        references_path=references_path,
        images_dir=images_dir,
        tokenize=tokenize,
    )


def _tokenize(manifest: Path, value: Any, thresholds: Mapping[str, float]) -> str:
    problem = tokenize_problem(value)
    if problem is not None:
        raise GoldenSetError(manifest, "tokenize", problem)
    english = [metric for metric in thresholds if metric in ENGLISH_ONLY]
    if value != "ptb" and english:
        raise GoldenSetError(
            manifest,
            f"thresholds.{english[0]}",
            english_only_reason(english[0], str(value)),
            hint="gate a Chinese set on Bleu_4, ROUGE_L or CIDEr",
        )
    return str(value)


def _read_manifest(manifest: Path) -> dict[str, Any]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GoldenSetError(manifest, "manifest", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenSetError(manifest, "manifest", f"cannot be read: {exc}") from None
    try:
        data = load_yaml(text, manifest)
    except YamlError as exc:
        where = f"line {exc.line}, column {exc.column}" if exc.line is not None else "YAML"
        raise GoldenSetError(manifest, where, f"YAML syntax error: {exc.problem}", hint=exc.hint) from None
    if data is None:
        raise GoldenSetError(manifest, "manifest", f"is empty; required keys: {', '.join(_REQUIRED_KEYS)}")
    if not isinstance(data, dict):
        raise GoldenSetError(manifest, "manifest", f"must be a mapping of {', '.join(MANIFEST_KEYS)}, got {kind(data)}")
    return data


def _text(manifest: Path, data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, str):
        raise GoldenSetError(manifest, key, "is empty")
    if isinstance(value, bool):
        hint = "YAML reads yes/no/on/off/true/false as booleans: quote the text"
    elif isinstance(value, dict):
        hint = "an unquoted ': ' inside the text makes YAML read a mapping: quote the text"
    elif isinstance(value, list):
        hint = "a leading '- ' or [ ] makes a list: quote the text"
    else:
        hint = "quote the text"
    raise GoldenSetError(manifest, key, f"must be a string, got {kind(value)} {value!r}", hint=hint)


def _max_new_tokens(manifest: Path, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GoldenSetError(manifest, "max_new_tokens", f"must be a whole number >= 1, got {value!r}")
    return value


def _thresholds(manifest: Path, value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GoldenSetError(
            manifest,
            "thresholds",
            f"must be a mapping of metric -> minimum corpus score, got {kind(value)} {value!r}",
            hint="write e.g. thresholds: {CIDEr: 0.8, Bleu_4: 0.25}",
        )
    thresholds: dict[str, float] = {}
    for metric, raw in value.items():
        key = f"thresholds.{metric}"
        if metric not in METRICS:
            raise GoldenSetError(
                manifest,
                key,
                f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}",
                hint=_suggest(str(metric), METRICS),
            )
        low, high = METRIC_RANGES[metric]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise GoldenSetError(
                manifest,
                key,
                f"must be a number from {low:g} to {high:g}, got {kind(raw)} {raw!r}",
                hint=_number_hint(raw),
            )
        number = float(raw)
        if not math.isfinite(number) or not low <= number <= high:
            raise GoldenSetError(
                manifest,
                key,
                f"{raw!r} is outside the range of {metric}, {low:g} to {high:g}",
                hint=_range_hint(metric, number),
            )
        thresholds[metric] = number
    return thresholds


def _number_hint(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if re.fullmatch(r"[-+]?\d+,\d+", text):
        return f"use a decimal point: {text.replace(',', '.')}"
    if text.endswith("%"):
        return "write a fraction, not a percentage (25% is 0.25)"
    if re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", text):
        return f"PyYAML reads {text} as a string (YAML 1.1 needs a '.' and a signed exponent); write {float(text)!r}"
    return None


def _range_hint(metric: str, number: float) -> str | None:
    if metric == "CIDEr" and number > 10:
        return (
            "CIDEr is on pycocoevalcap's scale (roughly 0 to 2 for good models); papers often print it times 100, "
            f"so {number:g} there is {number / 100:g} here"
        )
    if number > 1 and number <= 100:
        return (
            f"{metric} is a fraction from 0 to 1 (papers print it times 100: {number:g} there is {number / 100:g} here)"
        )
    return None


def _suggest(name: str, valid: Sequence[str]) -> str | None:
    match = closest(name, valid)
    if match is None:
        return None
    same = match.lower().replace("-", "_") == name.lower().replace("-", "_")
    return f"did you mean {match!r}?" + (" names are case-sensitive" if same else "")
