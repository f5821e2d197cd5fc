"""The terminal summary: a view of the run record (and of what was written from it), nothing more.

Sections, in order: ``vleval summary`` (per model and case file, golden sets, the prediction pass, the answer
cache, load errors), ``vleval regression`` (the comparison with the baseline, the gate's verdict, saved records,
notices) and ``vleval model comparison`` (the table, when several models ran) with the files written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vleval.report.comparison import comparison_lines, gate_verdict

if TYPE_CHECKING:
    from pytest_vleval.records.recorder import Recorder

__all__ = ["golden_lines", "prediction_lines", "summary_lines", "write_summary"]

FAILED_MARKUP = {"red": True, "bold": True}


def write_summary(terminalreporter: Any, recorder: Recorder) -> None:
    record = recorder.record
    config = recorder.config
    if record is not None:
        rootdir = Path(config.rootpath)
        _section(
            terminalreporter, "vleval summary", summary_lines(record, lambda s: recorder.display_path(rootdir / s))
        )
    _section(terminalreporter, "vleval regression", _regression_lines(recorder))
    table: list[Any] = []
    if record is not None and len(record.get("models", [])) >= 2:
        from pytest_vleval.report.table import build_table, text_lines

        built = build_table(record, cost_per_hour=recorder.options.report.cost_per_hour)
        table = text_lines(built, width=max(60, config.get_terminal_writer().fullwidth))
    written = [
        f"vleval {what}: {recorder.display_path(path)}" for what, path in recorder.written if what != "run record saved"
    ]
    if not table and not written:
        return
    terminalreporter.section("vleval model comparison" if table else "vleval report")
    for segments in table:
        for text, markup in segments:
            terminalreporter.write(text, **markup)
        terminalreporter.write("\n")
    for line in written:
        terminalreporter.write_line(line)
    if record is not None and record.get("precisions"):
        _precision_section(terminalreporter, recorder, record)


def _precision_section(terminalreporter: Any, recorder: Recorder, record: Mapping[str, Any]) -> None:
    """The precision table of each model run at several precisions, its flipped cases, the in-run gate."""
    from pytest_vleval.report.precision import gate_lines, precision_views
    from pytest_vleval.report.table import text_lines

    report = recorder.options.report
    terminalreporter.section("vleval precisions")
    width = max(60, recorder.config.get_terminal_writer().fullwidth)
    for view in precision_views(record, cost_per_hour=report.cost_per_hour, requests_per_day=report.requests_per_day):
        for segments in text_lines(view.table, width=width):
            for text, markup in segments:
                terminalreporter.write(text, **markup)
            terminalreporter.write("\n")
        for line in view.flips:
            terminalreporter.write_line(line)
    for line in gate_lines(record):
        terminalreporter.write_line(line, **(FAILED_MARKUP if line.startswith("vleval precision gate FAILED") else {}))


def _section(terminalreporter: Any, title: str, lines: Sequence[str]) -> None:
    if not lines:
        return
    terminalreporter.section(title)
    for line in lines:
        terminalreporter.write_line(line, **(FAILED_MARKUP if line.startswith("vleval gate FAILED") else {}))


def _regression_lines(recorder: Recorder) -> list[str]:
    record = recorder.record or {}
    lines: list[str] = []
    status = (record.get("run") or {}).get("pytest_benchmark") or {}
    if recorder.options.bench.items and status.get("reason") == "xdist":
        lines.append(
            "pytest-benchmark turns itself off under xdist (-n): the latency items timed their own rounds in "
            "parallel workers, so their numbers are indicative only; run --vl-benchmark without -n to compare them"
        )
    comparison = record.get("comparison")
    if isinstance(comparison, Mapping):
        verbose = recorder.config.get_verbosity() > 0
        lines.extend(comparison_lines(comparison, max_flips=None if verbose else 20))
        lines.append("")
        lines.extend(gate_verdict(comparison)[1])
    saved = [path for what, path in recorder.written if what == "run record saved"]
    lines.extend(f"vleval run record saved: {recorder.display_path(path)}" for path in saved)
    lines.extend(f"vleval: {notice}" for notice in recorder.notices)
    return lines


def summary_lines(record: Mapping[str, Any], display: Callable[[str], str] = str) -> list[str]:
    """Per model: what it is, cases passed, and per case file; then golden sets, the prediction pass, the cache.
    `display` turns a rootdir-relative case file into the path shown."""
    lines = []
    by_model: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for case in record.get("cases", []):
        by_model[str(case["model"])].append(case)
    for model in record.get("models", []):
        lines.extend(_model_lines(model, by_model.get(str(model["label"]), []), display))
    lines.extend(golden_lines(record.get("golden", [])))
    lines.extend(prediction_lines(record))
    for model in record.get("models", []):
        error = (model.get("load") or {}).get("error")
        if error:
            # a precision variant this machine cannot run is skipped ("not run here: ..."), not a failure
            verb = "" if str(error).startswith("not run here: ") else "failed to load: "
            lines.append(f"model {model['label']} {verb}{error}")
    return lines


def _model_lines(
    model: Mapping[str, Any], cases: Sequence[Mapping[str, Any]], display: Callable[[str], str]
) -> list[str]:
    head = f"model {model['label']}"
    backend, load = model.get("backend") or {}, model.get("load") or {}
    if backend:
        head += (
            f" ({backend.get('architecture', '?')}, {backend.get('device', '?')}, "
            f"{backend.get('precision', backend.get('dtype', '?'))}, "
            f"loaded {load.get('count', 0)}x in {float(load.get('seconds') or 0):.1f} s)"
        )
    evaluation = model.get("eval") or {}
    if not cases:
        return [head]
    lines = [f"{head}: {evaluation.get('passed')}/{evaluation.get('cases')} cases passed"]
    by_suite: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for case in cases:
        by_suite[str(case["suite"])].append(case)
    shown = {suite: display(suite) for suite in by_suite}
    width = max(len(name) for name in shown.values())
    for suite, aggregate in sorted((model.get("suites") or {}).items(), key=lambda kv: shown.get(kv[0], kv[0])):
        extra = f", {aggregate['errors']} errors" if aggregate.get("errors") else ""
        # Unparsable answers score 0 and are counted apart: boxes (iou) and numbers (relaxed accuracy).
        turns = [t for c in by_suite.get(suite, []) for t in c.get("turns", [])]
        for kind, kept in (
            ("box", [t for t in turns if t["scorer"] == "iou"]),
            ("answer", [t for t in turns if t["scorer"] != "iou"]),
        ):
            failures = sum(bool(t.get("parse_failed")) for t in kept)
            if failures:
                extra += f", {kind} parse failures: {failures}/{len(kept)}"
        if aggregate.get("format_failures"):
            extra += f", format failures: {aggregate['format_failures']} (right content, wrong form)"
        if aggregate.get("judge_errors"):
            extra += f", {aggregate['judge_errors']} not scored (judge errors)"
        mean = "-" if aggregate["mean_score"] is None else f"{float(aggregate['mean_score']):.3f}"
        lines.append(
            f"  {shown.get(suite, suite):<{width}}  {aggregate['passed']:>3}/{aggregate['cases']:<3} passed"
            f"  mean score {mean}{extra}"
        )
    extras = [dialogue_line(model.get("dialogue")), judge_line(model.get("judge"))]
    return [*lines, *(line for line in extras if line)]


def judge_line(judge: Mapping[str, Any] | None) -> str | None:
    """'  judged by tiny-judge (judge-v1 3f2a9c1d, fingerprint 1a2b3c4d): 12 turns, 12 verdicts (4 from the
    verdict cache), agreement 1.00, 0 unreadable'."""
    if not judge:
        return None
    who = (
        "; ".join(
            f"{i['judge']} ({i['template']} {str(i['template_sha256'])[:8]}, fingerprint {str(i['fingerprint'])[:8]})"
            for i in judge["identities"]
        )
        or "nobody (every verdict failed)"
    )
    agreement = "" if judge.get("agreement") is None else f", agreement {float(judge['agreement']):.2f}"
    fallback = f", {judge['fallback_parses']} read by the fallback" if judge.get("fallback_parses") else ""
    choices = ""
    if judge.get("choice_fallbacks"):
        choices = f"; {judge['choice_fallbacks']} choice answers the rules could not read, {judge['choice_read']} read"
    return (
        f"  judged by {who}: {judge['turns']} turns, {judge['verdicts']} verdicts ({judge['cached']} from the "
        f"verdict cache){agreement}{fallback}, {judge['errors']} unreadable or not asked{choices}"
    )


def dialogue_line(depth: Mapping[str, Any] | None) -> str | None:
    """'  dialogue depth: 6 dialogues, 1.67 turns held on average (held 0: 1, 2: 5); all turns held: 5/6'."""
    if not depth:
        return None
    spread = ", ".join(f"{held}: {n}" for held, n in depth["distribution"].items())
    return (
        f"  dialogue depth: {depth['dialogues']} dialogues, {float(depth['turns_held_mean']):.2f} turns held on "
        f"average (turns held: dialogues {spread}); all turns held: {depth['held_all']}/{depth['dialogues']}"
    )


def golden_lines(golden: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line of scores per (set, model); why a metric did not run is told in full once, then referred to."""
    lines = []
    told: set[str] = set()
    for result in golden:
        scores = "  ".join(f"{m} {float(v):.3f}" for m, v in (result.get("corpus") or {}).items())
        lines.append(f"golden {result['set']} on {result['model']}: {scores}")
        notes = {**(result.get("skipped") or {}), **(result.get("failed") or {})}
        reasons: dict[str, list[str]] = {}
        for metric, reason in notes.items():
            reasons.setdefault(str(reason), []).append(str(metric))
        for reason, metrics in reasons.items():
            names = ", ".join(metrics)
            lines.append(f"  {names} not run: {reason}" if reason not in told else f"  {names} not run (as above)")
            told.add(reason)
        if result.get("tokenizer") == "fallback":
            lines.append("  tokenised without Java (pure-Python stand-in): scores may differ slightly from official")
        if result.get("errors"):
            lines.append(f"  {len(result['errors'])} image(s) got no caption")
    return lines


def prediction_lines(record: Mapping[str, Any]) -> list[str]:
    """The prediction pass per model, the answer cache and the batch-invariance check."""
    lines = []
    for model in record.get("models", []):
        run = model.get("prediction")
        if not run or not (run["cached"] + run["generated"]):
            continue
        done = run["cached"] + run["generated"]
        rate = f", {run['generated'] / run['seconds']:.1f} cases/s" if run["generated"] and run["seconds"] > 0 else ""
        lines.append(
            f"prediction {model['label']}: {done}/{max(run['planned'], done)} cases, {run['generated']} generated in "
            f"{run['batches']} batches ({run['seconds']:.1f} s{rate}), {run['cached']} from the answer cache"
        )
        if run.get("oom_batch") is not None:
            cap = f"; later batches used at most {run['batch_cap']}" if run.get("batch_cap") else ""
            lines.append(f"  out of memory at batch size {run['oom_batch']}: the batch was halved and retried{cap}")
        lines.extend(f"  failed: {failure}" for failure in run["failed"][:20])
        if len(run["failed"]) > 20:
            lines.append(f"  ... and {len(run['failed']) - 20} more failed cases")
    run_block = record.get("run") or {}
    lines.extend(_cache_lines(run_block.get("answer_cache")))
    invariance = run_block.get("batch_invariance")
    if invariance is not None:
        differ = invariance["differences"]
        lines.append(
            f"batch invariance: {len(differ)} of {invariance['checked']} cases generated in batches "
            "answered differently alone"
        )
        for d in differ:
            lines.append(
                f"  {d['case']}[{d['model']}] turn {d['turn']}: {d['batched']!r} in a batch of {d['batch_size']}, "
                f"{d['alone']!r} alone"
            )
    return lines


def _cache_lines(cache: Mapping[str, Any] | None) -> list[str]:
    if not cache:
        return []
    if cache.get("off"):
        return [f"answer cache: off ({cache['off']})"]
    mode = " (refreshing: every answer regenerated)" if cache.get("refreshing") else ""
    lines = [f"answer cache {cache['root']}{mode}: {cache['hits']} answers reused, {cache['writes']} stored"]
    lines.extend(f"  not used for model {label}: {basis}" for label, basis in (cache.get("not_used") or {}).items())
    if cache.get("write_error"):
        lines.append(f"  could not write: {cache['write_error']}")
    return lines
