"""Golden caption sets as tests: one item per (set, model, gated metric), scored once per (set, model).

The captions are generated through the same batched predictor as the cases, then scored corpus-level with
the official COCO metrics (`metrics.py`), sharing one METEOR process across every set of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_vleval.cases import Case, Turn
from pytest_vleval.golden import GoldenSet, GoldenSetError, load_golden_set
from pytest_vleval.models import ModelSpec
from pytest_vleval.session import VlSession, get_session

SCORES_ITEM = "scores"  # the item name of a set with no thresholds: it records the scores


def golden_cases(golden: GoldenSet) -> list[Case]:
    """The set's images as cases for the predictor (their 'turn' is the caption prompt)."""
    return [
        Case(
            id=f"golden-{image.key}",
            path=golden.path,
            line=1,
            images=(image.path,),
            turns=(
                Turn(
                    question=golden.prompt,
                    scorer="contains",
                    reference=image.references,
                    reference_key="expected",
                    threshold=0.0,
                ),
            ),
            max_new_tokens=golden.max_new_tokens,
        )
        for image in golden.images
    ]


@dataclass
class GoldenResult:
    set_name: str
    manifest: str
    model: str
    thresholds: dict[str, float]
    captions: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # image key -> why no caption
    corpus: dict[str, float] = field(default_factory=dict)
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    tokenizer: str = "ptb"
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "set": self.set_name,
            "manifest": self.manifest,
            "model": self.model,
            "thresholds": self.thresholds,
            "corpus": self.corpus,
            "per_image": self.per_image,
            "skipped": self.skipped,
            "failed": self.failed,
            "tokenizer": self.tokenizer,
            "captions": self.captions,
            "errors": self.errors,
            "seconds": self.seconds,
        }


def _evaluator(vl: VlSession) -> Any:
    if vl.caption_evaluator is None:
        from pytest_vleval.metrics import CaptionEvaluator

        vl.caption_evaluator = CaptionEvaluator()
    return vl.caption_evaluator


def score_set(vl: VlSession, golden: GoldenSet, cases: list[Case], spec: ModelSpec) -> GoldenResult:
    """Caption every image of the set with the model and score the corpus, once per (set, model)."""
    key = (str(golden.path), spec.label)
    if key in vl.golden_scored:
        return vl.golden_scored[key]
    result = GoldenResult(
        set_name=golden.name,
        manifest=os.path.relpath(golden.path),
        model=spec.label,
        thresholds=dict(golden.thresholds),
    )
    for case, image in zip(cases, golden.images, strict=True):
        prediction = vl.predictor.predict(spec, case)
        if prediction.error is not None:
            result.errors[image.key] = prediction.error
        result.captions[image.key] = prediction.answers[0] if prediction.answers else ""
    scores = _evaluator(vl).evaluate(golden.references, result.captions)
    result.corpus = dict(scores.corpus)
    result.per_image = {str(k): dict(v) for k, v in scores.per_image.items()}
    result.skipped = dict(scores.skipped)
    result.failed = dict(scores.failed)
    result.tokenizer = scores.tokenizer
    result.seconds = dict(scores.timings)
    vl.golden_scored[key] = result
    vl.golden_results.append(result.to_dict())
    return result


def _worst_images(golden: GoldenSet, result: GoldenResult, metric: str, n: int = 3) -> list[str]:
    scored = [(per.get(metric, 0.0), key) for key, per in result.per_image.items() if metric in per]
    lines = []
    for value, key in sorted(scored)[:n]:
        image = golden.image(key)
        refs = image.references
        more = f" (+{len(refs) - 1} more)" if len(refs) > 1 else ""
        lines.append(
            f"    image {key} ({os.path.relpath(image.path)}): {metric} {value:.3f}: "
            f"{result.captions.get(key, '')!r} vs {refs[0]!r}{more}"
        )
    return lines


def metric_failure(golden: GoldenSet, result: GoldenResult, metric: str) -> str | None:
    """The failure message of a gated metric, or None when it passes."""
    threshold = golden.thresholds[metric]
    value = result.corpus[metric]
    errors = ""
    if result.errors:
        errors = f"\n  {len(result.errors)} image(s) got no caption, scored as empty: " + "; ".join(
            f"{k}: {v}" for k, v in list(result.errors.items())[:3]
        )
    if value >= threshold and not result.errors:
        return None
    verdict = "<" if value < threshold else ">="
    lines = [
        f"golden set {golden.name!r} on model {result.model!r}: {metric} {value:.4f} {verdict} threshold "
        f"{threshold:g} (corpus score over {len(golden.images)} images)",
        f"  manifest: {os.path.relpath(golden.path)}",
        f"  prompt:   {golden.prompt}",
        f"  lowest {metric} per image:",
        *_worst_images(golden, result, metric),
    ]
    return "\n".join(lines) + errors


def _test_function() -> Any:
    def vleval_golden(request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        item = request.node
        assert isinstance(item, GoldenItem)
        item.run_metric()

    vleval_golden.pytestmark = [pytest.mark.vleval, pytest.mark.vleval_golden]  # type: ignore[attr-defined]
    return vleval_golden


class GoldenItem(pytest.Function):
    """One gated metric of a golden caption set (or the set's recorded scores), for one model."""

    def __init__(
        self, *, golden: GoldenSet, cases: list[Case], spec: ModelSpec, metric: str | None, **kwargs: Any
    ) -> None:
        self.golden = golden
        self.cases = cases  # shared by the set's items: the predictor plans and answers these objects
        self.spec = spec
        self.metric = metric
        super().__init__(**kwargs)

    def run_metric(self) -> None:
        __tracebackhide__ = True
        result = score_set(get_session(self.config), self.golden, self.cases, self.spec)
        self.user_properties.append(("vleval-golden", summary_of(result)))  # for an xdist controller's summary
        if self.metric is None:
            if result.errors and len(result.errors) == len(self.golden.images):
                pytest.fail(f"no caption could be generated: {next(iter(result.errors.values()))}", pytrace=False)
            return
        if self.metric in result.skipped:
            # Report the skip at the manifest, not inside pytest's call machinery.
            raise pytest.skip.Exception(
                f"{self.metric} skipped: {result.skipped[self.metric]}", _use_item_location=True
            )
        if self.metric in result.failed:
            pytest.fail(f"{self.metric} failed to run: {result.failed[self.metric]}", pytrace=False)
        message = metric_failure(self.golden, result, self.metric)
        if message is not None:
            pytest.fail(message, pytrace=False)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, 0, f"{self.golden.name}::{self.metric or SCORES_ITEM}[{self.spec.label}]"


class GoldenFileNode(pytest.File):
    """A golden caption-set manifest."""

    def collect(self) -> Iterator[pytest.Item]:
        vl = get_session(self.config)
        try:
            golden = load_golden_set(self.path)
        except GoldenSetError as exc:
            raise self.CollectError(str(exc)) from None
        metrics: list[str | None] = list(golden.thresholds) or [None]
        cases = golden_cases(golden)
        for spec in vl.models:
            for metric in metrics:
                yield GoldenItem.from_parent(
                    self,
                    name=f"{metric or SCORES_ITEM}[{spec.label}]",
                    callobj=_test_function(),
                    golden=golden,
                    cases=cases,
                    spec=spec,
                    metric=metric,
                )


def summary_of(result: GoldenResult) -> dict[str, Any]:
    """What the terminal summary shows of a set's scores, in plain types (it travels from xdist workers)."""
    return {
        "set": result.set_name,
        "model": result.model,
        "corpus": {str(k): float(v) for k, v in result.corpus.items()},
        "skipped": {str(k): str(v) for k, v in result.skipped.items()},
        "failed": {str(k): str(v) for k, v in result.failed.items()},
        "tokenizer": str(result.tokenizer),
        "errors": [str(k) for k in result.errors],
    }


def summary_lines(vl: VlSession) -> list[str]:
    lines = []
    for result in vl.golden_results:
        scores = "  ".join(f"{m} {v:.3f}" for m, v in result["corpus"].items())
        lines.append(f"golden {result['set']} on {result['model']}: {scores}")
        notes = dict(result["skipped"])
        notes.update(result["failed"])
        reasons: dict[str, list[str]] = {}
        for metric, reason in notes.items():
            reasons.setdefault(reason, []).append(metric)
        for reason, metrics in reasons.items():
            lines.append(f"  {', '.join(metrics)} not run: {reason}")
        if result["tokenizer"] == "fallback":
            lines.append("  tokenised without Java (pure-Python stand-in): scores may differ slightly from official")
        if result["errors"]:
            lines.append(f"  {len(result['errors'])} image(s) got no caption")
    return lines
