"""The regression gate: compare this run's record with a baseline record, metric by metric and case by case
(the limits are parsed in ``rules.py``; ``significance.py`` has the paired tests). The result,
:class:`Comparison`, goes into the record as ``record["comparison"]``: the views read it from there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_vleval.gate.changes import asking_notes, judge_change, set_aside_judged
from pytest_vleval.gate.rules import BENCHMARK_METRICS, Rule
from pytest_vleval.gate.significance import mcnemar_exact, paired_bootstrap
from pytest_vleval.gate.units import HIGHER, METRICS, change_text, format_value
from pytest_vleval.records.schema import CAPTION_METRICS

__all__ = ["Comparison", "Flip", "ModelComparison", "Row", "compare_records", "match_models"]

BOOTSTRAP_CAPTION_METRICS = ("CIDEr", "ROUGE_L", "SPICE")  # corpus score = mean of the per-image scores
DEFAULT_ROWS = (
    "accuracy",
    "mean_score",
    "latency_p50",
    "latency_p95",
    "ttft_p50",
    "tokens_per_s",
    "case_seconds_p50",
    "memory_peak",
    "load_seconds",
)
EPSILON = 1e-12


@dataclass
class Row:
    metric: str
    before: float | None
    after: float | None
    rule: str | None = None
    breached: bool = False
    verdict: str = ""  # "ok", "FAIL", "missing", "not significant", "" (no limit)
    p_value: float | None = None
    test: str | None = None
    note: str = ""

    @property
    def kind(self) -> str:
        return METRICS[self.metric.split("@", 1)[0]][1]


@dataclass
class Flip:
    suite: str
    case_id: str
    expected: str
    before: str
    after: str
    before_score: float
    after_score: float
    before_error: str | None = None
    after_error: str | None = None


@dataclass
class ModelComparison:
    label: str
    baseline_label: str
    rows: list[Row] = field(default_factory=list)
    worse: list[Flip] = field(default_factory=list)  # passed in the baseline, fail now
    better: list[Flip] = field(default_factory=list)  # failed in the baseline, pass now
    new_cases: int = 0
    dropped_cases: int = 0


@dataclass
class Comparison:
    baseline: str
    rules: tuple[Rule, ...]
    alpha: float | None
    models: list[ModelComparison] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    baseline_run: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """One line per breach (or per limit that could not be checked)."""
        out = []
        for model in self.models:
            for row in model.rows:
                if row.breached:
                    out.append(f"{model.label}: {_breach_text(row)}")
        if self.rules and not self.models:
            out.append("no model of this run matches a model of the baseline (models match by label)")
        return out

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "baseline_run": self.baseline_run,
            "limits": [rule.text for rule in self.rules],
            "significance": self.alpha,
            "failed": self.failed,
            "failures": self.failures,
            "unmatched": self.unmatched,
            "notes": self.notes,
            "models": [asdict(model) for model in self.models],
        }


def match_models(
    baseline: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[Mapping[str, Any], Mapping[str, Any]]], list[str]]:
    """(current, baseline) pairs by label; two single-model runs pair whatever their labels."""
    if len(baseline) == 1 and len(current) == 1:
        return [(current[0], baseline[0])], []
    by_label = {m["label"]: m for m in baseline}
    pairs = [(m, by_label[m["label"]]) for m in current if m["label"] in by_label]
    unmatched = [m["label"] for m in current if m["label"] not in by_label]
    return pairs, unmatched


def _resolve_where(rule: Rule, before: Mapping[str, float], after: Mapping[str, float]) -> list[str] | str:
    """The metric names a rule covers in these two runs, or the reason it covers none."""
    if rule.where is None:
        return [rule.metric]
    prefix = rule.metric + "@"
    known = sorted({k[len(prefix) :] for k in (*before, *after) if k.startswith(prefix)})
    if rule.where == "*":
        return [prefix + k for k in known] or f"no {rule.metric}@... values in either run"
    if rule.metric in CAPTION_METRICS:
        hits = [k for k in known if k == rule.where]
    else:
        hits = [k for k in known if k == rule.where or k.endswith("/" + rule.where)]
        if not hits:
            hits = [k for k in known if k.rsplit("/", 1)[-1] == rule.where]
    if len(hits) == 1:
        return [prefix + hits[0]]
    what = "golden set" if rule.metric in CAPTION_METRICS else "case file"
    if not hits:
        return f"no {what} {rule.where!r} in either run (have: {', '.join(known) or 'none'})"
    return f"{rule.where!r} matches several {what}s ({', '.join(hits)}); write more of the path"


def _change(before: float, after: float, relative: bool) -> float:
    if not relative:
        return after - before
    if before == 0:
        return 0.0 if after == 0 else float("inf") if after > 0 else float("-inf")
    return (after - before) / abs(before)


def _breaches(rule: Rule, before: float, after: float) -> bool:
    change = _change(before, after, rule.relative)
    bad = -change if rule.direction == HIGHER else change
    return bad > rule.limit + EPSILON


def _paired_cases(
    baseline: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], suite: str | None
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    before = {(c["suite"], c["case_id"]): c for c in baseline if suite is None or c["suite"] == suite}
    return [
        (before[(c["suite"], c["case_id"])], c)
        for c in current
        if (suite is None or c["suite"] == suite) and (c["suite"], c["case_id"]) in before
    ]


def _paired_images(
    baseline: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], metric: str, golden_set: str | None
) -> tuple[list[float], list[float]]:
    def per_image(entries: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
        out = {}
        for entry in entries:
            if golden_set is not None and entry["set"] != golden_set:
                continue
            for key, scores in (entry.get("per_image") or {}).items():
                if metric in scores:
                    out[(entry["set"], key)] = float(scores[metric])
        return out

    a, b = per_image(baseline), per_image(current)
    keys = sorted(set(a) & set(b))
    return [a[k] for k in keys], [b[k] for k in keys]


def _answer(case: Mapping[str, Any]) -> str:
    turns = case.get("turns") or []
    if case.get("error") and not turns:
        return f"(error: {case['error']})"
    return " / ".join(repr(t["answer"]) for t in turns) or "(no answer)"


def _flip(before: Mapping[str, Any], after: Mapping[str, Any]) -> Flip:
    turns = after.get("turns") or before.get("turns") or []
    return Flip(
        suite=after["suite"],
        case_id=after["case_id"],
        expected=" / ".join(str(t["expected"]) for t in turns),
        before=_answer(before),
        after=_answer(after),
        before_score=float(before["score"]),
        after_score=float(after["score"]),
        before_error=before.get("error"),
        after_error=after.get("error"),
    )


def _model_cases(record: Mapping[str, Any], label: str) -> list[Mapping[str, Any]]:
    return [c for c in record.get("cases", []) if c["model"] == label]


def _model_golden(record: Mapping[str, Any], label: str) -> list[Mapping[str, Any]]:
    return [g for g in record.get("golden", []) if g["model"] == label]


def _missing_reason(metric: str, side: str) -> str:
    base = metric.split("@", 1)[0]
    if base in BENCHMARK_METRICS:
        return f"not measured in the {side} (run it with --vl-benchmark)"
    if base in CAPTION_METRICS:
        return f"no golden caption-set score in the {side}"
    if base.startswith("memory"):
        return f"not measured in the {side} (no model was loaded, or no GPU for a cuda metric)"
    if base in ("accuracy", "mean_score"):
        return f"the {side} ran none of these cases (another selection, e.g. -k, or an interrupted run)"
    return f"not in the {side}"


def compare_records(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    rules: Sequence[Rule] = (),
    *,
    alpha: float | None = None,
    baseline_name: str = "baseline",
) -> Comparison:
    """Compare two run records (see docs/records.md) under ``rules``."""
    comparison = Comparison(
        baseline=baseline_name,
        rules=tuple(rules),
        alpha=alpha,
        baseline_run={k: baseline.get("run", {}).get(k) for k in ("started", "machine_id", "commit", "name")},
    )
    pairs, comparison.unmatched = match_models(baseline.get("models", []), current.get("models", []))
    asked_otherwise: list[str] = []
    for model, base in pairs:
        result, notes = _compare_model(baseline, current, model, base, rules, alpha)
        comparison.models.append(result)
        asked_otherwise.extend(notes)
    comparison.notes.extend(_notes(baseline, current, pairs))
    comparison.notes.extend(asked_otherwise)
    return comparison


def _notes(
    baseline: Mapping[str, Any], current: Mapping[str, Any], pairs: Sequence[tuple[Mapping[str, Any], Any]]
) -> list[str]:
    notes = []
    before_machine = baseline.get("run", {}).get("machine_id")
    after_machine = current.get("run", {}).get("machine_id")
    # A model that never loaded (interrupted, failed) has no device: unknown is not "another device".
    devices = {(m.get("backend", {}).get("device"), b.get("backend", {}).get("device")) for m, b in pairs}
    if before_machine != after_machine or any(a and b and a != b for a, b in devices):
        notes.append("the baseline ran on another machine or device: latency and memory changes are indicative only")
    if current.get("run", {}).get("xdist") and any(m.get("benchmark") for m, _ in pairs):
        notes.append("latency was measured in parallel xdist workers: run --vl-benchmark without -n to gate it")
    return notes


def _compare_model(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    model: Mapping[str, Any],
    base: Mapping[str, Any],
    rules: Sequence[Rule],
    alpha: float | None,
) -> tuple[ModelComparison, list[str]]:
    """The model's rows and flips, and notes on how it was asked otherwise than in the baseline."""
    result = ModelComparison(label=model["label"], baseline_label=base["label"])
    before, after = base.get("metrics", {}), model.get("metrics", {})
    cases_before, cases_after = _model_cases(baseline, base["label"]), _model_cases(current, model["label"])
    golden_before, golden_after = _model_golden(baseline, base["label"]), _model_golden(current, model["label"])

    rows: dict[str, Row] = {}
    for name in _default_rows(before, after):
        rows[name] = Row(metric=name, before=before.get(name), after=after.get(name))
    for rule in rules:
        names = _resolve_where(rule, before, after)
        if isinstance(names, str):
            rows[rule.name] = Row(
                metric=rule.name, before=None, after=None, rule=rule.text, breached=True, verdict="missing", note=names
            )
            continue
        for name in names:
            row = rows.setdefault(name, Row(metric=name, before=before.get(name), after=after.get(name)))
            _apply_rule(row, rule)
    for row in rows.values():
        _significance(row, cases_before, cases_after, golden_before, golden_after, alpha)
        if row.rule is not None and row.verdict == "FAIL" and alpha is not None and row.p_value is not None:
            if row.p_value >= alpha:
                row.breached = False
                row.verdict = "not significant"
    result.rows = list(rows.values())
    judge_note = judge_change(model, base)
    judged = set_aside_judged(result.rows, [*cases_before, *cases_after]) if judge_note else set()

    paired = _paired_cases(cases_before, cases_after, None)
    for old, new in paired:
        if (new["suite"], new["case_id"]) in judged:
            continue
        if old["passed"] and not new["passed"]:
            result.worse.append(_flip(old, new))
        elif new["passed"] and not old["passed"]:
            result.better.append(_flip(old, new))
    result.new_cases = len(cases_after) - len(paired)
    result.dropped_cases = len(cases_before) - len(paired)
    return result, [*([judge_note] if judge_note else []), *asking_notes(model, base, paired)]


def _default_rows(before: Mapping[str, float], after: Mapping[str, float]) -> list[str]:
    names = [n for n in DEFAULT_ROWS if n in before or n in after]
    suites = sorted({k for k in (*before, *after) if k.startswith("accuracy@")})
    captions = sorted(
        {k for k in (*before, *after) if "@" in k and k.split("@", 1)[0] in ("CIDEr", "Bleu_4", "METEOR", "SPICE")}
    )
    # Overall accuracy and latency first, then per case file, then caption sets.
    return names[:2] + suites + captions + names[2:]


def _apply_rule(row: Row, rule: Rule) -> None:
    if row.rule is not None and row.breached:
        return  # an earlier limit on this metric already failed; it is the one to report
    row.rule = rule.text
    if row.before is None or row.after is None:
        side = "baseline" if row.before is None else "current run"
        row.breached, row.verdict, row.note = True, "missing", _missing_reason(row.metric, side)
        return
    row.breached = _breaches(rule, row.before, row.after)
    row.verdict = "FAIL" if row.breached else "ok"


def _significance(
    row: Row,
    cases_before: Sequence[Mapping[str, Any]],
    cases_after: Sequence[Mapping[str, Any]],
    golden_before: Sequence[Mapping[str, Any]],
    golden_after: Sequence[Mapping[str, Any]],
    alpha: float | None,
) -> None:
    if row.before is None or row.after is None:
        return
    base, _, where = row.metric.partition("@")
    if base == "accuracy":
        paired = _paired_cases(cases_before, cases_after, where or None)
        worse = sum(1 for old, new in paired if old["passed"] and not new["passed"])
        better = sum(1 for old, new in paired if new["passed"] and not old["passed"])
        if paired:
            row.p_value = mcnemar_exact(worse, better)
            row.test = f"McNemar, {worse} worse / {better} better of {len(paired)} paired"
    elif alpha is not None and base == "mean_score":
        paired = _paired_cases(cases_before, cases_after, where or None)
        if paired:
            row.p_value = paired_bootstrap(
                [float(o["score"]) for o, _ in paired], [float(n["score"]) for _, n in paired]
            )
            row.test = f"paired bootstrap over {len(paired)} cases"
    elif alpha is not None and base in BOOTSTRAP_CAPTION_METRICS:
        old, new = _paired_images(golden_before, golden_after, base, where or None)
        if old:
            row.p_value = paired_bootstrap(old, new)
            row.test = f"paired bootstrap over {len(old)} images"


def _breach_text(row: Row) -> str:
    if row.verdict == "missing":
        return f"{row.metric} cannot be checked against {row.rule}: {row.note}"
    text = (
        f"{row.metric} {format_value(row.kind, row.before)} -> {format_value(row.kind, row.after)} "
        f"({change_text(row.kind, row.before, row.after, ', ', '')}) breaches {row.rule}"
    )
    if row.p_value is not None:
        text += f" (p={row.p_value:.3g}, {row.test})"
    return text
