"""Golden caption sets: a YAML manifest + COCO-format references + images, parsed and validated once.

Manifest format (docs/CONTRACTS.md, "Golden caption sets")::

    name: shapes                     # optional, default: the manifest's folder name
    prompt: Describe the image.      # the question asked for every image
    references: captions.json        # COCO format, relative to the manifest
    images_dir: images               # optional, default: the manifest's folder; COCO file_name is relative to it
    max_new_tokens: 24               # optional, default: the plugin's
    thresholds: {CIDEr: 0.8, Bleu_4: 0.25, METEOR: 0.2}   # metric -> minimum corpus score

Every problem raises :class:`GoldenSetError` naming the file, the key (and image id) and what is wrong.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from pytest_vleval.metrics import METRIC_RANGES, METRICS

if TYPE_CHECKING:
    from pytest_vleval.metrics import CaptionScores

MANIFEST_KEYS: tuple[str, ...] = ("name", "prompt", "references", "images_dir", "max_new_tokens", "thresholds")
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
        from pytest_vleval.metrics import evaluate_captions

        return evaluate_captions(self.references, candidates, **options)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_YAML_HINTS: tuple[tuple[str, str], ...] = (
    ("mapping values are not allowed", "text that contains ': ' must be quoted, e.g. prompt: \"Caption: describe it\""),
    ("found character '\\t'", "YAML does not allow tabs for indentation; indent with spaces"),
    ("duplicate key", "each key may appear once; the later value would silently win in plain YAML"),
    ("cannot start any token", "values starting with @, ` or % must be quoted"),
    ("found undefined alias", "a value starting with * is read as an alias; quote it"),
    ("expected <block end>", "the indentation is inconsistent: keys of one mapping must line up"),
    ("could not find expected ':'", "a key is missing its ':' or a quoted string is not closed"),
    ("found unexpected end of stream", "a quoted string or a [list] / {mapping} is not closed"),
)


def load_golden_set(path: str | os.PathLike[str]) -> GoldenSet:
    """Parse and validate the golden set manifest at ``path`` (a ``golden*.yaml`` file, or a folder holding
    exactly one)."""
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
    images = _read_coco(references_path, images_dir, manifest)
    return GoldenSet(
        path=manifest,
        name=name,
        prompt=prompt,
        images=images,
        thresholds=MappingProxyType(thresholds),
        max_new_tokens=max_new_tokens,
        references_path=references_path,
        images_dir=images_dir,
    )


def _read_manifest(manifest: Path) -> dict[str, Any]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GoldenSetError(manifest, "manifest", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenSetError(manifest, "manifest", f"cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        hint = next((hint for needle, hint in _YAML_HINTS if needle in str(exc)), None)
        raise GoldenSetError(manifest, where, f"YAML syntax error: {problem}", hint=hint) from None
    if data is None:
        raise GoldenSetError(manifest, "manifest", f"is empty; required keys: {', '.join(_REQUIRED_KEYS)}")
    if not isinstance(data, dict):
        raise GoldenSetError(
            manifest, "manifest", f"must be a mapping of {', '.join(MANIFEST_KEYS)}, got {_kind(data)}"
        )
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
    raise GoldenSetError(manifest, key, f"must be a string, got {_kind(value)} {value!r}", hint=hint)


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
            f"must be a mapping of metric -> minimum corpus score, got {_kind(value)} {value!r}",
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
                f"must be a number from {low:g} to {high:g}, got {_kind(raw)} {raw!r}",
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


def _read_coco(references_path: Path, images_dir: Path, manifest: Path) -> tuple[GoldenImage, ...]:
    def error(key: str, problem: str, *, image_id: int | str | None = None, hint: str | None = None) -> GoldenSetError:
        return GoldenSetError(references_path, key, problem, image_id=image_id, hint=hint, manifest=manifest)

    try:
        document = json.loads(references_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise error(f"line {exc.lineno}, column {exc.colno}", f"malformed JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error("file", f"cannot be read: {exc}") from None
    coco_hint = (
        'COCO captions are {"images": [{"id": 1, "file_name": "a.jpg"}], '
        '"annotations": [{"image_id": 1, "caption": "..."}]}'
    )
    if isinstance(document, list):
        raise error(
            "file",
            "is a list; expected a COCO object with 'images' and 'annotations'",
            hint="this looks like a COCO results file ([{image_id, caption}]); " + coco_hint,
        )
    if not isinstance(document, dict):
        raise error("file", f"must be a JSON object, got {_kind(document)}", hint=coco_hint)
    for section in ("images", "annotations"):
        if not isinstance(document.get(section), list):
            found = "missing" if section not in document else f"a {_kind(document[section])}, not a list"
            raise error(section, found, hint=coco_hint)

    order: list[int | str] = []
    file_names: dict[int | str, str] = {}
    keys: dict[str, int | str] = {}
    for index, entry in enumerate(document["images"]):
        key = f"images[{index}]"
        if not isinstance(entry, dict):
            raise error(key, f"must be an object with 'id' and 'file_name', got {_kind(entry)}")
        image_id = entry.get("id")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)) or image_id == "":
            raise error(f"{key}.id", f"must be an integer or a non-empty string, got {image_id!r}")
        if image_id in file_names or str(image_id) in keys:
            raise error(f"{key}.id", "duplicate image id", image_id=image_id)
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise error(f"{key}.file_name", f"must be a non-empty string, got {file_name!r}", image_id=image_id)
        if Path(file_name).is_absolute():
            raise error(
                f"{key}.file_name",
                f"{file_name!r} is absolute",
                image_id=image_id,
                hint="file names are relative to images_dir, so the set can move",
            )
        order.append(image_id)
        file_names[image_id] = file_name
        keys[str(image_id)] = image_id

    references: dict[int | str, list[str]] = {image_id: [] for image_id in order}
    for index, entry in enumerate(document["annotations"]):
        key = f"annotations[{index}]"
        if not isinstance(entry, dict):
            raise error(key, f"must be an object with 'image_id' and 'caption', got {_kind(entry)}")
        image_id = entry.get("image_id")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)) or image_id not in references:
            hint = None
            if isinstance(image_id, (int, str)) and str(image_id) in keys:
                hint = f"ids compare with their JSON type: {image_id!r} is not {keys[str(image_id)]!r}"
            raise error(f"{key}.image_id", f"{image_id!r} is not the id of any entry in 'images'", hint=hint)
        caption = entry.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise error(f"{key}.caption", f"must be a non-empty string, got {caption!r}", image_id=image_id)
        references[image_id].append(caption)

    images: list[GoldenImage] = []
    for index, image_id in enumerate(order):
        if not references[image_id]:
            raise error(
                f"images[{index}]",
                f"image {file_names[image_id]!r} has no references (no annotation with this image_id)",
                image_id=image_id,
            )
        image_path = images_dir / file_names[image_id]
        if not image_path.is_file():
            raise error(f"images[{index}].file_name", f"image file not found: {image_path}", image_id=image_id)
        images.append(GoldenImage(str(image_id), image_id, image_path, tuple(references[image_id])))
    if not images:
        raise error("images", "is empty: a golden set needs at least one image")
    return tuple(images)


def _suggest(name: str, valid: Sequence[str]) -> str | None:
    lowered = {option.lower().replace("-", "_"): option for option in valid}
    if name.lower().replace("-", "_") in lowered:
        return f"did you mean {lowered[name.lower().replace('-', '_')]!r}? names are case-sensitive"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)
