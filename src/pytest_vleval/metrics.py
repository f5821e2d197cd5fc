"""Corpus-level COCO caption metrics computed with the official pycocoevalcap code.

What this module adds around pycocoevalcap, and why:

- PTBTokenizer runs once per evaluation, on references and candidates together (harnesses that tokenise per
  metric pay the Java start-up seven times and get the same tokens).
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

import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unicodedata
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, overload

import pytest

METRICS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
JAVA_METRICS: tuple[str, ...] = ("METEOR", "SPICE")

# Inclusive range of each corpus score. CIDEr(-D) is a mean of clipped cosine similarities times 10.
METRIC_RANGES: Mapping[str, tuple[float, float]] = {
    "Bleu_1": (0.0, 1.0),
    "Bleu_2": (0.0, 1.0),
    "Bleu_3": (0.0, 1.0),
    "Bleu_4": (0.0, 1.0),
    "METEOR": (0.0, 1.0),
    "ROUGE_L": (0.0, 1.0),
    "CIDEr": (0.0, 10.0),
    "SPICE": (0.0, 1.0),
}

CACHE_DIR_ENV = "VLEVAL_CACHE_DIR"
SPICE_CORENLP_ENV = "VLEVAL_SPICE_CORENLP"
CORENLP_JARS: tuple[str, str] = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

LOCALE_FLAGS: tuple[str, ...] = ("-Duser.language=en", "-Duser.country=US")
# FST (SPICE's cache serialiser) reflects into these JDK packages; Java 16+ refuses unless they are opened.
# Found by running SPICE's LmdbTupleDB on Java 17 and 25 until no InaccessibleObjectException was left.
SPICE_ADD_OPENS: tuple[str, ...] = tuple(
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.math", "java.util", "java.util.concurrent", "java.net", "java.text")
)
# SPICE 1.0 pretty-prints its -out file with the Nashorn JavaScript engine, which Java 15 removed.
NASHORN_REMOVED_IN = 15

_TOKENIZER_JAR = "stanford-corenlp-3.4.1.jar"
_TOKENIZER_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
_METEOR_JAR = "meteor-1.5.jar"
_SPICE_JAR = "spice-1.0.jar"
# Characters CoreNLP's lexer treats as line ends; pycocoevalcap only replaces "\n", so any other one
# silently shifts every later caption onto the wrong image. We replace them all with a space.
_LINE_BREAKS = re.compile("\r\n|[\n\r\u000b\u000c\u0085\u2028\u2029]")


class CaptionMetricError(RuntimeError):
    """A Java metric process failed in a way that is not a missing dependency."""


class MetricSkippedWarning(pytest.PytestWarning):
    """Some requested caption metrics could not run (see the message for why and how to enable them).

    A `pytest.PytestWarning`, like every warning of the plugin, so `-W error::pytest.PytestWarning` catches it.
    """


@dataclass(frozen=True)
class JavaStatus:
    """What the Java preflight found."""

    path: str | None
    version: str | None
    major: int | None
    usable: bool
    reason: str = ""


@dataclass(frozen=True)
class CaptionScores:
    """Result of :func:`evaluate_captions`.

    ``corpus``: metric -> corpus score, only for the metrics that ran, in :data:`METRICS` order.
    ``per_image``: key -> metric -> score of that image (what pycocoevalcap's scorers return per image).
    ``skipped``: metric -> why it did not run and how to make it run.
    ``failed``: metric -> error of a metric that should have run but whose process failed.
    ``tokenizer``: ``"ptb"`` (Stanford PTBTokenizer, the official pipeline) or ``"fallback"`` (pure Python,
    used without Java; scores may differ slightly from the official ones).
    ``timings``: stage -> seconds.
    """

    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]]
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    tokenizer: Literal["ptb", "fallback"] = "ptb"
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


def pycocoevalcap_dir() -> Path:
    """The installed pycocoevalcap package folder (a namespace package: no ``__file__``)."""
    import pycocoevalcap

    return Path(next(iter(pycocoevalcap.__path__)))


def java_status() -> JavaStatus:
    """Find ``java`` on PATH and check that ``java -version`` runs. Cached per executable."""
    path = shutil.which("java")
    if path is None:
        return JavaStatus(None, None, None, False, "java not found on PATH")
    return _probe_java(os.path.realpath(path))


@functools.lru_cache(maxsize=8)
def _probe_java(path: str) -> JavaStatus:
    try:
        proc = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return JavaStatus(path, None, None, False, f"`{path} -version` failed: {exc}")
    output = (proc.stderr or "") + (proc.stdout or "")
    if proc.returncode != 0:
        last = output.strip().splitlines()[-1:] or ["no output"]
        return JavaStatus(path, None, None, False, f"`{path} -version` exited {proc.returncode}: {last[0]}")
    match = re.search(r'version "([^"]+)"', output)
    version = match.group(1) if match else None
    return JavaStatus(path, version, _java_major(version), True)


def _java_major(version: str | None) -> int | None:
    if not version:
        return None
    parts = re.findall(r"\d+", version)
    if not parts:
        return None
    major = int(parts[0])
    if major == 1 and len(parts) > 1:  # "1.8.0_292" is Java 8
        major = int(parts[1])
    return major


def caption_key_order(keys: Iterable[Any]) -> list[Any]:
    """Keys in the deterministic order the metrics see them: sorted (mixed key types by type, then text)."""
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=lambda key: (type(key).__name__, str(key)))


@overload
def caption_scores(
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    *,
    metrics: Iterable[str] = ...,
    per_image: Literal[False] = False,
    cache_dir: str | os.PathLike[str] | None = ...,
    spice_jars: str | os.PathLike[str] | None = ...,
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
) -> CaptionScores: ...


def caption_scores(
    references: Mapping[Any, Sequence[str]],
    candidates: Mapping[Any, str],
    *,
    metrics: Iterable[str] = METRICS,
    per_image: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    spice_jars: str | os.PathLike[str] | None = None,
) -> dict[str, float] | CaptionScores:
    """Official COCO caption metrics of ``candidates`` ({key: caption}) against ``references``
    ({key: [caption, ...]}).

    Returns {metric: corpus score} for the metrics that ran; metrics that could not run are left out and
    reported with a :class:`MetricSkippedWarning`. With ``per_image=True`` returns the full
    :class:`CaptionScores` (per-image scores, skipped metrics and why) instead, without a warning.
    """
    scores = evaluate_captions(references, candidates, metrics=metrics, cache_dir=cache_dir, spice_jars=spice_jars)
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
) -> CaptionScores:
    """Score one caption set; starts and stops its own METEOR process. See :class:`CaptionEvaluator` to score
    several sets with one METEOR start-up."""
    with CaptionEvaluator(metrics=metrics, cache_dir=cache_dir, spice_jars=spice_jars) as evaluator:
        return evaluator.evaluate(references, candidates)


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
        self.metrics = _check_metrics(metrics)
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

    def evaluate(self, references: Mapping[Any, Sequence[str]], candidates: Mapping[Any, str]) -> CaptionScores:
        keys = _check_inputs(references, candidates)
        timings: dict[str, float] = {}
        skipped: dict[str, str] = {}
        failed: dict[str, str] = {}
        java = java_status()
        with self._lock, self._scratch_dir() as scratch:
            # Started first so that METEOR's JVM start-up (~15 s) overlaps the tokenisation and the other metrics.
            meteor = self._meteor_scorer(java.path) if "METEOR" in self.metrics and java.path and java.usable else None
            start = time.perf_counter()
            ref_lists = [list(references[key]) for key in keys]
            flat = [caption for refs in ref_lists for caption in refs] + [candidates[key] for key in keys]
            tokenizer: Literal["ptb", "fallback"]
            if java.usable:
                assert java.path is not None
                tokenized = ptb_tokenize(flat, java=java.path, work_dir=scratch)
                tokenizer = "ptb"
            else:
                tokenized = [fallback_tokenize(caption) for caption in flat]
                tokenizer = "fallback"
            timings["tokenize"] = time.perf_counter() - start

            gts: dict[Any, list[str]] = {}
            position = 0
            for key, refs in zip(keys, ref_lists, strict=True):
                gts[key] = tokenized[position : position + len(refs)]
                position += len(refs)
            res: dict[Any, list[str]] = {key: [tokenized[position + i]] for i, key in enumerate(keys)}

            corpus: dict[str, float] = {}
            per_image: dict[Any, dict[str, float]] = {key: {} for key in keys}

            def record(metric: str, score: float, scores: Sequence[Any]) -> None:
                corpus[metric] = float(score)
                for key, value in zip(keys, scores, strict=True):
                    per_image[key][metric] = float(value)

            bleu = [m for m in self.metrics if m.startswith("Bleu_")]
            if bleu:
                from pycocoevalcap.bleu.bleu import Bleu

                start = time.perf_counter()
                score, scores = Bleu(4).compute_score(gts, res, verbose=0)
                for metric in bleu:
                    n = int(metric[-1])
                    record(metric, score[n - 1], scores[n - 1])
                timings["Bleu"] = time.perf_counter() - start
            if "ROUGE_L" in self.metrics:
                from pycocoevalcap.rouge.rouge import Rouge

                start = time.perf_counter()
                score, scores = Rouge().compute_score(gts, res)
                record("ROUGE_L", score, scores)
                timings["ROUGE_L"] = time.perf_counter() - start
            if "CIDEr" in self.metrics:
                from pycocoevalcap.cider.cider import Cider

                start = time.perf_counter()
                score, scores = Cider().compute_score(gts, res)
                record("CIDEr", score, scores)
                timings["CIDEr"] = time.perf_counter() - start
            if "METEOR" in self.metrics:
                if meteor is None:
                    skipped["METEOR"] = _no_java_reason(java)
                else:
                    start = time.perf_counter()
                    try:
                        score, scores = meteor.compute_score(gts, res)
                    except (OSError, ValueError) as exc:
                        detail = self._meteor_error()
                        self.close()
                        raise CaptionMetricError(f"METEOR process failed: {exc!r}{detail}") from exc
                    record("METEOR", score, scores)
                    timings["METEOR"] = time.perf_counter() - start
            if "SPICE" in self.metrics:
                setup = spice_setup(java, self.spice_jars)
                if isinstance(setup, str):
                    skipped["SPICE"] = setup
                else:
                    start = time.perf_counter()
                    try:
                        score, scores = run_spice(setup, gts, res, cache_dir=self.cache_dir, work_dir=scratch)
                    except CaptionMetricError as exc:
                        failed["SPICE"] = str(exc)
                    else:
                        record("SPICE", score, scores)
                    timings["SPICE"] = time.perf_counter() - start

        ordered = {metric: corpus[metric] for metric in METRICS if metric in corpus}
        return CaptionScores(
            corpus=ordered,
            per_image=per_image,
            skipped=skipped,
            failed=failed,
            tokenizer=tokenizer,
            timings=timings,
        )

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

    def _meteor_error(self) -> str:
        if self._meteor_stderr is None:
            return ""
        self._meteor_stderr.seek(0)
        return "\n" + _tail(self._meteor_stderr.read())

    def _meteor_scorer(self, java: str) -> Any:
        if self._meteor is not None and self._meteor.meteor_p.poll() is None:
            return self._meteor
        self.close()
        from pycocoevalcap.meteor.meteor import Meteor

        jar = pycocoevalcap_dir() / "meteor" / _METEOR_JAR
        # pycocoevalcap's command (its Meteor builds and starts it in __init__), plus an English locale, run
        # from our cache folder rather than from inside site-packages.
        command = [java, "-jar", "-Xmx2G", *LOCALE_FLAGS, str(jar), "-", "-", "-stdio", "-l", "en", "-norm"]
        stderr = tempfile.TemporaryFile(dir=self.cache_dir / "tmp")
        process = subprocess.Popen(
            command, cwd=self.cache_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
        # The official scorer object, minus its __init__ (which would start a second, locale-less process).
        meteor = Meteor.__new__(Meteor)
        meteor.meteor_cmd = command
        meteor.meteor_p = process
        meteor.lock = threading.Lock()
        self._meteor = meteor
        self._meteor_stderr = stderr
        self._finalizer = weakref.finalize(self, _stop_process, process, stderr)
        return meteor


def _stop_process(process: subprocess.Popen[bytes], stderr: IO[bytes] | None = None) -> None:
    try:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=1)  # METEOR exits on end of input; if it is still loading, stop it
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    finally:
        if process.stdout is not None:
            process.stdout.close()
        if stderr is not None:
            stderr.close()


def _check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    requested = tuple(dict.fromkeys(metrics))
    unknown = [m for m in requested if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown caption metric(s) {', '.join(map(repr, unknown))}; valid: {', '.join(METRICS)}")
    if not requested:
        raise ValueError(f"no caption metric requested; valid: {', '.join(METRICS)}")
    return requested


def _check_inputs(references: Mapping[Any, Sequence[str]], candidates: Mapping[Any, str]) -> list[Any]:
    if not isinstance(references, Mapping) or not isinstance(candidates, Mapping):
        raise TypeError("references and candidates must be mappings: {key: [reference, ...]} and {key: caption}")
    missing = [key for key in references if key not in candidates]
    extra = [key for key in candidates if key not in references]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no candidate for {len(missing)} key(s): {_key_list(missing)}")
        if extra:
            parts.append(f"{len(extra)} candidate key(s) have no references: {_key_list(extra)}")
        raise ValueError("references and candidates must have the same keys; " + "; ".join(parts))
    if not references:
        raise ValueError("no captions to score: references and candidates are empty")
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise TypeError(f"references[{key!r}] must be a list of strings, got {type(refs).__name__}")
        if not refs:
            raise ValueError(f"references[{key!r}] is empty: every key needs at least one reference caption")
        for ref in refs:
            if not isinstance(ref, str):
                raise TypeError(f"references[{key!r}] contains a {type(ref).__name__}, not a string: {ref!r}")
    for key, caption in candidates.items():
        if not isinstance(caption, str):
            raise TypeError(f"candidates[{key!r}] must be a string, got {type(caption).__name__}: {caption!r}")
    return caption_key_order(references)


def _key_list(keys: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(key) for key in caption_key_order(keys)[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _no_java_reason(java: JavaStatus) -> str:
    return f"{java.reason} (install a Java runtime, 8 or newer, and put `java` on PATH)"


def ptb_tokenize(captions: Sequence[str], *, java: str, work_dir: str | os.PathLike[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer on ``captions``, one output per caption, without writing into its package.

    Same jar, command line and punctuation removal as ``pycocoevalcap.tokenizer.ptbtokenizer``; the input
    file lives in ``work_dir`` and the process runs there. Blank captions are not sent to Java (their tokens
    are empty either way) and the output line count is checked, so a caption can never shift onto another.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    punctuation = frozenset(PUNCTUATIONS)
    lines = [_LINE_BREAKS.sub(" ", caption) for caption in captions]
    to_send = [i for i, line in enumerate(lines) if line.strip()]
    result = [""] * len(lines)
    if not to_send:
        return result
    jar = pycocoevalcap_dir() / "tokenizer" / _TOKENIZER_JAR
    with tempfile.NamedTemporaryFile("wb", dir=work_dir, prefix="ptb-", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(lines[i] for i in to_send).encode())
        input_path = handle.name
    command = [java, *LOCALE_FLAGS, "-cp", str(jar), _TOKENIZER_CLASS, "-preserveLines", "-lowerCase", input_path]
    try:
        proc = subprocess.run(command, cwd=work_dir, capture_output=True, check=False)
    finally:
        os.remove(input_path)
    if proc.returncode != 0:
        raise CaptionMetricError(
            f"PTBTokenizer exited {proc.returncode}: {_tail(proc.stderr)}\ncommand: {' '.join(command)}"
        )
    out_lines = proc.stdout.decode("utf-8", errors="replace").split("\n")
    if len(out_lines) == len(to_send) + 1 and out_lines[-1] == "":
        out_lines.pop()
    if len(out_lines) != len(to_send):
        raise CaptionMetricError(
            f"PTBTokenizer returned {len(out_lines)} lines for {len(to_send)} captions; refusing to guess "
            "which caption is which"
        )
    for i, line in zip(to_send, out_lines, strict=True):
        result[i] = " ".join(word for word in line.rstrip().split(" ") if word not in punctuation)
    return result


# The pure-Python stand-in for PTBTokenizer -lowerCase (used only without Java). It reproduces the tokenizer on
# ordinary caption text (checked against the real one in the tests); it does not know CoreNLP's full
# abbreviation list, URLs, emoticons or its treatment of rarer Unicode.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2026": "..."})
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr vs etc inc co ltd corp mt prof".split())
_SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "gotta": ("got", "ta"),
    "wanna": ("wan", "na"),
    "lemme": ("lem", "me"),
}
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_ATOM = re.compile(
    r"""
    (?P<dots>\.{3,})
    | (?P<dashes>--+)
    | (?P<marks>[?!]{2,})
    | (?P<initialism>(?:[^\W\d_]\.){2,})          # u.s. p.m. e.g.
    | (?P<number>\d+(?:[.,:/]\d+)+)               # 3.5 1,000 10:30 3/4
    | (?P<word>[^\W_]+(?:['./&-][^\W_]+)*'?)      # x-ray o'clock a/b dogs'
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_PTB_PUNCTUATION = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"})


def fallback_tokenize(caption: str) -> str:
    """Tokenise one caption like ``PTBTokenizer -preserveLines -lowerCase`` + pycocoevalcap's punctuation
    removal, without Java. Exact for ordinary caption text; an approximation otherwise."""
    text = _LINE_BREAKS.sub(" ", caption).lower().translate(_QUOTES)
    tokens: list[str] = []
    for chunk in text.split():
        tokens.extend(_tokenize_chunk(chunk))
    return " ".join(token for token in tokens if token not in _PTB_PUNCTUATION)


def _tokenize_chunk(chunk: str) -> list[str]:
    atoms = [(match.lastgroup, match.group()) for match in _ATOM.finditer(chunk)]
    tokens: list[str] = []
    index = 0
    while index < len(atoms):
        kind, atom = atoms[index]
        index += 1
        if kind == "word":
            if atom in _ABBREVIATIONS and index == len(atoms) - 1 and atoms[index][1] == ".":
                tokens.append(atom + ".")  # "mr." keeps its period; "dog." does not
                index += 1
            else:
                tokens.extend(_split_word(atom))
        elif kind == "other":
            if atom in _BRACKETS:
                tokens.append(_BRACKETS[atom])
            elif atom == '"' or unicodedata.category(atom) in {"So", "Cs", "Co", "Cn"}:
                continue  # quotes become `` and '' (removed); CoreNLP drops what it cannot tokenise (emoji)
            else:
                tokens.append(atom)
        elif kind == "dashes":
            tokens.append("--")
        else:
            tokens.append(atom)
    return tokens


def _split_word(word: str) -> list[str]:
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    if word.endswith("'"):
        return [word[:-1], "'"]
    match = _CLITIC.match(word)
    if match:
        return [*_split_word(match.group(1)), match.group(2)]  # she'd've -> she 'd 've
    return [word]


@dataclass(frozen=True)
class SpiceSetup:
    """Everything needed to run SPICE: the java to use and the classpath (SPICE + CoreNLP 3.6.0 [+ Nashorn])."""

    java: str
    java_major: int | None
    spice_jar: Path
    classpath: tuple[Path, ...]


def spice_setup(java: JavaStatus, spice_jars: str | os.PathLike[str] | None = None) -> SpiceSetup | str:
    """Where SPICE can run, its :class:`SpiceSetup`; otherwise the reason it cannot and how to fix that.

    The CoreNLP 3.6.0 jars are looked for in ``spice_jars``, else ``$VLEVAL_SPICE_CORENLP``, else
    pycocoevalcap's own ``spice/lib`` (where its downloader would have put them). Nothing is downloaded.
    """
    if not java.usable or java.path is None:
        return _no_java_reason(java)
    package_lib = pycocoevalcap_dir() / "spice" / "lib"
    spice_jar = pycocoevalcap_dir() / "spice" / _SPICE_JAR
    if spice_jars is not None:
        candidates = [(Path(spice_jars).expanduser(), "the spice_jars argument")]
    elif os.environ.get(SPICE_CORENLP_ENV):
        candidates = [(Path(os.environ[SPICE_CORENLP_ENV]).expanduser(), f"${SPICE_CORENLP_ENV}")]
    else:
        candidates = [(package_lib, "pycocoevalcap's spice/lib")]
    folder, source = candidates[0]
    if folder.is_file():
        folder = folder.parent
    missing = [name for name in CORENLP_JARS if not (folder / name).is_file()]
    how = (
        f"unzip stanford-corenlp-full-2015-12-09.zip (the archive pycocoevalcap would download from "
        f"nlp.stanford.edu/software/) and set {SPICE_CORENLP_ENV}=/path/to/stanford-corenlp-full-2015-12-09 "
        "(or pass spice_jars=...); pytest-vleval never downloads them"
    )
    if missing:
        not_found = " and ".join(missing)
        return f"SPICE needs the Stanford CoreNLP 3.6.0 jars; {not_found} not found in {folder} ({source}): {how}"
    classpath = [spice_jar, *(folder / name for name in CORENLP_JARS)]
    if java.major is not None and java.major >= NASHORN_REMOVED_IN:
        nashorn = sorted({*folder.glob("nashorn-core-*.jar"), *package_lib.glob("nashorn-core-*.jar")})
        if not nashorn:
            return (
                f"SPICE 1.0 writes its results with the Nashorn JavaScript engine, which Java {java.major} no longer "
                f"has: put nashorn-core-15.4.jar and its asm, asm-commons, asm-tree, asm-util and asm-analysis 7.3.1 "
                f"jars (Maven Central) next to the CoreNLP jars in {folder}, or put a Java 8 or 11 first on PATH"
            )
        jar_dir = nashorn[-1].parent
        classpath += [nashorn[-1], *sorted(jar_dir.glob("asm-*.jar"))]
    return SpiceSetup(java=java.path, java_major=java.major, spice_jar=spice_jar, classpath=tuple(classpath))


def spice_command(
    setup: SpiceSetup,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    cache: Path,
    tmp: Path,
) -> list[str]:
    """The SPICE command line: pycocoevalcap's (``java -jar -Xmx8G spice-1.0.jar IN -cache C -out OUT -subset
    -silent``) with an explicit classpath (the CoreNLP jars may live anywhere), the ``--add-opens`` flags Java 9+
    needs (16+ refuses without them), an English locale and Java's temp folder (lmdbjni unpacks its native
    library there) inside our cache."""
    flags: list[str] = ["-Xmx8G"]
    if setup.java_major is None or setup.java_major >= 9:
        flags += SPICE_ADD_OPENS
    flags += [*LOCALE_FLAGS, f"-Djava.io.tmpdir={tmp}"]
    classpath = os.pathsep.join(str(path) for path in setup.classpath)
    return [
        setup.java,
        *flags,
        "-cp",
        classpath,
        "edu.anu.spice.SpiceScorer",
        str(input_path),
        "-cache",
        str(cache),
        "-out",
        str(output_path),
        "-subset",
        "-silent",
    ]


def run_spice(
    setup: SpiceSetup,
    gts: Mapping[Any, Sequence[str]],
    res: Mapping[Any, Sequence[str]],
    *,
    cache_dir: Path,
    work_dir: str | os.PathLike[str],
    runner: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run,
) -> tuple[float, list[float]]:
    """SPICE on tokenised captions, as pycocoevalcap's ``Spice.compute_score`` does it (same input JSON, same
    parsing of the output: corpus score = mean of the per-image "All" F-scores, NaN where SPICE gives none)."""
    import numpy as np

    keys = list(gts)
    work = Path(work_dir)
    input_data = [{"image_id": i, "test": res[key][0], "refs": list(gts[key])} for i, key in enumerate(keys)]
    input_path = work / "spice-input.json"
    output_path = work / "spice-output.json"
    input_path.write_text(json.dumps(input_data, indent=2), encoding="utf-8")
    cache = cache_dir / "spice"
    java_tmp = work / "java-tmp"
    cache.mkdir(parents=True, exist_ok=True)
    java_tmp.mkdir(exist_ok=True)
    command = spice_command(setup, input_path, output_path, cache=cache, tmp=java_tmp)
    proc = runner(command, cwd=work, capture_output=True, check=False)
    if proc.returncode != 0 or not output_path.is_file():
        raise CaptionMetricError(f"SPICE exited {proc.returncode}: {_tail(proc.stderr)}\ncommand: {' '.join(command)}")
    try:
        results = json.loads(output_path.read_text(encoding="utf-8"))
        by_index = {int(item["image_id"]): _float_or_nan(item["scores"]["All"]["f"]) for item in results}
        scores = [by_index[i] for i in range(len(keys))]
    except (ValueError, KeyError, TypeError) as exc:
        raise CaptionMetricError(f"SPICE wrote an unreadable result file ({exc!r})") from exc
    return float(np.mean(np.array(scores))), scores


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _tail(data: bytes | str | None, lines: int = 8) -> str:
    if not data:
        return "(no output)"
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return "\n".join(text.strip().splitlines()[-lines:])
