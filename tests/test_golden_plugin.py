"""Golden caption sets through the plugin: one test per gated metric, scored once per (set, model)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from .conftest import make_png

REFERENCES = {
    1: [
        "a red circle on a white background",
        "a red circle",
        "one red circle in the middle",
        "a small red circle",
        "a round red shape",
    ],
    2: [
        "a blue square next to a green triangle",
        "a blue square and a green triangle",
        "a square and a triangle",
        "blue square left of a green triangle",
        "two shapes: a blue square and a green triangle",
    ],
    3: [
        "three yellow stars",
        "three stars in yellow",
        "a group of three yellow stars",
        "yellow stars, three of them",
        "three small yellow stars",
    ],
}


def make_set(pytester: pytest.Pytester, captions: dict[int, str], thresholds: str, name: str = "shapes") -> None:
    folder = pytester.path / "golden" / name
    coco = {"images": [], "annotations": []}
    n = 0
    for image_id, refs in REFERENCES.items():
        image = make_png(folder / "images" / f"{image_id:03d}.png", color=(image_id * 60, 40, 90))
        image.with_suffix(".caption").write_text(captions[image_id])
        coco["images"].append({"id": image_id, "file_name": f"{image_id:03d}.png"})
        for ref in refs:
            n += 1
            coco["annotations"].append({"id": n, "image_id": image_id, "caption": ref})
    (folder / "captions.json").write_text(json.dumps(coco))
    (folder / "golden.yaml").write_text(
        f"name: {name}\nprompt: Describe the image.\nreferences: captions.json\nimages_dir: images\n"
        f"max_new_tokens: 16\nthresholds: {thresholds}\n"
    )


GOOD = {1: "a red circle", 2: "a blue square and a green triangle", 3: "three yellow stars"}
BAD = {1: "a dog", 2: "a cat on a sofa", 3: "three yellow stars"}


def test_gated_metrics_are_tests_and_scored_once(fake_project: pytest.Pytester) -> None:
    make_set(fake_project, GOOD, "{CIDEr: 0.5, Bleu_1: 0.5, METEOR: 0.2, SPICE: 0.1}")
    result = fake_project.runpytest("golden", "--vl-model=fake", "-v", "-s", "-rs")
    result.assert_outcomes(passed=3, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*golden/shapes/golden.yaml::CIDEr[[]fake[]] PASSED*",
            "*golden/shapes/golden.yaml::Bleu_1[[]fake[]] PASSED*",
            "*golden/shapes/golden.yaml::METEOR[[]fake[]] PASSED*",
            "*golden shapes on fake: Bleu_1 *CIDEr*",
            "*SPICE not run: *CoreNLP*",
            "SKIPPED [[]1[]] golden/shapes/golden.yaml:1: SPICE skipped: *VLEVAL_SPICE_CORENLP*",
        ]
    )
    # Three images, captioned once in one batch, whatever the number of gated metrics.
    assert "closing fake after batches [3]" in result.stdout.str()


def test_golden_scores_reach_the_xdist_controller_summary(fake_project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    make_set(fake_project, GOOD, "{CIDEr: 0.5, Bleu_1: 0.5, SPICE: 0.1}")
    result = fake_project.runpytest("golden", "--vl-model=fake", "-n", "2")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*vleval summary*", "golden shapes on fake: Bleu_1 *CIDEr*", "*SPICE not run: *"])
    assert result.stdout.str().count("golden shapes on fake:") == 1


def no_java(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-Python tokenizer and no METEOR: these tests are about where the scores go, not their values."""
    empty = pytester.path / "no-java-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_an_xdist_record_holds_each_golden_set_once(
    fake_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both workers may score the set (each runs some of its metrics); the record keeps one full entry."""
    pytest.importorskip("xdist")
    no_java(fake_project, monkeypatch)
    make_set(fake_project, GOOD, "{CIDEr: 0.5, Bleu_1: 0.5, ROUGE_L: 0.3, Bleu_4: 0.1}")
    result = fake_project.runpytest("golden", "--vl-model=fake", "-n", "2", "--vl-json=run.json")
    result.assert_outcomes(passed=4)
    record = json.loads((fake_project.path / "run.json").read_text())
    (entry,) = record["golden"]
    assert entry["manifest"] == "golden/shapes/golden.yaml" and entry["thresholds"]["CIDEr"] == 0.5
    assert set(entry["per_image"]) == {"1", "2", "3"} and entry["prompt"] == "Describe the image."
    assert entry["images"]["1"]["path"] == "golden/shapes/images/001.png"
    assert entry["images"]["1"]["references"] == REFERENCES[1]
    assert set(entry["gated"]) == {"CIDEr", "Bleu_1", "ROUGE_L", "Bleu_4"}


def test_the_report_shows_a_golden_set_from_the_record_alone(
    fake_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record carries the set's prompt, images and references: a saved record renders them after the
    manifest is gone (nothing is read back from the manifest when the report is written)."""
    no_java(fake_project, monkeypatch)
    make_set(fake_project, GOOD, "{CIDEr: 0.5}")
    fake_project.runpytest("golden", "--vl-model=fake", "--vl-json=run.json").assert_outcomes(passed=1)
    (fake_project.path / "golden" / "shapes" / "golden.yaml").unlink()
    (fake_project.path / "golden" / "shapes" / "captions.json").unlink()
    from pytest_vleval.report.cli import main

    args = ["report", "run.json", "-o", "r.html", "--root", str(fake_project.path), "--no-plots"]
    with contextlib.chdir(fake_project.path):
        assert main(args, out=io.StringIO()) == 0
    page = (fake_project.path / "r.html").read_text()
    assert "Describe the image." in page and REFERENCES[2][0] in page
    assert '<span class="thumb missing"' not in page  # every image found


def test_a_metric_below_threshold_fails_by_name(fake_project: pytest.Pytester) -> None:
    make_set(fake_project, BAD, "{CIDEr: 2.0, Bleu_1: 0.1}")
    result = fake_project.runpytest("golden", "--vl-model=fake")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*golden set 'shapes' on model 'fake': CIDEr 1.3* < threshold 2 (corpus score over 3 images)",
            "*lowest CIDEr per image:",
            "*image 1 (golden/shapes/images/001.png): CIDEr 0.000: 'a dog' vs 'a red circle on a white background' (+4 more)",
            "*FAILED golden/shapes/golden.yaml::CIDEr[[]fake[]]*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_set_without_thresholds_records_its_scores(fake_project: pytest.Pytester) -> None:
    make_set(fake_project, GOOD, "{}", name="photos")
    result = fake_project.runpytest("golden", "--vl-model=fake", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*golden.yaml::scores[[]fake[]] PASSED*", "*golden photos on fake: Bleu_1*CIDEr*"])


def test_broken_manifest_is_a_collection_error_for_that_set_only(fake_project: pytest.Pytester) -> None:
    make_set(fake_project, GOOD, "{CIDEr: 0.5}")
    make_set(fake_project, GOOD, "{CIDEX: 0.5}", name="broken")
    result = fake_project.runpytest("golden", "--vl-model=fake", "--continue-on-collection-errors", "-k", "not METEOR")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting golden/broken/golden.yaml*", "*CIDEX*"])


def test_a_skip_reason_is_told_once_per_run() -> None:
    """SPICE's ~400-character reason used to repeat for every golden set and model."""
    from pytest_vleval.report.terminal import golden_lines

    why = "SPICE needs the Stanford CoreNLP 3.6.0 jars; ... pytest-vleval never downloads them"
    results = [
        {"set": name, "model": model, "corpus": {"CIDEr": 0.5}, "skipped": {"SPICE": why}}
        for name in ("shapes", "photos")
        for model in ("a", "b")
    ]
    lines = golden_lines(results)
    assert sum(why in line for line in lines) == 1
    assert lines[1] == f"  SPICE not run: {why}"
    assert lines.count("  SPICE not run (as above)") == 3
