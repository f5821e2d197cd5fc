"""Corpus-level COCO caption metrics computed with the official pycocoevalcap code.

What this module adds around pycocoevalcap, and why:

- PTBTokenizer runs once per evaluation, never per metric, exactly as COCOEvalCap runs it: the references, then
  the candidates, each in the caller's image order (``caption_inputs.tokenized`` says why the order matters).
- Chinese (or any unspaced) sets choose ``tokenize="jieba"`` or ``"char"`` (``caption_tokens.py``); METEOR and
  SPICE, English-only, are then reported as skipped with the reason.
- Nothing is written into site-packages: the tokenizer's and SPICE's temporary files and SPICE's cache go to
  our own cache directory, so a read-only install works.
- Java is looked for first. Without it BLEU, ROUGE_L and CIDEr still run (on a pure-Python stand-in for
  PTBTokenizer) and METEOR and SPICE are reported as skipped, with the reason.
- METEOR runs under an English locale (it mis-parses numbers otherwise) and its process is always closed.
- SPICE never downloads anything: it runs where the Stanford CoreNLP 3.6.0 jars are provided, with the
  ``--add-opens`` flags that modern Java needs, and is reported as skipped (with how to provide them) otherwise.

pycocoevalcap is imported inside the functions that use it, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, overload

import pytest

from pytest_vleval.scoring.caption_inputs import (
    METRIC_RANGES,
    METRICS,
    Tokenizer,
    caption_key_order,
    check_inputs,
    check_metrics,
    tokenized,
)
from pytest_vleval.scoring.caption_tokens import ENGLISH_ONLY, english_only_reason, tokenize_problem
from pytest_vleval.scoring.java import (
    CORENLP_JARS,
    JAVA_METRICS,
    SPICE_ADD_OPENS,
    SPICE_CORENLP_ENV,
    CaptionMetricError,
    JavaStatus,
    java_status,
    meteor_error,
    no_java_reason,
    ptb_tokenize,
    pycocoevalcap_dir,
    run_spice,
    spice_command,
    spice_setup,
    start_meteor,
    stop_process,
)
from pytest_vleval.scoring.ptb_fallback import fallback_tokenize

__all__ = [
    "CACHE_DIR_ENV",
    "CORENLP_JARS",
    "JAVA_METRICS",
    "METRICS",
    "METRIC_RANGES",
    "SPICE_ADD_OPENS",
    "SPICE_CORENLP_ENV",
    "CaptionEvaluator",
    "CaptionMetricError",
    "CaptionScores",
    "JavaStatus",
    "MetricSkippedWarning",
    "caption_key_order",
    "caption_scores",
    "default_cache_dir",
    "evaluate_captions",
    "fallback_tokenize",
    "java_status",
    "ptb_tokenize",
    "pycocoevalcap_dir",
    "run_spice",
    "spice_command",
    "spice_setup",
]


CACHE_DIR_ENV = "VLEVAL_CACHE_DIR"


class MetricSkippedWarning(pytest.PytestWarning):
    """Some requested caption metrics could not run (see the message for why and how to enable them).

    A `pytest.PytestWarning`, like every warning of the plugin, so `-W error::pytest.PytestWarning` catches it.
    """


@dataclass(frozen=True)
class CaptionScores:
    """Result of :func:`evaluate_captions`.

    ``corpus``: metric -> corpus score, only for the metrics that ran, in :data:`METRICS` order.
    ``per_image``: key -> metric -> score of that image (what pycocoevalcap's scorers return per image).
    ``skipped``: metric -> why it did not run and how to make it run.
    ``failed``: metric -> error of a metric that should have run but whose process failed.
    ``tokenizer``: ``"ptb"`` (Stanford PTBTokenizer, the official pipeline), ``"fallback"`` (pure Python,
    used without Java; scores may differ slightly from the official ones), ``"jieba"`` or ``"char"``.
    ``timings``: stage -> seconds.
    """

    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]]
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    tokenizer: Tokenizer = "ptb"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def message(self) -> str:
        """One line saying what did not run and why; empty when everything requested ran officially."""
        parts: list[str] = []
        reasons: dict[str, list[str]] = {}
        for metric, reason in self.skipped.items():
            reasons.setdefault(reason, []).append(metric)
        for reason, metrics in reasons.items():
            parts.append(f"{' and '.join(metrics)} skipped: {reason}")
        parts.extend(f"{metric} failed: {error}" for metric, error in self.failed.items())
        if self.tokenizer == "fallback":
            parts.append(
                "PTBTokenizer needs Java, so the captions were tokenised by a pure-Python stand-in; "
                "BLEU, ROUGE_L and CIDEr may differ slightly from the official numbers"
            )
        return "; ".join(parts)


def default_cache_dir() -> Path:
    """``$VLEVAL_CACHE_DIR`` or ``~/.cache/pytest-vleval``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pytest-vleval"


@overload
def caption_scores(
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    *,
    metrics: Iterable[str] = ...,
    per_image: Literal[False] = False,
    cache_dir: str | os.PathLike[str] | None = ...,
    spice_jars: str | os.PathLike[str] | None = ...,
    tokenize: str = ...,
) -> dict[str, float]: ...


@overload
def caption_scores(
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    *,
    metrics: Iterable[str] = ...,
    per_image: Literal[True],
    cache_dir: str | os.PathLike[str] | None = ...,
    spice_jars: str | os.PathLike[str] | None = ...,
    tokenize: str = ...,
) -> CaptionScores: ...


def caption_scores(
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    *,
    metrics: Iterable[str] = METRICS,
    per_image: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    spice_jars: str | os.PathLike[str] | None = None,
    tokenize: str = "ptb",
) -> dict[str, float] | CaptionScores:
    """Official COCO caption metrics of ``candidates`` ({key: caption}) against ``references``
    ({key: [caption, ...]}).

    Returns {metric: corpus score} for the metrics that ran; metrics that could not run are left out and
    reported with a :class:`MetricSkippedWarning`. With ``per_image=True`` returns the full
    :class:`CaptionScores` (per-image scores, skipped metrics and why) instead, without a warning.
    ``tokenize``: ``"ptb"`` (English, the official step), ``"jieba"`` or ``"char"`` (Chinese; ``caption_tokens.py``).
    """
    scores = evaluate_captions(
        references, candidates, metrics=metrics, cache_dir=cache_dir, spice_jars=spice_jars, tokenize=tokenize
    )
    if per_image:
        return scores
    if scores.skipped or scores.failed or scores.tokenizer == "fallback":
        warnings.warn(MetricSkippedWarning(scores.message), stacklevel=2)
    return dict(scores.corpus)


def evaluate_captions(
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    *,
    metrics: Iterable[str] = METRICS,
    cache_dir: str | os.PathLike[str] | None = None,
    spice_jars: str | os.PathLike[str] | None = None,
    tokenize: str = "ptb",
) -> CaptionScores:
    """Score one caption set; starts and stops its own METEOR process. See :class:`CaptionEvaluator` to score
    several sets with one METEOR start-up."""
    with CaptionEvaluator(metrics=metrics, cache_dir=cache_dir, spice_jars=spice_jars) as evaluator:
        return evaluator.evaluate(references, candidates, tokenize=tokenize)


@dataclass
class _Scoring:
    """One evaluation's results as they are computed."""

    keys: list[Any]
    corpus: dict[str, float] = field(default_factory=dict)
    per_image: dict[Any, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def record(self, metric: str, score: float, scores: Sequence[Any]) -> None:
        self.corpus[metric] = float(score)
        for key, value in zip(self.keys, scores, strict=True):
            self.per_image.setdefault(key, {})[metric] = float(value)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = time.perf_counter() - start

    def result(self, tokenizer: Tokenizer) -> CaptionScores:
        return CaptionScores(
            corpus={metric: self.corpus[metric] for metric in METRICS if metric in self.corpus},
            per_image={key: self.per_image.get(key, {}) for key in self.keys},
            skipped=self.skipped,
            failed=self.failed,
            tokenizer=tokenizer,
            timings=self.timings,
        )


class CaptionEvaluator:
    """Scores caption sets, keeping one METEOR process for all of them until :meth:`close`.

    Use as a context manager. The METEOR process is started on the first evaluation that needs it (about 15 s
    of Java start-up) and is also stopped if the evaluator is garbage-collected or the interpreter exits.
    """

    def __init__(
        self,
        *,
        metrics: Iterable[str] = METRICS,
        cache_dir: str | os.PathLike[str] | None = None,
        spice_jars: str | os.PathLike[str] | None = None,
    ) -> None:
        self.metrics = check_metrics(metrics)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.spice_jars = spice_jars
        self._meteor: Any = None
        self._meteor_stderr: IO[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> CaptionEvaluator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the METEOR process, if one was started."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._meteor = None
        self._meteor_stderr = None

    def evaluate(
        self, references: Mapping[Any, Sequence[str]], candidates: Mapping[Any, str], *, tokenize: str = "ptb"
    ) -> CaptionScores:
        """Score one set; ``tokenize``: ``"ptb"``, ``"jieba"`` or ``"char"`` (``caption_tokens.py``)."""
        problem = tokenize_problem(tokenize)
        if problem is not None:
            raise ValueError(f"tokenize: {problem}")
        keys = check_inputs(references, candidates)
        scoring = _Scoring(keys)
        java = java_status()
        english = [m for m in self.metrics if m in ENGLISH_ONLY] if tokenize == "ptb" else []
        for metric in (m for m in self.metrics if m in ENGLISH_ONLY and m not in english):
            scoring.skipped[metric] = english_only_reason(metric, tokenize)
        with self._lock, self._scratch_dir() as scratch:
            # Started first so that METEOR's JVM start-up (~15 s) overlaps the tokenisation and the other metrics.
            meteor = self._meteor_scorer(java.path) if "METEOR" in english and java.path and java.usable else None
            with scoring.timed("tokenize"):
                gts, res, tokenizer = tokenized(keys, references, candidates, java, scratch, tokenize)
            self._python_metrics(scoring, gts, res)
            if "METEOR" in english:
                self._meteor_metric(scoring, meteor, java, gts, res)
            if "SPICE" in english:
                self._spice_metric(scoring, java, gts, res, scratch)
        return scoring.result(tokenizer)

    def _python_metrics(self, scoring: _Scoring, gts: dict[Any, list[str]], res: dict[Any, list[str]]) -> None:
        """BLEU, ROUGE_L and CIDEr: pycocoevalcap's scorers, pure Python."""
        bleu = [m for m in self.metrics if m.startswith("Bleu_")]
        if bleu:
            from pycocoevalcap.bleu.bleu import Bleu

            with scoring.timed("Bleu"):
                score, scores = Bleu(4).compute_score(gts, res, verbose=0)
                for metric in bleu:
                    n = int(metric[-1])
                    scoring.record(metric, score[n - 1], scores[n - 1])
        if "ROUGE_L" in self.metrics:
            from pycocoevalcap.rouge.rouge import Rouge

            with scoring.timed("ROUGE_L"):
                score, scores = Rouge().compute_score(gts, res)
                scoring.record("ROUGE_L", score, scores)
        if "CIDEr" in self.metrics:
            from pycocoevalcap.cider.cider import Cider

            with scoring.timed("CIDEr"):
                score, scores = Cider().compute_score(gts, res)
                scoring.record("CIDEr", score, scores)

    def _meteor_metric(
        self, scoring: _Scoring, meteor: Any, java: JavaStatus, gts: dict[Any, list[str]], res: dict[Any, list[str]]
    ) -> None:
        if meteor is None:
            scoring.skipped["METEOR"] = no_java_reason(java)
            return
        with scoring.timed("METEOR"):
            try:
                score, scores = meteor.compute_score(gts, res)
            except (OSError, ValueError) as exc:
                detail = meteor_error(self._meteor_stderr)
                self.close()
                raise CaptionMetricError(f"METEOR process failed: {exc!r}{detail}") from exc
            except BaseException:  # Ctrl-C mid-exchange: the process is out of step with us; stop it now
                self.close()
                raise
            scoring.record("METEOR", score, scores)

    def _spice_metric(
        self, scoring: _Scoring, java: JavaStatus, gts: dict[Any, list[str]], res: dict[Any, list[str]], scratch: str
    ) -> None:
        setup = spice_setup(java, self.spice_jars)
        if isinstance(setup, str):
            scoring.skipped["SPICE"] = setup
            return
        with scoring.timed("SPICE"):
            try:
                score, scores = run_spice(setup, gts, res, cache_dir=self.cache_dir, work_dir=scratch)
            except CaptionMetricError as exc:
                scoring.failed["SPICE"] = str(exc)
            else:
                scoring.record("SPICE", score, scores)

    def _scratch_dir(self) -> tempfile.TemporaryDirectory[str]:
        tmp_root = self.cache_dir / "tmp"
        try:
            tmp_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaptionMetricError(
                f"cannot create the metrics cache directory {tmp_root} ({exc.strerror}); "
                f"set {CACHE_DIR_ENV} to a writable folder"
            ) from exc
        return tempfile.TemporaryDirectory(prefix="captions-", dir=tmp_root)

    def _meteor_scorer(self, java: str) -> Any:
        if self._meteor is not None and self._meteor.meteor_p.poll() is None:
            return self._meteor
        self.close()
        meteor, stderr = start_meteor(java, cwd=self.cache_dir, tmp=self.cache_dir / "tmp")
        self._meteor = meteor
        self._meteor_stderr = stderr
        self._finalizer = weakref.finalize(self, stop_process, meteor.meteor_p, stderr)
        return meteor
