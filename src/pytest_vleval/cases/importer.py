"""``python -m pytest_vleval import FORMAT --KEY VALUE ... -o OUT.yaml``: a dataset in its official layout written
out as a plain, frozen YAML case suite that a team can review and commit.

The cases are the very ones a ``source:`` block with the same keys gives at collection (the same ids, questions,
references and settings, read by the same format readers); only their image paths change, to paths relative to
the written file, or with ``--copy-images`` to copies next to it named by their content. ``coco-captions``
writes a golden caption set instead (:mod:`pytest_vleval.cases.caption_import`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["CAPTIONS_FORMAT", "ImageFiles", "ImportProblem", "ImportRequest", "import_cases", "main", "write_yaml"]

CAPTIONS_FORMAT = "coco-captions"
FROZEN_NOTE = "Frozen: a change to the dataset does not reach these {what}; re-run the command to refresh them."
EPILOG = """\
The format's own keys are those of its source: block (README, "Using a standard benchmark"), given as
--KEY VALUE with '-' for '_' (--image-pattern); a key given twice is a list, and --KEY.NAME VALUE fills a
mapping (hf: --columns.id question_id). Relative paths are read from the current directory.

examples:
  python -m pytest_vleval import vqav2 --questions v2_OpenEnded_mscoco_val2014_questions.json \\
      --annotations v2_mscoco_val2014_annotations.json --images val2014/ --sample 500 -o tests/test_vqav2.yaml
  python -m pytest_vleval import coco-captions --karpathy dataset_coco.json --split test --images coco/ \\
      --sample 500 --copy-images -o golden/coco/golden.yaml
"""


class ImportProblem(ValueError):
    """A command line or dataset that cannot be imported; the message names the key, the file or the row."""


@dataclass(frozen=True)
class ImportRequest:
    """One ``import`` command: the format, its own keys (as a ``source:`` block would hold them) and the output."""

    format: str
    keys: Mapping[str, Any]
    output: Path
    copy_images: bool = False
    sample: int | None = None
    seed: int = 0
    command: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)  # case settings over the format's (a file's defaults)

    @property
    def folder(self) -> Path:
        return self.output.parent

    @property
    def image_store(self) -> Path:
        """Where embedded images and ``--copy-images`` copies go: ``images/<format>/`` next to the output."""
        return self.folder / "images" / self.format


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_vleval import",
        description="Write a dataset in its official layout as a frozen YAML case suite: the cases a source: block "
        "with the same keys gives at collection, for review and commit. coco-captions writes a golden caption set.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("format", metavar="FORMAT", help="The dataset's format (vqav2, textvqa, ..., coco-captions).")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.yaml", help="The YAML file to write (overwritten)."
    )
    parser.add_argument(
        "--copy-images",
        action="store_true",
        help="Copy each image next to OUT, under images/FORMAT/, named by its content (the same bytes once). "
        "Default: the cases point at the images where they are.",
    )
    parser.add_argument(
        "--sample", type=_positive, metavar="N", help="Keep N rows, chosen stably by id. Default: every row."
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="The sample's seed. Default: 0.")
    parser.add_argument(
        "--default",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A case setting for the written file's defaults, over the format's, as a source file's defaults: "
        "would give it (repeatable; the value is read as YAML: --default scorer=vqa_accuracy --default "
        "threshold=0.5). Default: the format's settings.",
    )
    return parser


def _setting(raw: str) -> tuple[str, Any]:
    import yaml

    key, has_value, value = raw.partition("=")
    if not has_value or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. scorer=vqa_accuracy), got {raw!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{raw!r}: the value is not valid YAML") from None


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of rows, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of rows, got {raw!r}")
    return value


def format_keys(tokens: Sequence[str]) -> dict[str, Any]:
    """``--KEY VALUE`` pairs as a source block's keys: '-' becomes '_', a repeated key a list, and
    ``--KEY.NAME VALUE`` a mapping."""
    keys: dict[str, Any] = {}
    items = list(tokens)
    while items:
        token = items.pop(0)
        if not token.startswith("--") or token == "--":
            raise ImportProblem(f"unexpected argument {token!r}: the format's keys are given as --KEY VALUE")
        name, has_value, value = token[2:].partition("=")
        if not has_value:
            if not items or items[0].startswith("--"):
                raise ImportProblem(f"{token}: expected a value")
            value = items.pop(0)
        key, _, member = name.replace("-", "_").partition(".")
        if key in ("format", "sample", "seed"):
            raise ImportProblem(f"{token}: give the format as the first argument and --sample/--seed as options")
        if member:
            mapping = keys.setdefault(key, {})
            if not isinstance(mapping, dict):
                raise ImportProblem(f"{token}: --{key} is given both as a value and as a mapping")
            mapping[member] = value
        elif key in keys:
            previous = keys[key]
            keys[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            keys[key] = value
    return keys


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """The ``import`` command (``argv``: its arguments, after ``import``); 2 on an error, said in one line."""
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = _parser().parse_known_args(argv)
    from pytest_vleval.cases.sources import SourceError

    try:
        request = ImportRequest(
            format=args.format,
            keys=format_keys(extra),
            output=args.output.expanduser().resolve(),
            copy_images=args.copy_images,
            sample=args.sample,
            seed=args.seed,
            command=shlex.join(["python", "-m", "pytest_vleval", "import", *argv]),
            defaults=dict(args.default),
        )
        if request.output.suffix not in (".yaml", ".yml"):
            raise ImportProblem(f"-o {args.output}: expected the path of a .yaml file")
        if request.format == CAPTIONS_FORMAT:
            from pytest_vleval.cases.caption_import import import_captions

            summary = import_captions(request)
        else:
            summary = import_cases(request)
    except (ImportProblem, SourceError) as exc:
        print(f"pytest_vleval import: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pytest_vleval import: error: {exc.filename or args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    out.write(summary + "\n")
    return 0


def import_cases(request: ImportRequest) -> str:
    """Write the cases of the source block `request` describes to ``request.output``; returns what was written."""
    from pytest_vleval.cases.casefile import load_case_file, reachable_threshold
    from pytest_vleval.cases.sources import check_format_name, expand_source

    check_format_name(request.format, noun="format", also_known=(CAPTIONS_FORMAT,))
    block: dict[str, Any] = {"format": request.format, **request.keys, "seed": request.seed}
    if request.sample is not None:
        block["sample"] = request.sample
    expanded = expand_source(block, Path.cwd(), request.image_store)
    images = ImageFiles(request.folder, request.image_store if request.copy_images else None)
    defaults = plain({**expanded.defaults, **request.defaults})
    cases = []
    for row in expanded.rows:
        case = plain(row)
        reachable_threshold(case, defaults)  # as a source block's rows get at collection
        for key in ("image", "images"):
            if key in case:
                paths = case[key] if isinstance(case[key], list) else [case[key]]
                placed = [images.place(str(path), f"case {case['id']}") for path in paths]
                case[key] = placed if isinstance(case[key], list) else placed[0]
        cases.append(case)
    fmt = expanded.format
    sampled = f", a sample of {len(cases)} (seed {request.seed})" if request.sample is not None else ""
    data = {
        "description": f"{fmt.name}: {len(cases)} cases imported from {fmt.origin or 'the dataset'}{sampled}",
        "defaults": defaults,
        "cases": cases,
    }
    header = source_header(request, "cases", images)
    write_yaml(request.output, header, data, load_case_file)
    return f"wrote {len(cases)} {fmt.name} cases to {request.output}" + images.summary()


def plain(value: Any) -> Any:
    """`value` in types ``yaml.safe_dump`` writes: mappings as dicts, tuples as lists, paths as text."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


class ImageFiles:
    """The images a written file refers to, as paths relative to its folder; each must exist (the written file
    would not load otherwise). With a `store`, each is copied there once, named by its content."""

    def __init__(self, folder: Path, store: Path | None) -> None:
        self.folder = folder
        self.store = store
        self.copied = 0
        self.outside = False  # some image lies outside the written file's folder
        self._placed: dict[Path, Path] = {}

    def place(self, raw: str, owner: str) -> str:
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        if path not in self._placed:
            if not path.is_file():
                raise ImportProblem(f"{owner}: image not found: {path}")
            self._placed[path] = self._stored(path) if self.store is not None else path
        target = self._placed[path]
        try:
            relative = Path(os.path.relpath(target, self.folder)).as_posix()
        except ValueError:  # another drive
            return str(target)
        self.outside = self.outside or relative.startswith("../")
        return relative

    def _stored(self, path: Path) -> Path:
        from pytest_vleval.cases.sources.base import store_once

        assert self.store is not None
        digest = hashlib.sha256()
        with path.open("rb") as handle:  # in chunks (hashlib.file_digest needs Python 3.11)
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        name, suffix = digest.hexdigest(), path.suffix.lower()
        target, written = store_once(self.store, name, suffix, lambda partial: shutil.copyfile(path, partial))
        self.copied += written
        return target

    def summary(self) -> str:
        return f"; copied {self.copied} new images to {self.store}" if self.store is not None else ""


def source_header(request: ImportRequest, what: str, images: ImageFiles, notes: Sequence[str] = ()) -> list[str]:
    """The comment at the top of a written file: the command, the source files, `notes` and that it is frozen."""
    lines = [f"Imported by: {request.command}", f"(run in {Path.cwd()})", f"Source ({request.format}):"]
    for key, value in request.keys.items():
        shown = value
        if isinstance(value, str) and (Path.cwd() / Path(value).expanduser()).exists():
            shown = str((Path.cwd() / Path(value).expanduser()).resolve())
        lines.append(f"  {key}: {shown}")
    if request.sample is not None:
        lines.append(f"Sample: {request.sample} rows chosen by the hash of their ids, seed {request.seed}")
    notes = [*notes, FROZEN_NOTE.format(what=what)]
    if images.outside:
        notes.append(
            "Some images lie outside this folder: the plugin reads them only under its rootdir or a folder of the "
            "ini key vl_data_roots (or re-run with --copy-images)."
        )
    return lines + [line for note in notes for line in textwrap.wrap(note, 116, subsequent_indent="  ")]


def write_yaml(path: Path, header: Sequence[str], data: Mapping[str, Any], check: Callable[[Path], Any]) -> None:
    """`data` as YAML under a comment `header`, written only when `check` (a loader) reads it back: a dataset row
    that no case file could hold is an error now, not at the next collection."""
    import yaml

    from pytest_vleval.cases.casefile import CaseFileError
    from pytest_vleval.cases.golden import GoldenSetError

    text = "".join(f"# {line}\n" for line in header)
    text += yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=120)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.part{path.suffix}")
    partial.write_text(text, encoding="utf-8")
    try:
        check(partial)
    except (CaseFileError, GoldenSetError) as exc:
        partial.unlink()
        problem = str(exc).replace(str(partial), str(path))
        raise ImportProblem(f"the imported file would not load, so it was not written: {problem}") from None
    partial.replace(path)
