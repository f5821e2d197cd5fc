"""Model-selection reports in a pytest run: the ``--vl-report`` and ``--vl-gpu-cost-per-hour`` options, and the
plugin object that ends the terminal summary with the comparison table (``table.py``) when several models ran
and writes the HTML report (``htmlreport.py``), both from the run record (``records.py``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.session import get_session

PLUGIN_NAME = "vleval-report"


@dataclass(frozen=True)
class ReportOptions:
    path: Path | None  # the HTML report to write, None: none
    cost_per_hour: float | None  # USD per GPU hour, for the cost column


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vleval")
    group.addoption(
        "--vl-report",
        default=None,
        metavar="PATH.html",
        help="Write a self-contained HTML report (comparison table, plots, every case with its images and each "
        "model's answers) to PATH.html. Default: ini vl_report, else none.",
    )
    group.addoption(
        "--vl-gpu-cost-per-hour",
        default=None,
        metavar="USD",
        help="Price of the machine per hour in USD: adds the estimated cost per 1,000 requests to the model "
        "comparison. Default: ini vl_gpu_cost_per_hour, else no cost column.",
    )
    parser.addini("vl_report", "Default for --vl-report (relative to the rootdir). Default: none.", default="")
    parser.addini("vl_gpu_cost_per_hour", "Default for --vl-gpu-cost-per-hour. Default: none.", default="")


def parse_cost(raw: str, flag: str = "--vl-gpu-cost-per-hour") -> float:
    try:
        value = float(str(raw).strip().lstrip("$"))
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise pytest.UsageError(f"{flag}={raw!r}: expected a positive price in USD per hour, e.g. 2.5")
    return value


def parse_options(config: pytest.Config) -> ReportOptions:
    """Read and validate the report options; bad values raise :class:`pytest.UsageError` naming the flag."""
    raw_path = config.getoption("vl_report")
    base = Path(config.invocation_params.dir)
    if raw_path is None:
        raw_path = str(config.getini("vl_report") or "").strip() or None
        base = Path(config.rootpath)
    path = None
    if raw_path is not None:
        if not raw_path.lower().endswith((".html", ".htm")):
            hint = (
                " (an argument right after it was taken as its value: write --vl-report=PATH.html)"
                if os.sep in raw_path or raw_path.endswith((".yaml", ".py", "/"))
                else ""
            )
            raise pytest.UsageError(f"--vl-report={raw_path!r}: expected the path of an .html file{hint}")
        path = base / Path(raw_path).expanduser()
    raw_cost = config.getoption("vl_gpu_cost_per_hour")
    flag = "--vl-gpu-cost-per-hour"
    if raw_cost is None:
        raw_cost = str(config.getini("vl_gpu_cost_per_hour") or "").strip() or None
        flag = "ini vl_gpu_cost_per_hour"
    cost = None if raw_cost is None else parse_cost(raw_cost, flag)
    return ReportOptions(path=path, cost_per_hour=cost)


def add_report_data(record: dict[str, Any], rootdir: Path, cost_per_hour: float | None) -> None:
    """What the report shows that the record would otherwise lack: the GPU price, and each golden set's prompt,
    image paths and reference captions (so a saved record renders its golden sets without the manifests)."""
    if cost_per_hour is not None:
        record.setdefault("run", {}).setdefault("options", {})["gpu_cost_per_hour"] = cost_per_hour
    manifests: dict[str, Any] = {}
    for entry in record.get("golden", []):
        manifest = entry.get("manifest")
        if not manifest or "images" in entry:
            continue
        if manifest not in manifests:
            from pytest_vleval.golden import GoldenSetError, load_golden_set
            from pytest_vleval.records import relative

            try:
                golden = load_golden_set(rootdir / manifest)
            except (GoldenSetError, OSError):
                manifests[manifest] = None
            else:
                manifests[manifest] = {
                    "prompt": golden.prompt,
                    "images": {
                        image.key: {"path": relative(image.path, rootdir), "references": list(image.references)}
                        for image in golden.images
                    },
                }
        if manifests[manifest] is not None:
            entry.update(manifests[manifest])


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class ReportState:
    """Writes the HTML report and prints the comparison table at the end of a run (``config`` plugin)."""

    def __init__(self, config: pytest.Config, options: ReportOptions) -> None:
        self.config = config
        self.options = options
        self.written: Path | None = None
        self.errors: list[str] = []

    @pytest.hookimpl
    def pytest_vleval_update_record(self, config: pytest.Config, record: dict[str, Any]) -> None:
        add_report_data(record, Path(config.rootpath), self.options.cost_per_hour)

    @pytest.hookimpl(trylast=True)  # after RunState built the record
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.options.path is None or _is_worker(self.config) or self.config.option.collectonly:
            return
        run = get_session(self.config).run
        record = getattr(run, "record", None)
        if record is None:
            self.errors.append("no HTML report: the run record could not be built (see above)")
            return
        try:
            self.written = write_session_report(self.options.path, record, run, self.options)
        except Exception as exc:  # a broken report must not hide the test results
            self.errors.append(f"could not write the HTML report {self.options.path}: {type(exc).__name__}: {exc}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    @pytest.hookimpl(trylast=True)  # the comparison ends the summary
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pytest_vleval.table import build_table, text_lines

        record = getattr(get_session(self.config).run, "record", None)
        lines = []
        if record is not None and len(record.get("models", [])) >= 2:
            table = build_table(record, cost_per_hour=self.options.cost_per_hour)
            lines = text_lines(table, width=max(60, self.config.get_terminal_writer().fullwidth))
        messages = list(self.errors)
        if self.written is not None:
            messages.append(f"vleval report written: {_display(self.written, self.config)}")
        if not lines and not messages:
            return
        terminalreporter.section("vleval model comparison" if lines else "vleval report")
        for segments in lines:
            for text, markup in segments:
                terminalreporter.write(text, **markup)
            terminalreporter.write("\n")
        for message in messages:
            terminalreporter.write_line(message)


def write_session_report(path: Path, record: dict[str, Any], run: Any, options: ReportOptions) -> Path:
    """The report of this run: the baseline it was compared with and the saved runs as history."""
    from pytest_vleval.htmlreport import HISTORY_RUNS, ReportInputs, write_report

    history, note = session_history(run, record)
    rootdir = Path(run.config.rootpath)
    inputs = ReportInputs(
        baseline=run.baseline,
        history=history[-HISTORY_RUNS:],
        history_note=note,
        cost_per_hour=options.cost_per_hour,
        roots=[rootdir, Path(run.config.invocation_params.dir)],
    )
    return write_report(path, record, inputs)


def session_history(run: Any, record: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The saved runs of this machine's storage folder, oldest first, ending with this run."""
    from pytest_vleval.htmlreport import HISTORY_RUNS
    from pytest_vleval.records import RecordError, check_record
    from pytest_vleval.storage import RunStorage, StorageError, read_json

    storage = RunStorage(run.options.storage)
    points: list[tuple[str, dict[str, Any]]] = []
    saved = {Path(p).resolve() for p in run.saved}
    this_saved = False
    runs = storage.runs() if storage.folder.is_dir() else []
    for stored in runs[-HISTORY_RUNS:]:
        if stored.path.resolve() in saved:
            points.append((stored.path.stem, record))
            this_saved = True
            continue
        try:
            points.append((stored.path.stem, check_record(read_json(stored.path), stored.path)))
        except (StorageError, RecordError):
            continue
    if not this_saved:
        points.append(("this run", record))
    return points, f"storage {_display(storage.folder, run.config)}"


def _display(path: Path, config: pytest.Config) -> str:
    try:
        return os.path.relpath(path, config.invocation_params.dir)
    except ValueError:
        return str(path)


def configure(config: pytest.Config) -> None:
    """Parse the options and register :class:`ReportState`; ask for the record when the report needs it."""
    options = parse_options(config)
    vl = get_session(config)
    if vl.run is not None and (options.path is not None or len(vl.models) >= 2):
        vl.run.record_wanted = True
    config.pluginmanager.register(ReportState(config, options), PLUGIN_NAME)
