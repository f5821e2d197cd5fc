"""``python -m pytest_vleval report RECORD.json [RECORD2.json ...] [-o report.html]``: the comparison table and the
HTML report rebuilt from saved run records, without running any model.

Several records are merged into one comparison (a model label found in more than one record gets the run's name
appended), and, unless ``--storage`` names a folder of saved runs, they also form the history plots, in the order
given. ``--compare BASELINE.json`` adds the gate's comparison and per-case diffs against that run.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

ANSI = {"green": "32", "bold": "1", "red": "31"}


class CliError(Exception):
    """A problem with the command line or a record; the message says which."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_vleval", description="pytest-vleval tools that work on saved run records and datasets."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Listed for --help only: __main__.py hands `import` to pytest_vleval.cases.importer before this parser runs.
    commands.add_parser(
        "import",
        help="Write a dataset in its official layout (vqav2, refcoco, hf, coco-captions, ...) as a frozen case file "
        "or golden set: python -m pytest_vleval import --help.",
    )
    report = commands.add_parser(
        "report",
        help="Print the model comparison table of saved run records and (with -o) write the HTML report.",
        description="Print the model comparison table of saved run records (--vl-json, --vl-save) and, with -o, "
        "write the self-contained HTML report. No model is run.",
    )
    report.add_argument("records", nargs="+", type=Path, metavar="RECORD.json", help="Run records, oldest first.")
    report.add_argument("-o", "--output", type=Path, metavar="PATH.html", help="Write the HTML report here.")
    report.add_argument(
        "--compare", type=Path, metavar="BASELINE.json", help="A record to compare with: gate table and per-case diffs."
    )
    report.add_argument(
        "--storage",
        type=Path,
        metavar="DIR",
        help="Saved runs for the history plots: a --vl-storage folder (this machine's sub-folder is used) or one "
        "machine folder. Default: the records given.",
    )
    report.add_argument(
        "--gpu-cost-per-hour",
        metavar="USD",
        help="Price per machine hour for the cost column. Default: the one the run was made with, else none.",
    )
    report.add_argument(
        "--requests-per-day",
        type=float,
        metavar="N",
        help="With a price: the precision table's monthly cost of serving N requests a day. Default: none.",
    )
    report.add_argument(
        "--root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="Where to look for the cases' images (repeatable). Default: each record's rootdir, then the "
        "current directory.",
    )
    report.add_argument("--title", default="pytest-vleval report", help="The report's title.")
    report.add_argument("--no-plots", action="store_true", help="Leave the plots out (faster for large records).")
    report.add_argument(
        "--width", type=int, default=None, metavar="N", help="Wrap the table at N columns. Default: the terminal's."
    )
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        return _report(args, out)
    except CliError as exc:
        print(f"pytest_vleval report: error: {exc}", file=sys.stderr)
        return 2


def read_record(path: Path) -> dict[str, Any]:
    from pytest_vleval.records.schema import RecordError, check_record
    from pytest_vleval.records.storage import StorageError, read_json

    try:
        return check_record(read_json(path), path)
    except (StorageError, RecordError) as exc:
        raise CliError(str(exc)) from None


def _name(path: Path, record: dict[str, Any]) -> str:
    return str((record.get("run") or {}).get("name") or path.stem)


def _absolute_images(record: dict[str, Any], root: Path | None) -> None:
    """Image paths made absolute where they exist under the record's rootdir (records from several checkouts
    then find their own images)."""
    if root is None:
        return

    def fix(path: str) -> str:
        candidate = root / path
        return str(candidate) if not Path(path).is_absolute() and candidate.is_file() else path

    for case in record.get("cases", []):
        case["images"] = [fix(str(p)) for p in case.get("images", [])]
    for entry in record.get("golden", []):
        for image in (entry.get("images") or {}).values():
            if isinstance(image, dict) and image.get("path"):
                image["path"] = fix(str(image["path"]))


def merge_records(records: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One record-shaped view of several runs: their models side by side (a label used by more than one run
    becomes ``label (run name)``), cases, benchmarks and golden sets. One record is returned as it is (copied)."""
    copies = []
    for name, record in records:
        record = copy.deepcopy(record)
        rootdir = (record.get("run") or {}).get("rootdir")
        _absolute_images(record, Path(rootdir) if rootdir else None)
        copies.append((name, record))
    if len(copies) == 1:
        return copies[0][1]
    counts = Counter(str(m["label"]) for _, r in copies for m in r.get("models", []))
    merged: dict[str, Any] = {
        "schema": copies[0][1]["schema"],
        "schema_version": max(int(r["schema_version"]) for _, r in copies),
        "run": _merged_run(copies),
        "models": [],
        "cases": [],
        "benchmarks": [],
        "golden": [],
        "comparison": None,
    }
    for name, record in copies:
        labels = {
            str(m["label"]): str(m["label"]) + (f" ({name})" if counts[str(m["label"])] > 1 else "")
            for m in record.get("models", [])
        }
        for model in record.get("models", []):
            merged["models"].append({**model, "label": labels[str(model["label"])]})
        for key in ("cases", "benchmarks", "golden"):
            for item in record.get(key, []):
                merged[key].append({**item, "model": labels.get(str(item.get("model")), item.get("model"))})
    return merged


def _merged_run(copies: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    runs = [r.get("run") or {} for _, r in copies]
    same = {
        k: runs[0].get(k)
        for k in ("machine_id", "machine", "versions", "rootdir")
        if all(r.get(k) == runs[0].get(k) for r in runs)
    }
    costs = [(r.get("options") or {}).get("gpu_cost_per_hour") for r in runs]
    return {
        **same,
        "name": ", ".join(name for name, _ in copies),
        "started": min((str(r["started"]) for r in runs if r.get("started")), default=None),
        "options": {"gpu_cost_per_hour": next((c for c in costs if c is not None), None)},
    }


def storage_history(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """The complete saved runs of a storage folder (this machine's sub-folder when it has one), oldest first."""
    from pytest_vleval.records.run_info import incomplete_reason
    from pytest_vleval.records.storage import RunStorage, machine_id
    from pytest_vleval.report.html import HISTORY_RUNS

    if not folder.is_dir():
        raise CliError(f"--storage {folder}: no such folder")
    storage = RunStorage(folder) if (folder / machine_id()).is_dir() else RunStorage(folder.parent, folder.name)
    points = []
    for stored in storage.runs()[-HISTORY_RUNS:]:
        try:
            record = read_record(stored.path)
        except CliError:
            continue
        if incomplete_reason(record) is None:  # an interrupted run's missing cases are not a drop
            points.append((stored.path.stem, record))
    return points


def _cost(raw: str | None, record: dict[str, Any]) -> float | None:
    import pytest

    from pytest_vleval.options.parse import parse_cost

    if raw is None:
        value = ((record.get("run") or {}).get("options") or {}).get("gpu_cost_per_hour")
        return None if value is None else float(value)
    try:
        return parse_cost(raw, "--gpu-cost-per-hour")
    except pytest.UsageError as exc:
        raise CliError(str(exc)) from None


def _write_table(lines: list[list[tuple[str, dict[str, bool]]]], out: TextIO) -> None:
    colour = out.isatty() and not os.environ.get("NO_COLOR")
    for segments in lines:
        text = ""
        for piece, markup in segments:
            codes = ";".join(ANSI[k] for k, on in markup.items() if on and k in ANSI)
            text += f"\x1b[{codes}m{piece}\x1b[0m" if colour and codes else piece
        out.write(text.rstrip() + "\n")


def _write_precisions(
    record: dict[str, Any], cost: float | None, volume: float | None, width: int, out: TextIO
) -> None:
    """The precision table (and flipped cases) of each model the record(s) ran at several precisions."""
    from pytest_vleval.report.precision import precision_views
    from pytest_vleval.report.table import text_lines

    for view in precision_views(record, cost_per_hour=cost, requests_per_day=volume):
        out.write(f"\nprecisions of {view.group.model} (reference {view.group.reference}):\n")
        _write_table(text_lines(view.table, width=width), out)
        out.write("".join(line + "\n" for line in view.flips))


def _report(args: argparse.Namespace, out: TextIO) -> int:
    from pytest_vleval.report.table import build_table, text_lines

    loaded = [(path, read_record(path)) for path in args.records]
    named: list[tuple[str, dict[str, Any]]] = []
    for path, record in loaded:
        name = _name(path, record)
        taken = {n for n, _ in named}
        name = (
            next(f"{name}#{n}" for n in range(2, len(taken) + 3) if f"{name}#{n}" not in taken)
            if name in taken
            else name
        )
        named.append((name, record))
    record = merge_records(named)
    baseline = None
    if args.compare is not None:
        from pytest_vleval.gate.compare import compare_records

        baseline = read_record(args.compare)
        record["comparison"] = compare_records(baseline, record, baseline_name=str(args.compare)).to_dict()
    cost = _cost(args.gpu_cost_per_hour, record)
    table = build_table(record, cost_per_hour=cost)
    width = args.width or shutil.get_terminal_size((120, 24)).columns
    _write_table(text_lines(table, width=max(60, width)), out)
    if not table.columns:
        out.write("no model results in the record(s)\n")
    _write_precisions(record, cost, args.requests_per_day, max(60, width), out)
    if args.output is None:
        return 0
    if not str(args.output).lower().endswith((".html", ".htm")):
        raise CliError(f"-o {args.output}: expected the path of an .html file")

    from pytest_vleval.report.html import ReportInputs, write_report

    if args.storage is not None:
        history, note = storage_history(args.storage), f"storage {args.storage}"
    else:
        history, note = named, "the records given"
    roots = [*args.root, Path.cwd()]
    inputs = ReportInputs(
        baseline=baseline,
        history=history,
        history_note=note,
        cost_per_hour=cost,
        requests_per_day=args.requests_per_day,
        roots=roots,
        sources=[str(p) for p in args.records],
        title=args.title,
        plots=not args.no_plots,
    )
    path = write_report(args.output, record, inputs)
    out.write(f"report written: {path}\n")
    return 0
