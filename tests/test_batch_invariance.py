"""Answers do not depend on the batch: batch size N (sorted by length, left padded) equals batch size 1.

Proven on a random-weight Qwen3-VL and on the built-in model, with cases generated like the bundled suite
(every task: captions, colours, counting, OCR strips, charts, two-image questions, dialogues, grounding);
and `--vl-check-batch-invariance` lets a user check it on their own model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_vleval.builtin.scenes import HELD_OUT_SEED_BASE, TASKS, make_example
from pytest_vleval.cases.casefile import Case, load_case_file
from pytest_vleval.models import BUILTIN_DIR, ModelSpec, resolve_model
from pytest_vleval.predict.pool import ModelPool
from pytest_vleval.predict.predictor import BatchPredictor

from .conftest import FAKE_BACKEND_CONFTEST, make_png
from .conftest import vl_options as options

REPO = Path(__file__).resolve().parents[1]
BUDGETS = {"caption": 12, "grounding": 16}


def write_scene_suite(root: Path, per_task: int, seed: int = 7) -> Path:
    """Case files like the bundled suite's, one per task, from held-out procedural scenes."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for t, task in enumerate(TASKS):
        cases = []
        for i in range(per_task):
            example = make_example(task, HELD_OUT_SEED_BASE + seed * 100_000 + t * 1000 + i)
            names = []
            for j, scene in enumerate(example.scenes):
                names.append(f"images/{task}_{i}_{j}.png")
                scene.image.save(root / names[-1])
            case: dict = {"id": f"{task}-{i}", "images": names}
            turns = [{"question": q, "expected": "^.*$"} for q, _ in example.turns]
            if len(turns) == 1:
                case.update(turns[0])
            else:
                case["turns"] = turns
            cases.append(case)
        doc = {"defaults": {"scorer": "regex", "max_new_tokens": BUDGETS.get(task, 8)}, "cases": cases}
        (root / f"test_{task}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def load_suite(root: Path) -> list[Case]:
    return [case for path in sorted(root.glob("test_*.yaml")) for case in load_case_file(path).cases]


def answers_at(backend, spec: ModelSpec, cases: list[Case], batch_size: int) -> dict[str, list[str]]:
    predictor = BatchPredictor(ModelPool(lambda s: backend), lambda b: batch_size, 8)
    predictor.plan([(spec, c) for c in cases])
    out = {}
    for case in cases:
        prediction = predictor.predict(spec, case)
        assert prediction.error is None, prediction.error
        out[f"{case.path.name}::{case.id}"] = prediction.answers
    assert max(predictor.batches) == min(batch_size, len(cases))
    return out


def assert_invariant(model_dir: Path, cases: list[Case], batch_size: int) -> None:
    from pytest_vleval.backends.hf import TransformersBackend
    from pytest_vleval.models import Conversation

    spec = resolve_model(str(model_dir))
    backend = TransformersBackend(spec, options())
    try:
        # The length batches are sorted by is the real input length (without reading pixels).
        for case in cases[:: max(1, len(cases) // 6)]:
            conv = Conversation(images=case.images, question=case.turns[0].question)
            assert backend.input_length(conv) == backend.prepare([conv])["input_ids"].shape[1], case.id
        alone = answers_at(backend, spec, cases, 1)
        batched = answers_at(backend, spec, cases, batch_size)
    finally:
        backend.close()
    assert len({tuple(a) for a in alone.values()}) > len(alone) // 4, "answers should vary with the input"
    differ = {k: (batched[k], alone[k]) for k in alone if batched[k] != alone[k]}
    assert not differ, f"{len(differ)} of {len(alone)} cases differ at batch size {batch_size}: {differ}"


def test_random_model_answers_do_not_depend_on_the_batch(random_qwen3vl: Path, tmp_path: Path) -> None:
    cases = load_suite(write_scene_suite(tmp_path / "suite", per_task=2))
    assert {len(c.images) for c in cases} == {1, 2} and {len(c.turns) for c in cases} == {1, 2}
    assert_invariant(random_qwen3vl, cases, batch_size=8)


def test_builtin_model_answers_do_not_depend_on_the_batch(tmp_path: Path) -> None:
    model = BUILTIN_DIR / "tiny"
    if not any(model.glob("*.safetensors")):
        pytest.skip(f"the built-in model has no weights yet ({model})")
    bundled = REPO / "test_cases"
    suite = bundled if any(bundled.glob("test_*.yaml")) else write_scene_suite(tmp_path / "suite", per_task=4)
    assert_invariant(model, load_suite(suite), batch_size=8)


def test_check_option_passes_on_a_batch_invariant_model(pytester: pytest.Pytester, random_qwen3vl: Path) -> None:
    write_scene_suite(pytester.path, per_task=1)
    result = pytester.runpytest(f"--vl-model={random_qwen3vl}", "--vl-batch-size=4", "--vl-check-batch-invariance")
    result.assert_outcomes(passed=len(TASKS))
    result.stdout.fnmatch_lines(
        [f"*batch invariance: 0 of {len(TASKS)} cases generated in batches answered differently alone"]
    )


BATCH_DEPENDENT = FAKE_BACKEND_CONFTEST.replace(
    "        return answers\n",
    "        return [a + ' (in a crowd)' if 'fragile' in a and len(conversations) > 1 else a for a in answers]\n",
)


def test_check_option_names_and_fails_the_cases_that_differ(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(BATCH_DEPENDENT)
    make_png(pytester.path / "images" / "red.png")
    pytester.makefile(
        ".yaml",
        test_inv="""
defaults: {scorer: contains}
cases:
  - {id: steady, image: images/red.png, question: 'say: red', expected: red}
  - {id: fragile, image: images/red.png, question: 'say: fragile red', expected: red}
  - {id: also-steady, image: images/red.png, question: 'say: blue', expected: blue}
""",
    )
    plain = pytester.runpytest("--vl-model=fake", "--vl-no-cache")
    plain.assert_outcomes(passed=3)  # the difference goes unnoticed without the check
    result = pytester.runpytest("--vl-model=fake", "--vl-no-cache", "--vl-check-batch-invariance")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*case 'fragile' on model 'fake'*",
            "*error:    batch invariance: turn 1 answered 'fragile red (in a crowd)' in a batch of 3 but "
            "'fragile red' alone (--vl-check-batch-invariance)",
            "*batch invariance: 1 of 3 cases generated in batches answered differently alone",
            "*test_inv.yaml::fragile[[]fake[]] turn 1: 'fragile red (in a crowd)' in a batch of 3, 'fragile red' alone",
            "FAILED test_inv.yaml::fragile[[]fake[]]*",
        ]
    )
