"""Caption metrics: fidelity to the published pycocoevalcap numbers, Java handling, SPICE, no site-packages writes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_vleval import metrics
from pytest_vleval.metrics import (
    METRICS,
    SPICE_ADD_OPENS,
    CaptionEvaluator,
    CaptionScores,
    JavaStatus,
    MetricSkippedWarning,
    caption_scores,
    evaluate_captions,
    fallback_tokenize,
    java_status,
    ptb_tokenize,
    run_spice,
    spice_command,
    spice_setup,
)

ANCHORS = Path(__file__).parent / "data" / "anchors" / "captions"
REPO = Path(__file__).resolve().parents[1]

# /work/shared/anchors/README.md: pycocoevalcap 1.2 + OpenJDK 17 on jmhessel/clipscore's example.
EXPECTED = {
    "good": {
        "Bleu_1": 0.6666666666419753,
        "Bleu_2": 0.4898979485377655,
        "Bleu_3": 0.3468814950494093,
        "Bleu_4": 3.754749996447119e-05,
        "METEOR": 0.3444057316763406,
        "ROUGE_L": 0.42801048464089075,
        "CIDEr": 0.5637412591757252,
    },
    "bad": {
        "Bleu_1": 0.4814814814636489,
        "Bleu_2": 0.24037008502167395,
        "Bleu_3": 0.13593908197301877,
        "Bleu_4": 1.8597451116765103e-05,
        "METEOR": 0.18607107044266782,
        "ROUGE_L": 0.31211054726129817,
        "CIDEr": 0.2790165307163397,
    },
}
PURE_PYTHON = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")

needs_java = pytest.mark.skipif(not java_status().usable, reason="needs Java (PTBTokenizer, METEOR): java not on PATH")


def load_anchor(name: str) -> dict[str, Any]:
    return json.loads((ANCHORS / f"{name}.json").read_text())


def tree_snapshot(folder: Path) -> dict[str, float]:
    return {str(path): path.stat().st_mtime for path in folder.rglob("*") if "__pycache__" not in path.parts}


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One METEOR start-up for the module: both anchor sets (and a set with an empty caption) scored by one
    evaluator, under a German default locale (which makes pycocoevalcap's own Meteor crash)."""
    if not java_status().usable:
        pytest.skip("needs Java (PTBTokenizer, METEOR): java not on PATH")
    cache = tmp_path_factory.mktemp("vleval-cache")
    package = metrics.pycocoevalcap_dir()
    before = tree_snapshot(package)
    refs = load_anchor("refs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAVA_TOOL_OPTIONS", "-Duser.language=de -Duser.country=DE")
        with CaptionEvaluator(cache_dir=cache) as evaluator:
            results = {name: evaluator.evaluate(refs, load_anchor(f"{name}_captions")) for name in EXPECTED}
            results["empty"] = evaluator.evaluate(refs, {"image1": "", "image2": "a dog."})
            meteor = evaluator._meteor
        yield {
            "results": results,
            "meteor": meteor,
            "package_before": before,
            "package_after": tree_snapshot(package),
            "cache": cache,
        }


@needs_java
@pytest.mark.parametrize("metric", list(EXPECTED["good"]))
@pytest.mark.parametrize("name", list(EXPECTED))
def test_reproduces_published_corpus_scores(official: dict[str, Any], name: str, metric: str) -> None:
    scores: CaptionScores = official["results"][name]
    assert scores.corpus[metric] == pytest.approx(EXPECTED[name][metric], abs=1e-9, rel=0)


@needs_java
def test_reproduces_published_per_image_scores(official: dict[str, Any]) -> None:
    good: CaptionScores = official["results"]["good"]
    # The README gives per-image CIDEr rounded to 8 and 7 decimals, METEOR in full.
    assert good.per_image["image1"]["CIDEr"] == pytest.approx(0.50707322, abs=5e-9, rel=0)
    assert good.per_image["image2"]["CIDEr"] == pytest.approx(0.6204093, abs=5e-8, rel=0)
    assert good.per_image["image1"]["METEOR"] == pytest.approx(0.3328299405496036, abs=1e-9, rel=0)
    assert good.per_image["image2"]["METEOR"] == pytest.approx(0.3555576154297008, abs=1e-9, rel=0)
    # Corpus CIDEr and ROUGE_L are the mean of the per-image scores.
    for metric in ("CIDEr", "ROUGE_L"):
        mean = sum(good.per_image[key][metric] for key in good.per_image) / 2
        assert good.corpus[metric] == pytest.approx(mean, abs=1e-12)


@needs_java
def test_official_run_reports_spice_skipped_with_how_to_fix(official: dict[str, Any]) -> None:
    good: CaptionScores = official["results"]["good"]
    assert list(good.corpus) == [m for m in METRICS if m != "SPICE"]
    assert good.tokenizer == "ptb"
    assert set(good.skipped) == {"SPICE"}
    assert "stanford-corenlp-3.6.0.jar" in good.skipped["SPICE"]
    assert "VLEVAL_SPICE_CORENLP" in good.skipped["SPICE"]
    assert good.failed == {}
    assert "SPICE skipped" in good.message


@needs_java
def test_empty_candidate_is_scored_not_rejected(official: dict[str, Any]) -> None:
    empty: CaptionScores = official["results"]["empty"]
    assert empty.per_image["image1"]["Bleu_1"] == pytest.approx(0.0, abs=1e-9)
    assert empty.per_image["image1"]["METEOR"] == 0.0
    assert empty.per_image["image1"]["CIDEr"] == 0.0
    assert empty.per_image["image2"]["METEOR"] > 0.0


@needs_java
def test_meteor_runs_with_english_locale_and_is_stopped(official: dict[str, Any]) -> None:
    meteor = official["meteor"]
    assert "-Duser.language=en" in meteor.meteor_cmd
    assert "-Duser.country=US" in meteor.meteor_cmd
    assert meteor.meteor_p.poll() is not None, "METEOR process still running after the evaluator closed"


@needs_java
def test_nothing_written_into_site_packages(official: dict[str, Any]) -> None:
    assert official["package_after"] == official["package_before"]
    # Our own temporary files are cleaned up too.
    assert list((official["cache"] / "tmp").iterdir()) == []


def test_caption_scores_returns_corpus_dict(tmp_path: Path) -> None:
    refs = load_anchor("refs")
    result = caption_scores(
        refs, load_anchor("good_captions"), metrics=("Bleu_4", "ROUGE_L", "CIDEr"), cache_dir=tmp_path
    )
    assert list(result) == ["Bleu_4", "ROUGE_L", "CIDEr"]
    if java_status().usable:
        assert result["CIDEr"] == pytest.approx(EXPECTED["good"]["CIDEr"], abs=1e-9)
    full = caption_scores(refs, load_anchor("good_captions"), metrics=("CIDEr",), per_image=True, cache_dir=tmp_path)
    assert isinstance(full, CaptionScores)
    assert set(full.per_image) == {"image1", "image2"}


def test_caption_scores_warns_about_skipped_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLEVAL_SPICE_CORENLP", raising=False)
    with pytest.warns(MetricSkippedWarning, match="SPICE"):
        result = caption_scores(
            load_anchor("refs"), load_anchor("good_captions"), metrics=("Bleu_1", "SPICE"), cache_dir=tmp_path
        )
    assert list(result) == ["Bleu_1"]


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert not java_status().usable


def test_without_java_bleu_rouge_cider_still_run_and_match(no_java: None, tmp_path: Path) -> None:
    scores = evaluate_captions(load_anchor("refs"), load_anchor("bad_captions"), cache_dir=tmp_path)
    assert scores.tokenizer == "fallback"
    assert set(scores.skipped) == {"METEOR", "SPICE"}
    assert "java not found on PATH" in scores.skipped["METEOR"]
    assert "java not found on PATH" in scores.skipped["SPICE"]
    assert "METEOR and SPICE skipped: java not found on PATH" in scores.message
    assert "pure-Python" in scores.message
    # The anchors are plain text, where the fallback tokenises exactly like PTBTokenizer.
    for metric in PURE_PYTHON:
        assert scores.corpus[metric] == pytest.approx(EXPECTED["bad"][metric], abs=1e-9, rel=0)


def test_without_java_caption_scores_warns_once_with_everything(no_java: None, tmp_path: Path) -> None:
    with pytest.warns(MetricSkippedWarning) as record:
        result = caption_scores(load_anchor("refs"), load_anchor("good_captions"), cache_dir=tmp_path)
    assert len(record) == 1
    assert "METEOR" in str(record[0].message) and "pure-Python" in str(record[0].message)
    assert set(result) == set(PURE_PYTHON)


def test_spice_never_downloads(no_java: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("SPICE tried to download CoreNLP")

    monkeypatch.setattr(urllib.request, "urlretrieve", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    scores = evaluate_captions(load_anchor("refs"), load_anchor("good_captions"), metrics=["SPICE"], cache_dir=tmp_path)
    assert scores.corpus == {}
    assert "SPICE" in scores.skipped


def test_java_status_reports_broken_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'Error: could not find libjava.so' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    status = java_status()
    assert not status.usable
    assert "exited 1" in status.reason and "libjava" in status.reason


@pytest.mark.parametrize(
    ("banner", "version", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', "17.0.15", 17),
        ('java version "1.8.0_292"', "1.8.0_292", 8),
        ('openjdk version "25" 2025-09-16', "25", 25),
    ],
)
def test_java_status_parses_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, banner: str, version: str, major: int
) -> None:
    fake = tmp_path / "java"
    fake.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert java_status() == JavaStatus(str(fake.resolve()), version, major, True)


@needs_java
def test_fallback_tokenizer_matches_ptb_on_caption_text(tmp_path: Path) -> None:
    golden = json.loads((REPO / "golden" / "photos" / "captions.json").read_text())
    refs = load_anchor("refs")
    captions = [a["caption"] for a in golden["annotations"]] + [c for v in refs.values() for c in v]
    captions += [
        "A Dog (black) runs.",
        "The dog's toy; \"quoted\" text -- here... isn't it? The cats' bowl",
        "I saw U.S. flags & 3.5 apples at 5:30, $10 each; 50% off!",
        "Mr. Smith said: hi! wait --- no",
        "she'd've said so, cannot wait, gonna go",
        "{curly} [square] a/b x-ray red,blue 1,000 2nd 10:30am",
        "A man riding a wave on top of a surfboard.",
        "Two giraffes standing next to each other in a field .",
        "a CAT  sitting\ton a mat\n next to a dog",
    ]
    official = ptb_tokenize(captions, java=java_status().path or "java", work_dir=tmp_path)
    assert [fallback_tokenize(c) for c in captions] == official


@needs_java
def test_ptb_tokenize_keeps_captions_aligned(tmp_path: Path) -> None:
    captions = ["", "A dog.", "   ", "line one\nline two", "a\u2028b\rc", "...", "Two cats."]
    tokens = ptb_tokenize(captions, java=java_status().path or "java", work_dir=tmp_path)
    assert tokens == ["", "a dog", "", "line one line two", "a b c", "", "two cats"]
    assert list(tmp_path.iterdir()) == []


def test_mismatched_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"no candidate for 1 key\(s\): 'b'.*'c'"):
        evaluate_captions({"a": ["x"], "b": ["y"]}, {"a": "x", "c": "z"})


@pytest.mark.parametrize(
    ("references", "candidates", "error", "match"),
    [
        ({"a": "a dog"}, {"a": "a dog"}, TypeError, "must be a list of strings"),
        ({"a": []}, {"a": "a dog"}, ValueError, "is empty"),
        ({"a": ["a dog"]}, {"a": None}, TypeError, "must be a string"),
        ({}, {}, ValueError, "no captions"),
    ],
)
def test_invalid_inputs(references: Any, candidates: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate_captions(references, candidates)


def test_unknown_metric_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'BLEU'.*valid: Bleu_1, Bleu_2"):
        evaluate_captions({"a": ["x"]}, {"a": "x"}, metrics=["BLEU"])


def test_import_is_cheap() -> None:
    code = (
        "import sys, pytest_vleval.scoring.captions, pytest_vleval.cases.golden; "
        "heavy = [m for m in ('pycocoevalcap', 'torch', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def fake_jars(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


JAVA17 = JavaStatus("/usr/bin/java", "17.0.15", 17, True)
JAVA11 = JavaStatus("/usr/bin/java", "11.0.2", 11, True)
CORENLP = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def test_spice_setup_skip_reasons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLEVAL_SPICE_CORENLP", raising=False)
    reason = spice_setup(JAVA17)
    assert isinstance(reason, str) and "spice/lib" in reason and "VLEVAL_SPICE_CORENLP" in reason
    half = fake_jars(tmp_path / "half", "stanford-corenlp-3.6.0.jar")
    monkeypatch.setenv("VLEVAL_SPICE_CORENLP", str(half))
    reason = spice_setup(JAVA17)
    assert isinstance(reason, str)
    assert "stanford-corenlp-3.6.0-models.jar not found" in reason and str(half) in reason
    full = fake_jars(tmp_path / "full", *CORENLP)
    reason = spice_setup(JAVA17, full)  # the argument wins over the env var
    assert isinstance(reason, str) and "Nashorn" in reason and "nashorn-core" in reason
    assert isinstance(spice_setup(JavaStatus(None, None, None, False, "java not found on PATH"), full), str)


def test_spice_command_on_modern_java(tmp_path: Path) -> None:
    jars = fake_jars(tmp_path / "jars", *CORENLP, "nashorn-core-15.4.jar", "asm-7.3.1.jar", "asm-util-7.3.1.jar")
    setup = spice_setup(JAVA17, jars)
    assert not isinstance(setup, str)
    cache, tmp = tmp_path / "cache" / "spice", tmp_path / "work" / "java-tmp"
    command = spice_command(setup, tmp_path / "in.json", tmp_path / "out.json", cache=cache, tmp=tmp)
    assert command[0] == "/usr/bin/java"
    assert "-Xmx8G" in command
    for flag in (*SPICE_ADD_OPENS, "-Duser.language=en", "-Duser.country=US", f"-Djava.io.tmpdir={tmp}"):
        assert flag in command
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in command
    classpath = command[command.index("-cp") + 1].split(os.pathsep)
    assert classpath[0].endswith("spice-1.0.jar")
    assert {Path(p).name for p in classpath[1:]} == {
        *CORENLP,
        "nashorn-core-15.4.jar",
        "asm-7.3.1.jar",
        "asm-util-7.3.1.jar",
    }
    main = command.index("edu.anu.spice.SpiceScorer")
    assert command[main + 1 :] == [
        str(tmp_path / "in.json"),
        "-cache",
        str(cache),
        "-out",
        str(tmp_path / "out.json"),
        "-subset",
        "-silent",
    ]
    package = str(metrics.pycocoevalcap_dir())
    assert not any(arg.startswith(package) for arg in command[main + 1 :]), "SPICE must not write into site-packages"


def test_spice_command_on_java_8_has_no_add_opens(tmp_path: Path) -> None:
    setup = spice_setup(JavaStatus("/opt/java8/bin/java", "1.8.0_292", 8, True), fake_jars(tmp_path, *CORENLP))
    assert not isinstance(setup, str)
    command = spice_command(setup, "in.json", "out.json", cache=tmp_path, tmp=tmp_path)
    assert not any(arg.startswith("--add-opens") for arg in command)
    assert spice_setup(JAVA11, tmp_path) == setup.__class__(
        java="/usr/bin/java", java_major=11, spice_jar=setup.spice_jar, classpath=setup.classpath
    )


def test_run_spice_parses_output_like_pycocoevalcap(tmp_path: Path) -> None:
    setup = spice_setup(JAVA11, fake_jars(tmp_path / "jars", *CORENLP))
    assert not isinstance(setup, str)
    seen: dict[str, Any] = {}

    def fake_java(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        seen["input"] = json.loads(Path(command[command.index("edu.anu.spice.SpiceScorer") + 1]).read_text())
        seen["cwd"] = kwargs["cwd"]
        out = Path(command[command.index("-out") + 1])
        f_scores = {0: 0.5, 1: "NaN", 2: 0.25}
        out.write_text(
            json.dumps([{"image_id": i, "scores": {"All": {"f": f, "pr": 1, "re": 1}}} for i, f in f_scores.items()])
        )
        return subprocess.CompletedProcess(command, 0, b"", b"")

    gts = {"a": ["a dog"], "b": ["a cat", "the cat"], "c": ["a bird"]}
    res = {"a": ["a dog"], "b": [""], "c": ["a bird flying"]}
    work = tmp_path / "work"
    work.mkdir()
    score, scores = run_spice(setup, gts, res, cache_dir=tmp_path / "cache", work_dir=work, runner=fake_java)
    assert seen["input"][1] == {"image_id": 1, "test": "", "refs": ["a cat", "the cat"]}
    assert seen["cwd"] == work
    assert scores[0] == 0.5 and math.isnan(scores[1]) and scores[2] == 0.25
    assert math.isnan(score)  # pycocoevalcap's np.mean keeps NaN: no silent 0
    assert (tmp_path / "cache" / "spice").is_dir()


def test_run_spice_failure_is_reported(tmp_path: Path) -> None:
    setup = spice_setup(JAVA11, fake_jars(tmp_path / "jars", *CORENLP))
    assert not isinstance(setup, str)

    def crashing_java(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(command, 1, b"", b"Exception in thread main\njava.lang.OutOfMemoryError")

    with pytest.raises(metrics.CaptionMetricError, match=r"(?s)SPICE exited 1: .*OutOfMemoryError"):
        run_spice(setup, {"a": ["x"]}, {"a": ["x"]}, cache_dir=tmp_path, work_dir=tmp_path, runner=crashing_java)


captions = st.lists(
    st.sampled_from("a dog cat man woman red big runs on the of with , . ! ? ' 's n't ( ) - -- ...".split()),
    min_size=1,
    max_size=12,
).map(" ".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=captions, second=captions)
def test_caption_scored_against_itself(no_java: None, tmp_path: Path, first: str, second: str) -> None:
    refs = {"x": [first], "y": [second + " zebra"]}
    scores = evaluate_captions(refs, {"x": first, "y": second + " zebra"}, metrics=PURE_PYTHON, cache_dir=tmp_path)
    for key in ("x", "y"):
        image = scores.per_image[key]
        if fallback_tokenize(refs[key][0]):
            assert image["Bleu_1"] == pytest.approx(1.0, abs=1e-6)
            assert image["ROUGE_L"] == pytest.approx(1.0)
        for metric in PURE_PYTHON:
            low, high = metrics.METRIC_RANGES[metric]
            assert low - 1e-9 <= image[metric] <= high + 1e-9


@given(st.text(max_size=60))
def test_fallback_tokenizer_never_crashes_and_is_normalised(text: str) -> None:
    tokens = fallback_tokenize(text)
    assert tokens == tokens.strip()
    assert "\n" not in tokens and "  " not in tokens
    assert not set(tokens.split()) & {".", ",", "?", "!", ";", ":", "''", "``", "--", "..."}
