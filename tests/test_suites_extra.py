"""The measurement suites in ``suites/`` (``builtin/suite_extra.py``): they are what the generator writes (so the
README's numbers are of these files), the long dialogues are shaped as documented, and each suite runs on the
built-in model with the outcome the README states: tiny's dialogue depth, CircularEval on the MMBench-style TSV,
and the judged suite graded by the built-in judge."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from pytest_vleval.builtin.suite_extra import DIALOGUE_LENGTHS, long_dialogue, write_extra_suites

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"


def test_the_bundled_suites_are_what_the_generator_writes(tmp_path: Path) -> None:
    write_extra_suites(tmp_path)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    shipped = sorted(p.relative_to(SUITES) for p in SUITES.rglob("*") if p.is_file())
    assert written == shipped
    for name in written:
        assert (tmp_path / name).read_bytes() == (SUITES / name).read_bytes(), name


@pytest.mark.parametrize("length", DIALOGUE_LENGTHS)
def test_long_dialogues_alternate_shapes_and_refer_back(length: int) -> None:
    for seed in range(20):
        example = long_dialogue(seed, length)
        assert len(example.turns) == length and len(example.scenes) == 1
        (scene,) = example.scenes
        kinds = {s.kind for s in scene.shapes}
        questions = [q for q, _ in example.turns]
        # Every second turn refers back to the shape the turn before asked about.
        assert all(q.startswith("And ") for q in questions[1::2])
        assert all(not q.startswith("And ") for q in questions[0::2])
        left, right = sorted(scene.shapes, key=lambda s: s.box[0] + s.box[2])
        on_side = {"left": left.kind, "right": right.kind}
        # The shape each pair is about: named by kind ("What colour is the circle?") or by side.
        subjects = [
            on_side[q.split("on the ")[1].rstrip("?")] if "on the" in q else next(k for k in kinds if k in q)
            for q in questions[0::2]
        ]
        # The follow-up's answer is about the same shape: its colour, or its side.
        for subject, (follow, answer) in zip(subjects, example.turns[1::2], strict=False):
            shape = left if subject == left.kind else right
            side = "left" if shape is left else "right"
            assert answer == (shape.colour if follow == "And what colour is it?" else side), (seed, follow)
        assert all(a != b for a, b in itertools.pairwise(subjects))


def test_tiny_holds_two_turns_and_drifts_after(pytester: pytest.Pytester) -> None:
    """The built-in model was trained on two-turn dialogues: it holds those, then drifts (the README's numbers)."""
    result = pytester.runpytest_subprocess(str(SUITES / "dialogues"), f"--rootdir={ROOT}", "--vl-no-cache",
                                f"--vl-json={pytester.path / 'run.json'}", "-p", "no:cacheprovider")  # fmt: skip
    record = json.loads((pytester.path / "run.json").read_text())
    depth = record["models"][0]["dialogue"]
    assert depth["dialogues"] == 30
    assert 2.0 <= depth["turns_held_mean"] < 3.0
    assert depth["held_all"] < 10, "tiny should not hold every long dialogue"
    result.stdout.fnmatch_lines(["*dialogue depth: 30 dialogues, 2.* turns held on average*"])
