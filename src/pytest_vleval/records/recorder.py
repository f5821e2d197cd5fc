"""The one place results arrive: the :class:`Recorder` receives every result and builds the run record.

One transport, the same with and without xdist:

- a test's result (a case, a golden set, a latency item) travels on its test report, as the user property
  ``("vleval", {"kind": ..., "data": ...})`` that :func:`attach_result` adds; the recorder reads it in
  ``pytest_runtest_logreport``, which pytest calls for local reports and pytest-xdist for every worker's;
- a process's own state (the models it loaded and their backend info, memory windows, the prediction pass and
  the answer cache) is one snapshot per process: a worker's travels in ``workeroutput``, the controller's
  own is taken at the end.

At session finish the recorder on the reporting process (the controller, or the only process) builds the record
(``schema.py``), lets plugins add to it (``pytest_vleval_update_record``), compares it with the baseline
(``gate/``), sets the exit status on a breach and writes what was asked for (``outputs.py``). Everything a user
sees — the terminal summary, the gate's verdict, the comparison table, the HTML report, the Markdown summary,
``--vl-json``/``--vl-save`` — is a view of that one record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import pytest

from pytest_vleval.bench.memory import PeakTracker, max_merge
from pytest_vleval.records.schema import case_entry, golden_entry

if TYPE_CHECKING:
    from pytest_vleval.backends.base import ModelSpec
    from pytest_vleval.options import VlOptions
    from pytest_vleval.predict.pool import ModelPool
    from pytest_vleval.predict.predictor import BatchPredictor

__all__ = ["PROPERTY", "JudgeStatus", "Recorder", "attach_result", "is_controller", "is_worker"]

PROPERTY = "vleval"  # the user property a result travels in
WORKER_KEY = "vleval"  # the workeroutput key of a worker's snapshot
KINDS = ("case", "golden", "benchmark")
CASE_ATTRIBUTE = "vleval_case"  # the report of a case's test keeps its record entry (report.vleval_case)


def attach_result(item: pytest.Item, kind: str, data: dict[str, Any]) -> None:
    """Send a result to the recorder on the item's test report (locally, or from an xdist worker)."""
    assert kind in KINDS, kind
    item.user_properties.append((PROPERTY, {"kind": kind, "data": data}))


def attached_results(report: pytest.TestReport) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (kind, data) results `attach_result` put on the report's item."""
    for name, value in report.user_properties:
        if _is_result(value, name):
            yield str(value["kind"]), value["data"]


def _is_result(value: object, name: str) -> TypeGuard[dict[str, Any]]:
    """A user property that `attach_result` added."""
    return name == PROPERTY and isinstance(value, dict) and value.get("kind") in KINDS


def _take_results(holder: pytest.Item | pytest.TestReport) -> list[tuple[str, dict[str, Any]]]:
    """The results on an item or report, taken off it (its ``user_properties``, in place). A result lives on in
    the record only (a 200,000-case run kept each one twice more, on its item and its report), and --junitxml
    no longer writes each one's Python repr as a property of its test case."""
    taken = list(attached_results(holder))  # type: ignore[arg-type]
    if taken:
        holder.user_properties[:] = [
            (name, value) for name, value in holder.user_properties if not _is_result(value, name)
        ]
    return taken


def judge_error_status(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """The terminal status of a case whose judge failed: ERROR (E), not FAILED: the model is not blamed."""
    if report.when != "call" or not report.failed:
        return None
    entry = getattr(report, CASE_ATTRIBUTE, None)
    if entry is not None:
        judged = bool(entry.get("judge_error"))
    else:  # a report the recorder has not taken (an xdist worker's own)
        judged = any(kind == "case" and data.get("judge_error") for kind, data in attached_results(report))
    return ("error", "E", "ERROR") if judged else None


class JudgeStatus:
    """Shows a case whose judge failed as ERROR (registered only with --vl-judge: no other run can have one)."""

    PLUGIN_NAME = "vleval-judge-status"

    @pytest.hookimpl
    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        return judge_error_status(report)


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def _outcome(report: pytest.TestReport) -> dict[str, Any]:
    if hasattr(report, "wasxfail"):
        outcome = "xpassed" if report.passed else "xfailed"
    else:
        outcome = report.outcome
    line = report.location[1] if report.location else None
    return {"nodeid": report.nodeid, "line": None if line is None else int(line) + 1, "outcome": outcome}


class Recorder:
    """This run's results and the record built from them (``VlSession.recorder``, also a pytest plugin)."""

    PLUGIN_NAME = "vleval-recorder"

    def __init__(
        self,
        config: pytest.Config,
        options: VlOptions,
        models: list[ModelSpec],
        pool: ModelPool,
        predictor: BatchPredictor,
    ) -> None:
        self.config = config
        self.options = options
        self.models = models
        self.pool = pool
        self.predictor = predictor
        self.memory = PeakTracker()
        self.model_memory: dict[str, dict[str, Any]] = {}
        self.current_model: str | None = None
        self.cases: list[dict[str, Any]] = []
        self.benchmarks: list[dict[str, Any]] = []
        self.golden: dict[tuple[str, str], dict[str, Any]] = {}  # (model, manifest or set) -> the set's result
        self.processes: list[dict[str, Any]] = []
        self.collection_errors = 0  # failed collection reports (xdist forwards its workers' to the controller)
        self.started = datetime.now(timezone.utc)
        self._clock = time.perf_counter()
        self.baseline_path: Path | None = None
        self.baseline: dict[str, Any] | None = None
        self.record: dict[str, Any] | None = None
        self.written: list[tuple[str, Path]] = []  # (what, where) of every file written from the record
        self.notices: list[str] = []

    def load_baseline(self) -> None:
        from pytest_vleval.gate.baseline import find_baseline

        if self.options.record.compare is not None:
            self.baseline_path, self.baseline, notes = find_baseline(self.config, self.options.record)
            self.notices.extend(notes)

    # Memory windows: a model's load, and its whole stay in this process (until the next load or session end).
    @pytest.hookimpl(wrapper=True)
    def pytest_vleval_load_model(
        self, config: pytest.Config, spec: ModelSpec, options: VlOptions
    ) -> Generator[None, Any, Any]:
        self._close_model()
        self.memory.open(f"model:{spec.label}")
        self.memory.open(f"load:{spec.label}")
        self.current_model = spec.label
        try:
            return (yield)
        finally:
            window = self.memory.close(f"load:{spec.label}")
            slot = self.model_memory.setdefault(spec.label, {})
            slot["load"] = max_merge([slot.get("load") or {}, window])

    def _close_model(self) -> None:
        label, self.current_model = self.current_model, None
        if label is not None and self.memory.is_open(f"model:{label}"):
            window = self.memory.close(f"model:{label}")
            slot = self.model_memory.setdefault(label, {})
            slot["peak"] = max_merge([slot.get("peak") or {}, window])

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if call.when == "call":
            _take_results(item)  # the call's report (a copy of the list) carries them on
        return report

    @pytest.hookimpl(tryfirst=True)  # before the terminal's status (judge_error_status) and --junitxml
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or is_worker(self.config):  # a worker's results reach its controller
            return
        for kind, data in _take_results(report):
            self._receive(kind, data, report)

    def _receive(self, kind: str, data: dict[str, Any], report: pytest.TestReport) -> None:
        rootdir = Path(self.config.rootpath)
        if kind == "case":
            outcome = _outcome(report)
            if data.get("judge_error") and outcome["outcome"] == "failed":
                outcome["outcome"] = "error"  # the judge failed, not the model (shown as ERROR, see report_status)
            entry = case_entry(data, rootdir=rootdir, **outcome)
            self.cases.append(entry)
            setattr(report, CASE_ATTRIBUTE, entry)
        elif kind == "benchmark":
            self.benchmarks.append(data)
        else:
            entry = golden_entry(data, rootdir=rootdir, invocation_dir=Path(self.config.invocation_params.dir))
            self.golden.setdefault((entry["model"], entry.get("manifest") or entry["set"]), entry)

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors += 1

    @pytest.hookimpl(trylast=True)  # as pytest's terminal reporter starts its clock
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """The run's clock starts where pytest's does, so the record's duration and pytest's last line agree."""
        self.started = datetime.now(timezone.utc)
        self._clock = time.perf_counter()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        if WORKER_KEY in output:
            self.processes.append(json.loads(output[WORKER_KEY]))

    def snapshot(self) -> dict[str, Any]:
        """This process's part of the record: the models it loaded, their memory windows, the prediction pass."""
        from pytest_vleval.bench.memory import gpu_info
        from pytest_vleval.records.schema import to_jsonable

        self._close_model()
        models: dict[str, dict[str, Any]] = {}
        for label, info in self.pool.infos.items():
            models[label] = {"info": info, "loads": self.pool.load_counts.get(label, 0)}
        for label, error in self.pool.load_errors.items():
            models.setdefault(label, {"info": {}, "loads": 0})["load_error"] = error
        for label, memory in self.model_memory.items():
            models.setdefault(label, {"info": {}, "loads": 0})["memory"] = memory
        return to_jsonable(
            {
                "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                "models": models,
                "prediction": self.predictor.snapshot(),
                "gpu": gpu_info(),
            }
        )

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if is_worker(self.config):
            self.config.workeroutput[WORKER_KEY] = json.dumps(self.snapshot())  # type: ignore[attr-defined]
            return
        if self.config.option.collectonly:
            return
        self.processes.append(self.snapshot())
        if not self._anything_to_record():
            return
        try:
            self._finish(session)
        except KeyboardInterrupt:  # a second Ctrl-C while the outputs were written: stop, without a traceback
            self.notices.append("interrupted while writing the run's outputs: some were not written")
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        except Exception as exc:  # a broken record must not hide the test results
            self.notices.append(f"could not build or save the run record: {type(exc).__name__}: {exc}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _anything_to_record(self) -> bool:
        touched = any(p.get("models") or p["prediction"]["models"] for p in self.processes)
        return bool(self.cases or self.benchmarks or self.golden or touched or self.options.record.wants_record)

    def _finish(self, session: pytest.Session) -> None:
        from pytest_vleval.records.outputs import write_outputs
        from pytest_vleval.records.run_info import completeness, run_info
        from pytest_vleval.records.schema import build_record

        config = self.config
        record = build_record(
            run=run_info(config, self.options, self.started, self._clock, self.processes),
            models=self.models,
            cases=self.cases,
            benchmarks=self.benchmarks,
            golden=list(self.golden.values()),
            processes=self.processes,
            rootdir=Path(config.rootpath),
        )
        results = len(self.cases) + len(self.golden) + len(self.benchmarks)
        record["run"].update(completeness(session.exitstatus, self.collection_errors, results))
        try:
            config.hook.pytest_vleval_update_record(config=config, record=record)
            if self.baseline is not None:
                self._gate(session, record)
            self._precisions(session, record)
        except KeyboardInterrupt:  # Ctrl-C in a slow hook or comparison: still write what the run found
            session.exitstatus = pytest.ExitCode.INTERRUPTED
            record["run"].update(completeness(session.exitstatus, self.collection_errors, results))
            record.pop("comparison", None)
            self.notices.append("interrupted while finishing the record: it is written without the comparison")
        record["run"]["exitstatus"] = int(session.exitstatus)
        record["run"]["duration_s"] = round(time.perf_counter() - self._clock, 3)  # all but writing and printing
        self.record = record
        write_outputs(self, record, session)

    def _gate(self, session: pytest.Session, record: dict[str, Any]) -> None:
        from pytest_vleval.gate.compare import compare_records

        assert self.baseline is not None
        options = self.options.record
        comparison = compare_records(
            self.baseline,
            record,
            options.rules,
            alpha=options.significance,
            baseline_name=self.display_path(self.baseline_path),
        )
        record["comparison"] = comparison.to_dict()
        if options.rules and comparison.failed:
            if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _precisions(self, session: pytest.Session, record: dict[str, Any]) -> None:
        """The precision variants of the run (record["precisions"]), gated by limits like accuracy@int4:-5pp."""
        from pytest_vleval.gate.precision import precision_groups

        reference = self.options.precision_reference
        groups = precision_groups(record, reference)
        rules = self.options.record.precision_rules
        if not groups and not rules:
            return
        block: dict[str, Any] = {"reference": reference, "groups": [vars(g) for g in groups], "comparison": None}
        if rules:
            from pytest_vleval.gate.precision import compare_precisions

            comparison = compare_precisions(record, rules, reference=reference, alpha=self.options.record.significance)
            block["comparison"] = comparison.to_dict()
            if comparison.failed and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        record["precisions"] = block

    def display_path(self, path: Path | None) -> str:
        """`path` relative to where pytest was started, as the summary shows it."""
        if path is None:
            return "?"
        try:
            return os.path.relpath(path, self.config.invocation_params.dir)
        except ValueError:
            return str(path)
