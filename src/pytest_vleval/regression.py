"""Saved runs, the regression gate and latency items: their options, and the plugin object that records a run.

:class:`RunState` (``VlSession.run``) is registered as a plugin in ``pytest_configure``. It collects case and
benchmark results from the test reports (so under xdist the controller sees every worker's), each process's
models, memory windows and golden-set scores (workers send theirs through ``workeroutput``), and at session
finish builds one record (``records.py``), compares it with the baseline (``gate.py``), saves it
(``storage.py``) and fails the session on a breach.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vleval.session import get_session

if TYPE_CHECKING:
    from pytest_vleval.gate import Comparison, Rule
    from pytest_vleval.models import ModelSpec
    from pytest_vleval.options import VlOptions

DEFAULT_STORAGE = ".vleval/runs"
DEFAULT_BENCHMARK_CASES = 3
DEFAULT_BENCHMARK_ROUNDS = 5
DEFAULT_BENCHMARK_WARMUP = 1
PLUGIN_NAME = "vleval-regression"
WORKER_KEY = "vleval"


@dataclass(frozen=True)
class RegressionOptions:
    save: str | None  # a run name, "" for an automatic one, None when not saving to the storage
    json_path: Path | None
    storage: Path
    compare: str | None  # "latest", a number, a name or a path
    rules: tuple[Rule, ...]
    significance: float | None
    benchmark: int  # benchmark items per model; 0: none
    benchmark_rounds: int
    benchmark_warmup: int

    @property
    def wants_record(self) -> bool:
        return self.save is not None or self.json_path is not None or self.compare is not None


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vleval")
    group.addoption(
        "--vl-save",
        nargs="?",
        const="",
        default=None,
        metavar="NAME",
        help="Save this run's record in the storage folder as NNNN_NAME.json. "
        "Without NAME: NNNN_<commit>_<time>.json. Default: off.",
    )
    group.addoption(
        "--vl-autosave",
        action="store_true",
        default=False,
        help="Save this run's record with an automatic name (as --vl-save without NAME). Default: off.",
    )
    group.addoption(
        "--vl-json",
        default=None,
        metavar="PATH",
        help="Also write this run's record to PATH (any folder). Default: off.",
    )
    group.addoption(
        "--vl-storage",
        default=None,
        metavar="PATH",
        help="Folder of saved runs (one sub-folder per machine kind). "
        f"Default: ini vl_storage, else {DEFAULT_STORAGE} next to the ini file.",
    )
    group.addoption(
        "--vl-compare",
        nargs="?",
        const="latest",
        default=None,
        metavar="REF",
        help="Compare this run with a saved one: latest, a number, a name, or the path of a record JSON. "
        "Without REF: latest. Default: off.",
    )
    group.addoption(
        "--vl-compare-fail",
        default=None,
        metavar="SPEC",
        help="Fail the session when a metric regresses past its limit, e.g. "
        "accuracy:-2%%,accuracy@test_colour.yaml:-5pp,CIDEr:-0.05,latency_p50:+15%%,memory_peak:+10%%. "
        "Needs --vl-compare. Default: ini vl_compare_fail, else none (the comparison is only shown).",
    )
    group.addoption(
        "--vl-compare-significance",
        default=None,
        metavar="ALPHA",
        help="Fail on an accuracy or score drop only when a paired test (exact McNemar on pass/fail, paired "
        "bootstrap on scores) gives p < ALPHA. Default: ini vl_compare_significance, else off.",
    )
    group.addoption(
        "--vl-benchmark",
        nargs="?",
        const=str(DEFAULT_BENCHMARK_CASES),
        default=None,
        metavar="N",
        help="Add N latency benchmark items per model (pytest-benchmark, pedantic mode), on cases spread over "
        f"the case files. Without N: {DEFAULT_BENCHMARK_CASES}. Default: off.",
    )
    group.addoption(
        "--vl-benchmark-rounds",
        default=None,
        metavar="N",
        help=f"Timed rounds per benchmark item. Default: ini vl_benchmark_rounds, else {DEFAULT_BENCHMARK_ROUNDS}.",
    )
    group.addoption(
        "--vl-benchmark-warmup",
        default=None,
        metavar="N",
        help="Untimed warm-up rounds per benchmark item. "
        f"Default: ini vl_benchmark_warmup, else {DEFAULT_BENCHMARK_WARMUP}.",
    )
    parser.addini("vl_storage", f"Default for --vl-storage (relative to the ini file). Default: {DEFAULT_STORAGE}.")
    parser.addini("vl_compare_fail", "Default for --vl-compare-fail (applies when comparing).", default="")
    parser.addini("vl_compare_significance", "Default for --vl-compare-significance.", default="")
    parser.addini("vl_benchmark_rounds", "Default for --vl-benchmark-rounds.", default=str(DEFAULT_BENCHMARK_ROUNDS))
    parser.addini("vl_benchmark_warmup", "Default for --vl-benchmark-warmup.", default=str(DEFAULT_BENCHMARK_WARMUP))


_PATH_HINT = (
    " (an argument right after it was taken as its value: write {flag}=VALUE or put {flag} after the test paths)"
)


def _int(value: str, flag: str, minimum: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = minimum - 1
    if number < minimum:
        hint = _PATH_HINT.format(flag=flag) if ("/" in str(value) or "." in str(value)) else ""
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise pytest.UsageError(f"{flag}={value!r}: expected {what}{hint}")
    return number


def parse_options(config: pytest.Config) -> RegressionOptions:
    """Read and validate the saved-run, gate and benchmark options; bad values raise :class:`pytest.UsageError`."""
    from pytest_vleval.gate import SpecError, needs_benchmark, parse_fail_spec
    from pytest_vleval.storage import StorageError, check_name

    invocation = Path(config.invocation_params.dir)
    save = config.getoption("vl_save")
    if save is None and config.getoption("vl_autosave"):
        save = ""
    if save:
        try:
            check_name(save)
        except StorageError as exc:
            hint = _PATH_HINT.format(flag="--vl-save") if ("/" in save or save.endswith((".yaml", ".py"))) else ""
            raise pytest.UsageError(f"{exc}{hint}") from None

    storage_cli = config.getoption("vl_storage")
    if storage_cli:
        storage = invocation / storage_cli
    else:
        base = config.inipath.parent if config.inipath else config.rootpath
        storage = Path(base) / (str(config.getini("vl_storage") or "").strip() or DEFAULT_STORAGE)

    json_path = config.getoption("vl_json")
    compare = config.getoption("vl_compare")
    spec_cli = config.getoption("vl_compare_fail")
    if spec_cli is not None and compare is None:
        raise pytest.UsageError(
            "--vl-compare-fail needs --vl-compare (which saved run to compare with: latest, a number, a name or a path)"
        )
    spec = spec_cli if spec_cli is not None else str(config.getini("vl_compare_fail") or "").strip()
    rules: tuple[Rule, ...] = ()
    if spec and compare is not None:
        try:
            rules = parse_fail_spec(spec, "--vl-compare-fail" if spec_cli is not None else "ini vl_compare_fail")
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None

    raw_alpha = config.getoption("vl_compare_significance")
    raw_alpha = raw_alpha if raw_alpha is not None else str(config.getini("vl_compare_significance") or "").strip()
    significance = None
    if raw_alpha:
        try:
            significance = float(raw_alpha)
        except ValueError:
            significance = -1.0
        if not 0 < significance < 1:
            raise pytest.UsageError(
                f"--vl-compare-significance={raw_alpha!r}: expected a level between 0 and 1, e.g. 0.05"
            )

    raw_bench = config.getoption("vl_benchmark")
    benchmark = 0 if raw_bench is None else _int(raw_bench, "--vl-benchmark", 1)
    rounds_cli = config.getoption("vl_benchmark_rounds")
    rounds = _int(
        rounds_cli if rounds_cli is not None else config.getini("vl_benchmark_rounds"), "--vl-benchmark-rounds", 1
    )
    warmup_cli = config.getoption("vl_benchmark_warmup")
    warmup = _int(
        warmup_cli if warmup_cli is not None else config.getini("vl_benchmark_warmup"), "--vl-benchmark-warmup", 0
    )

    if benchmark and not config.pluginmanager.has_plugin("benchmark"):
        raise pytest.UsageError(
            "--vl-benchmark needs pytest-benchmark (installed, and not disabled with -p no:benchmark)"
        )
    if not benchmark and (missing := needs_benchmark(rules)):
        raise pytest.UsageError(
            f"--vl-compare-fail: {', '.join(missing)} is measured by the latency benchmarks: add --vl-benchmark"
        )
    return RegressionOptions(
        save=save,
        json_path=invocation / json_path if json_path else None,
        storage=storage,
        compare=compare,
        rules=rules,
        significance=significance,
        benchmark=benchmark,
        benchmark_rounds=rounds,
        benchmark_warmup=warmup,
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def _max_merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    from pytest_vleval.records import _max_merge as merge

    return merge([old or {}, new])


class RunState:
    """This run's saved-run, gate and latency state (``VlSession.run``), and the hooks that fill it."""

    def __init__(self, config: pytest.Config, options: RegressionOptions) -> None:
        from pytest_vleval.memory import PeakTracker

        self.config = config
        self.options = options
        self.memory = PeakTracker()
        self.model_memory: dict[str, dict[str, Any]] = {}
        self.current_model: str | None = None
        self.cases: list[dict[str, Any]] = []
        self.benchmarks: list[dict[str, Any]] = []
        self.processes: list[dict[str, Any]] = []
        self.started = _now()
        self._clock = time.perf_counter()
        self.baseline_path: Path | None = None
        self.baseline: dict[str, Any] | None = None
        self.comparison: Comparison | None = None
        self.record: dict[str, Any] | None = None
        self.saved: list[Path] = []
        self.notices: list[str] = []
        # Set by plugins that read the record without saving it (the HTML report, the model comparison table).
        self.record_wanted = False

    def load_baseline(self) -> None:
        """Find and read the run to compare with (at configure time, so a bad reference fails before the run)."""
        from pytest_vleval.records import RecordError, check_record
        from pytest_vleval.storage import RunStorage, StorageError, read_json

        ref = self.options.compare
        if ref is None:
            return
        invocation = Path(self.config.invocation_params.dir)
        candidates = [invocation / ref, Path(self.config.rootpath) / ref]
        try:
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                if ref.endswith(".json") or "/" in ref or os.sep in ref:
                    raise StorageError(f"{ref}: no such file")
                path = RunStorage(self.options.storage).find(ref)
            self.baseline = check_record(read_json(path), path)
        except (StorageError, RecordError) as exc:
            raise pytest.UsageError(f"--vl-compare={ref}: {exc}") from None
        self.baseline_path = path

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
            slot["load"] = _max_merge(slot.get("load"), window)

    def _close_model(self) -> None:
        label, self.current_model = self.current_model, None
        if label is not None and self.memory.is_open(f"model:{label}"):
            window = self.memory.close(f"model:{label}")
            slot = self.model_memory.setdefault(label, {})
            slot["peak"] = _max_merge(slot.get("peak"), window)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == "vleval" and isinstance(value, dict):
                self.cases.append({"report": _report_info(report), "result": value})
            elif name == "vleval-benchmark" and isinstance(value, dict):
                self.benchmarks.append(value)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        if WORKER_KEY in output:
            self.processes.append(json.loads(output[WORKER_KEY]))

    def snapshot(self) -> dict[str, Any]:
        """This process's part of the record: models it loaded, their memory windows, golden-set scores."""
        from pytest_vleval.memory import gpu_info
        from pytest_vleval.records import to_jsonable

        self._close_model()
        vl = get_session(self.config)
        models: dict[str, dict[str, Any]] = {}
        for label, info in vl.pool.infos.items():
            models[label] = {"info": info, "loads": vl.pool.load_counts.get(label, 0)}
        for label, error in vl.pool.load_errors.items():
            models.setdefault(label, {"info": {}, "loads": 0})["load_error"] = error
        for label, memory in self.model_memory.items():
            models.setdefault(label, {"info": {}, "loads": 0})["memory"] = memory
        return to_jsonable(
            {
                "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                "models": models,
                "golden": list(getattr(vl, "golden_results", []) or []),
                "gpu": gpu_info(),
            }
        )

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if _is_worker(self.config):
            if self.options.wants_record or self.record_wanted:
                self.config.workeroutput[WORKER_KEY] = json.dumps(self.snapshot())  # type: ignore[attr-defined]
            return
        if not (self.options.wants_record or self.record_wanted) or self.config.option.collectonly:
            return
        self.processes.append(self.snapshot())
        try:
            self._finish(session)
        except Exception as exc:  # a broken record must not hide the test results
            self.notices.append(f"could not build or save the run record: {type(exc).__name__}: {exc}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def _finish(self, session: pytest.Session) -> None:
        from pytest_vleval.gate import compare_records
        from pytest_vleval.records import build_record, case_entry
        from pytest_vleval.storage import RunStorage, autosave_name, write_json

        config = self.config
        vl = get_session(config)
        rootdir = Path(config.rootpath)
        cases = [
            case_entry(c["result"], rootdir=rootdir, **{k: c["report"][k] for k in ("nodeid", "line", "outcome")})
            for c in self.cases
        ]
        record = build_record(
            run=self._run_info(session),
            models=vl.models,
            cases=cases,
            benchmarks=self.benchmarks,
            processes=self.processes,
            rootdir=rootdir,
            invocation_dir=Path(config.invocation_params.dir),
        )
        config.hook.pytest_vleval_update_record(config=config, record=record)
        if self.baseline is not None:
            self.comparison = compare_records(
                self.baseline,
                record,
                self.options.rules,
                alpha=self.options.significance,
                baseline_name=_display_path(self.baseline_path, config),
            )
            record["comparison"] = self.comparison.to_dict()
            if (
                self.options.rules
                and self.comparison.failed
                and session.exitstatus
                in (
                    pytest.ExitCode.OK,
                    pytest.ExitCode.NO_TESTS_COLLECTED,
                )
            ):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        record["run"]["exitstatus"] = int(session.exitstatus)
        self.record = record
        if not record["models"]:
            # As pytest-benchmark does: an empty record would only become a useless "latest" baseline.
            self.notices.append("not saving a run record: no model ran")
            return
        if self.options.json_path is not None:
            write_json(self.options.json_path, record)
            self.saved.append(self.options.json_path)
        if self.options.save is not None:
            name = self.options.save or autosave_name(record["run"].get("commit"), self.started)
            record["run"]["name"] = name
            self.saved.append(RunStorage(self.options.storage).save(record, name))

    def _run_info(self, session: pytest.Session) -> dict[str, Any]:
        from pytest_vleval.records import commit_info, library_versions, machine_info, relative
        from pytest_vleval.storage import machine_id

        config = self.config
        vl = get_session(config)
        options = vl.options
        finished = _now()
        return {
            "name": self.options.save or None,
            "started": _iso(self.started),
            "finished": _iso(finished),
            "duration_s": round(time.perf_counter() - self._clock, 3),
            "args": [str(a) for a in config.invocation_params.args],
            "rootdir": str(config.rootpath),
            "invocation_dir": relative(config.invocation_params.dir, config.rootpath),
            "exitstatus": int(session.exitstatus),
            "machine_id": machine_id(),
            "machine": machine_info(),
            "commit": commit_info(Path(config.rootpath)),
            "versions": library_versions(),
            "options": {
                "models": list(options.models),
                "device": options.device,
                "dtype": options.dtype,
                "max_new_tokens": options.max_new_tokens,
                "batch_size": options.batch_size,
                "benchmark": self.options.benchmark,
                "benchmark_rounds": self.options.benchmark_rounds,
                "benchmark_warmup": self.options.benchmark_warmup,
            },
            "xdist": {"workers": sum(1 for p in self.processes if p.get("worker"))} if _is_controller(config) else None,
            "pytest_benchmark": benchmark_status(config),
        }

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pytest_vleval.gate import summary_lines

        lines: list[str] = []
        bench_status = benchmark_status(self.config)
        if self.options.benchmark and bench_status["reason"] == "xdist":
            lines.append(
                "pytest-benchmark turns itself off under xdist (-n): the latency items timed their own rounds in "
                "parallel workers, so their numbers are indicative only; run --vl-benchmark without -n to compare them"
            )
        if self.comparison is not None:
            verbose = self.config.get_verbosity() > 0
            lines.extend(summary_lines(self.comparison, max_flips=None if verbose else 20))
            lines.append("")
            if not self.options.rules:
                lines.append("vleval gate: no limits set (--vl-compare-fail): comparison only")
            elif self.comparison.failed:
                lines.append("vleval gate FAILED:")
                lines.extend(f"  {failure}" for failure in self.comparison.failures)
            else:
                limits = ",".join(rule.text for rule in self.options.rules)
                lines.append(f"vleval gate passed ({limits})")
        lines.extend(f"vleval run record saved: {_display_path(p, self.config)}" for p in self.saved)
        lines.extend(f"vleval: {error}" for error in self.notices)
        if not lines:
            return
        terminalreporter.section("vleval regression")
        for line in lines:
            markup = {"red": True, "bold": True} if line.startswith("vleval gate FAILED") else {}
            terminalreporter.write_line(line, **markup)


def _report_info(report: pytest.TestReport) -> dict[str, Any]:
    if hasattr(report, "wasxfail"):
        outcome = "xpassed" if report.passed else "xfailed"
    else:
        outcome = report.outcome
    line = report.location[1] if report.location else None
    return {"nodeid": report.nodeid, "line": None if line is None else int(line) + 1, "outcome": outcome}


def _display_path(path: Path | None, config: pytest.Config) -> str:
    if path is None:
        return "?"
    try:
        return os.path.relpath(path, config.invocation_params.dir)
    except ValueError:
        return str(path)


def benchmark_status(config: pytest.Config) -> dict[str, Any]:
    """Whether pytest-benchmark is loaded and timing, and if not, why."""
    if not config.pluginmanager.has_plugin("benchmark"):
        return {"active": False, "enabled": False, "reason": "not loaded"}
    session = getattr(config, "_benchmarksession", None)
    xdist = bool(config.getoption("dist", "no") != "no" or os.environ.get("PYTEST_XDIST_WORKER") or _is_worker(config))
    if xdist and not config.getoption("benchmark_skip", False):
        return {"active": True, "enabled": False, "reason": "xdist"}
    if session is not None and getattr(session, "disabled", False):
        return {"active": True, "enabled": False, "reason": "--benchmark-disable"}
    return {"active": True, "enabled": True, "reason": None}


def configure(config: pytest.Config) -> None:
    """Parse the options, find the baseline and register :class:`RunState` (and the latency plugins)."""
    options = parse_options(config)
    state = RunState(config, options)
    if not _is_worker(config) and not config.getoption("help", False):
        state.load_baseline()
    get_session(config).run = state
    config.pluginmanager.register(state, PLUGIN_NAME)
    config.addinivalue_line("markers", "vleval_benchmark: a latency benchmark item of a case (--vl-benchmark)")
    if options.benchmark:
        from pytest_vleval.latency import LatencyItems

        config.pluginmanager.register(LatencyItems(options.benchmark), "vleval-latency")
    if config.pluginmanager.has_plugin("benchmark"):
        from pytest_vleval.latency import BenchmarkHooks

        config.pluginmanager.register(BenchmarkHooks(config), "vleval-benchmark-hooks")
