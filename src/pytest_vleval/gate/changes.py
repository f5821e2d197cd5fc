"""What changed in how the models were asked between a baseline and this run: image-resolution limits and the
text sent (format instructions, a family's grounding wording). Answers that moved for these reasons did not
move because of the model, so the comparison says so next to its verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["asking_notes", "judge_change", "set_aside_judged"]


def _limits(model: Mapping[str, Any]) -> tuple[Any, Any] | None:
    pixels = (model.get("backend") or {}).get("pixels")
    return (pixels.get("min_pixels"), pixels.get("max_pixels")) if isinstance(pixels, Mapping) else None


def asking_notes(
    model: Mapping[str, Any], base: Mapping[str, Any], paired: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
) -> list[str]:
    """Changes in how `model` was asked against its baseline entry `base`: image-resolution limits, and the text
    sent to its `paired` (baseline, current) cases. Their answers moved for a reason other than the model."""
    notes = []
    now, before = _limits(model), _limits(base)
    if now is not None and before is not None and now != before:
        notes.append(
            f"model {model['label']}: image limits changed (min_pixels, max_pixels) {before} -> {now}: answers "
            "and vision tokens are not comparable"
        )
    changed = []
    for old, new in paired:
        was, sent = _prompts(old), _prompts(new)
        if was is not None and sent is not None and was != sent:
            changed.append(f"{new['suite']}::{new['case_id']}")
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        notes.append(
            f"model {model['label']}: {len(changed)} case(s) were sent another prompt than in the baseline "
            f"({shown}): a changed format instruction moves answers without the model changing"
        )
    return notes


def _prompts(case: Mapping[str, Any]) -> list[str] | None:
    """The text sent per turn, or None for records made before prompts were stored."""
    turns = case.get("turns") or []
    if not turns or any("prompt" not in t for t in turns):
        return None
    return [str(t["prompt"]) for t in turns]


def _judge_key(model: Mapping[str, Any]) -> list[tuple[Any, ...]] | None:
    judge = model.get("judge")
    if not judge:
        return None
    identities = [(i.get("fingerprint"), i.get("template"), i.get("template_sha256")) for i in judge["identities"]]
    return [*sorted(identities, key=str), ("repeat", judge.get("repeat"))]


def judge_change(model: Mapping[str, Any], base: Mapping[str, Any]) -> str | None:
    """Why the judged scores of `model` cannot be compared with its baseline entry `base` (another judge
    fingerprint, template or number of repeats), or None when both were judged alike (or one was not judged)."""
    now, before = _judge_key(model), _judge_key(base)
    if now is None or before is None or now == before:
        return None

    def who(entry: Mapping[str, Any]) -> str:
        judge = entry["judge"]
        names = ", ".join(
            f"{i['judge']} {str(i.get('fingerprint'))[:8]} {i['template']} {str(i.get('template_sha256'))[:8]}"
            for i in judge["identities"]
        )
        return f"{names or 'none'}, repeat {judge.get('repeat')}"

    return (
        f"model {model['label']}: judge changed ({who(base)} -> {who(model)}): scores not comparable; the accuracy "
        "and mean score of judged suites are not gated and their judged cases are not listed as changed"
    )


def set_aside_judged(rows: Sequence[Any], cases: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """Mark the rows a changed judge moves (accuracy and mean score, overall and of suites with judged cases)
    "not comparable", so they pass; return the judged cases' (suite, case id), whose flips are not listed."""
    judged = {(c["suite"], c["case_id"]) for c in cases if any(t.get("judge") for t in c.get("turns") or [])}
    suites = {suite for suite, _ in judged}
    for row in rows:
        base, _, where = row.metric.partition("@")
        if base in ("accuracy", "mean_score") and (not where or where in suites):
            row.breached, row.verdict, row.note = False, "not comparable", "judge changed"
    return judged
