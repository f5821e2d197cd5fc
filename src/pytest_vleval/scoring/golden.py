"""A golden caption set scored once per (set, model): the captions come from the batched predictor, the scores
from the official COCO metrics (``captions.py``), with one METEOR process shared by every set of the session."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_vleval.backends.base import ModelSpec
from pytest_vleval.cases.casefile import Case, Turn
from pytest_vleval.cases.golden import GoldenSet

if TYPE_CHECKING:
    from pytest_vleval.predict.predictor import BatchPredictor
    from pytest_vleval.scoring.captions import CaptionEvaluator

__all__ = ["GoldenResult", "GoldenScorer", "golden_cases", "metric_failure"]


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
    prompt: str = ""
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {path, references}

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
            "prompt": self.prompt,
            "images": self.images,
        }


class GoldenScorer:
    """Scores each (set, model) once per process; the sets share one :class:`CaptionEvaluator` (one METEOR
    start-up), closed at session end."""

    def __init__(self) -> None:
        self._evaluator: CaptionEvaluator | None = None
        self._scored: dict[tuple[str, str], GoldenResult] = {}

    def score(
        self, predictor: BatchPredictor, golden: GoldenSet, cases: list[Case], spec: ModelSpec
    ) -> tuple[GoldenResult, bool]:
        """Caption every image of the set with the model and score the corpus: (result, scored by this call)."""
        key = (str(golden.path), spec.label)
        if key in self._scored:
            return self._scored[key], False
        result = GoldenResult(
            set_name=golden.name,
            manifest=os.path.relpath(golden.path),
            model=spec.label,
            thresholds=dict(golden.thresholds),
            prompt=golden.prompt,
            images={
                image.key: {"path": str(image.path), "references": list(image.references)} for image in golden.images
            },
        )
        for case, image in zip(cases, golden.images, strict=True):
            prediction = predictor.predict(spec, case)
            if prediction.error is not None:
                result.errors[image.key] = prediction.error
            result.captions[image.key] = prediction.answers[0] if prediction.answers else ""
        scores = self._caption_evaluator().evaluate(golden.references, result.captions, tokenize=golden.tokenize)
        result.corpus = dict(scores.corpus)
        result.per_image = {str(k): dict(v) for k, v in scores.per_image.items()}
        result.skipped = dict(scores.skipped)
        result.failed = dict(scores.failed)
        result.tokenizer = scores.tokenizer
        result.seconds = dict(scores.timings)
        self._scored[key] = result
        return result, True

    def _caption_evaluator(self) -> CaptionEvaluator:
        if self._evaluator is None:
            from pytest_vleval.scoring.captions import CaptionEvaluator

            self._evaluator = CaptionEvaluator()
        return self._evaluator

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()


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
