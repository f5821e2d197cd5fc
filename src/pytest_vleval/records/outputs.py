"""What a run writes from its record: ``--vl-json``, ``--vl-save`` (``storage.py``), the HTML report
(``--vl-report``) and the Markdown summary (``--vl-markdown``, ``$GITHUB_STEP_SUMMARY``). A file that cannot be
written is a notice in the summary (and an internal-error exit status), never a lost test result."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vleval.records.storage import RunStorage, StorageError, autosave_name, read_json, write_json, write_text

if TYPE_CHECKING:
    from pytest_vleval.records.recorder import Recorder

__all__ = ["GITHUB_STEP_SUMMARY", "session_history", "write_outputs"]

GITHUB_STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def write_outputs(recorder: Recorder, record: dict[str, Any], session: pytest.Session) -> None:
    _save(recorder, record)
    report = recorder.options.report
    if report.html is not None:
        _write(recorder, session, "report written", report.html, lambda: _html(recorder, record))
    markdown, summary = report.markdown, _step_summary(report.github_step_summary)
    if markdown is not None or summary is not None:
        from pytest_vleval.report.markdown import render_markdown

        text = render_markdown(record)
        if markdown is not None:
            _write(recorder, session, "Markdown summary written", markdown, lambda: write_text(markdown, text))
        if summary is not None and record["models"]:
            _write(recorder, session, "", summary, lambda: _append(summary, text))


def _save(recorder: Recorder, record: dict[str, Any]) -> None:
    """``--vl-json`` and ``--vl-save``. An incomplete run (``run.complete``) is written when asked for by path or
    by name, marked so; an automatic save skips it, so that it never becomes the "latest" baseline."""
    options = recorder.options.record
    reason = record["run"].get("incomplete_reason")
    store = options.save is not None
    if options.save == "" and reason:  # --vl-autosave, or --vl-save without a name
        recorder.notices.append(
            f"not saving this run in the storage folder: it is incomplete ({reason}); "
            "--vl-save=NAME keeps such a run, marked incomplete"
        )
        store = False
    if not record["models"]:
        if options.json_path is not None or store:
            # As pytest-benchmark does: an empty record would only become a useless "latest" baseline.
            recorder.notices.append("not saving a run record: no model ran")
        return
    if options.json_path is not None:
        write_json(options.json_path, record)
        recorder.written.append(("run record saved", options.json_path))
    if store:
        name = options.save or autosave_name(record["run"].get("commit"), recorder.started)
        record["run"]["name"] = name
        recorder.written.append(("run record saved", RunStorage(options.storage).save(record, name)))
    if reason and (store or options.json_path is not None):
        recorder.notices.append(f"the saved record is marked incomplete ({reason}): --vl-compare refuses it")


def _step_summary(enabled: bool) -> Path | None:
    """GitHub Actions' job summary file, when it sets one and the ini key leaves it on."""
    value = os.environ.get(GITHUB_STEP_SUMMARY, "").strip()
    return Path(value) if enabled and value else None


def _write(recorder: Recorder, session: pytest.Session, what: str, path: Path, write: Callable[[], Path]) -> None:
    try:
        written = write()
    except Exception as exc:  # a broken view must not hide the test results
        recorder.notices.append(f"could not write {path}: {type(exc).__name__}: {exc}")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    if what:
        recorder.written.append((what, written))


def _append(path: Path, text: str) -> Path:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return path


def _html(recorder: Recorder, record: dict[str, Any]) -> Path:
    from pytest_vleval.report.html import HISTORY_RUNS, ReportInputs, write_report

    history, note = session_history(recorder, record)
    config = recorder.config
    inputs = ReportInputs(
        baseline=recorder.baseline,
        history=history[-HISTORY_RUNS:],
        history_note=note,
        cost_per_hour=recorder.options.report.cost_per_hour,
        requests_per_day=recorder.options.report.requests_per_day,
        roots=[Path(config.rootpath), Path(config.invocation_params.dir)],
    )
    assert recorder.options.report.html is not None
    return write_report(recorder.options.report.html, record, inputs)


def session_history(recorder: Recorder, record: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The complete saved runs of this machine's storage folder, oldest first, ending with this run."""
    from pytest_vleval.records.run_info import incomplete_reason
    from pytest_vleval.records.schema import RecordError, check_record
    from pytest_vleval.report.html import HISTORY_RUNS

    storage = RunStorage(recorder.options.record.storage)
    points: list[tuple[str, dict[str, Any]]] = []
    saved = {Path(p).resolve() for what, p in recorder.written if what == "run record saved"}
    this_saved = False
    runs = storage.runs() if storage.folder.is_dir() else []
    for stored in runs[-HISTORY_RUNS:]:
        if stored.path.resolve() in saved:
            points.append((stored.path.stem, record))
            this_saved = True
            continue
        try:
            stored_record = check_record(read_json(stored.path), stored.path)
        except (StorageError, RecordError):
            continue
        if incomplete_reason(stored_record) is None:  # an interrupted run's missing cases are not a drop
            points.append((stored.path.stem, stored_record))
    if not this_saved:
        points.append(("this run", record))
    return points, f"storage {recorder.display_path(storage.folder)}"
