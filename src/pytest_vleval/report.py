"""Terminal summary of a run: per model, per case file, pass counts and mean scores."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from pytest_vleval.session import VlSession


def take_worker_report(vl: VlSession, report: Any) -> None:
    """On an xdist controller: keep the case results and golden scores a worker's test report carries.

    Reports that come from workers have a `node` (pytest-xdist sets it); local ones are already in `vl`.
    """
    if getattr(report, "node", None) is None or report.when != "call":
        return
    from pytest_vleval.outcome import CaseResult

    for name, value in getattr(report, "user_properties", ()):
        if name == "vleval" and isinstance(value, dict):
            vl.results.append(CaseResult.from_dict(value))
        elif name == "vleval-golden" and isinstance(value, dict):
            if not any((g["set"], g["model"]) == (value["set"], value["model"]) for g in vl.golden_results):
                vl.golden_results.append(value)


def summary_lines(vl: VlSession) -> list[str]:
    if not vl.results and not vl.pool.load_counts and not vl.golden_results:
        return []
    lines = []
    by_model: dict[str, list] = defaultdict(list)
    for result in vl.results:
        by_model[result.model].append(result)
    for spec in vl.models:
        info = vl.pool.infos.get(spec.label)
        results = by_model.get(spec.label, [])
        if info is None and not results:
            continue
        head = f"model {spec.label}"
        if info:
            head += (
                f" ({info.get('architecture', '?')}, {info.get('device', '?')}, "
                f"{info.get('precision', info.get('dtype', '?'))}, "
                f"loaded {vl.pool.load_counts.get(spec.label, 0)}x in {float(str(info.get('load_seconds', 0))):.1f} s)"
            )
        passed = sum(r.passed for r in results)
        lines.append(f"{head}: {passed}/{len(results)} cases passed" if results else head)
        by_file: dict[str, list] = defaultdict(list)
        for result in results:
            by_file[result.file].append(result)
        width = max((len(os.path.relpath(f)) for f in by_file), default=0)
        for file, rs in sorted(by_file.items()):
            mean = sum(r.score for r in rs) / len(rs)
            errors = sum(r.error is not None for r in rs)
            extra = f", {errors} errors" if errors else ""
            # Unparsable answers score 0 and are counted apart: boxes (iou) and numbers (relaxed accuracy).
            for kind, turns in (
                ("box", [t for r in rs for t in r.turns if t.scorer == "iou"]),
                ("answer", [t for r in rs for t in r.turns if t.scorer != "iou"]),
            ):
                failures = sum(t.parse_failed for t in turns)
                if failures:
                    extra += f", {kind} parse failures: {failures}/{len(turns)}"
            lines.append(
                f"  {os.path.relpath(file):<{width}}  {sum(r.passed for r in rs):>3}/{len(rs):<3} passed"
                f"  mean score {mean:.3f}{extra}"
            )
    from pytest_vleval.captioning import summary_lines as golden_lines

    lines.extend(golden_lines(vl))
    lines.extend(vl.predictor.summary_lines())
    for label, error in vl.pool.load_errors.items():
        lines.append(f"model {label} failed to load: {error}")
    return lines
