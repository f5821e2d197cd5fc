"""The plugin end to end through pytester: collection, validation, options, marks, fixtures, failure output."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SHAPES = """
defaults:
  scorer: exact
  threshold: 1.0
  max_new_tokens: 8
cases:
  - id: circle-color
    image: images/red.png
    question: "say: red"
    expected: red
  - id: vqa-style
    image: images/red.png
    question: "say: red"
    answers: [red, red, red, dark red, red, red, orange, red, red, red]
    scorer: vqa_accuracy
    threshold: 0.9
  - id: two-pictures
    images: [images/red.png, images/blue.png]
    question: "say: first"
    expected: [first, the first]
  - id: short-dialogue
    image: images/red.png
    turns:
      - question: "say: a circle"
        expected: circle
        scorer: contains
      - question: "say: red"
        expected: red
        scorer: contains
"""


def test_help_lists_options_without_importing_torch() -> None:
    code = textwrap.dedent(
        """
        import sys, pytest, io, contextlib
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            pytest.main(["--help"])
        text = out.getvalue()
        for flag in ("--vl-model", "--vl-device", "--vl-dtype", "--vl-max-new-tokens", "--vl-trust-remote-code",
                     "--vl-batch-size", "vl_case_files"):
            assert flag in text, flag
        import pytest_vleval, pytest_vleval.plugin, pytest_vleval.scoring, pytest_vleval.cases.casefile
        heavy = sorted(m for m in ("torch", "transformers", "torchvision") if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_cases_become_items_per_model(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", test_shapes=SHAPES)
    result = fake_project.runpytest("--collect-only", "-q", "--vl-model=fake-a", "--vl-model=fake-b")
    result.stdout.fnmatch_lines(
        [
            "test_shapes.yaml::circle-color[[]fake-a[]]",
            "test_shapes.yaml::vqa-style[[]fake-a[]]",
            "test_shapes.yaml::two-pictures[[]fake-a[]]",
            "test_shapes.yaml::short-dialogue[[]fake-a[]]",
            "test_shapes.yaml::circle-color[[]fake-b[]]",
            "*8 tests collected*",
        ]
    )


def test_all_cases_pass_and_model_loads_once(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", test_shapes=SHAPES)
    fake_project.makefile(
        ".yaml", test_more="cases:\n  - {id: again, image: images/red.png, question: 'say: x', expected: x}\n"
    )
    result = fake_project.runpytest("-v", "-s", "--vl-model=fake-a", "--vl-model=fake-b", "--vl-batch-size=2")
    result.assert_outcomes(passed=10)
    result.stdout.fnmatch_lines(
        [
            "*model fake-a (Fake, cpu, float32, loaded 1x in*): 5/5 cases passed",
            "*model fake-b (Fake, cpu, float32, loaded 1x in*): 5/5 cases passed",
        ]
    )
    # Model a is freed before model b loads, and each generated in batches of at most 2.
    # (the dialogue's second turn is a generate call of its own)
    out = result.stdout.str()
    assert "closing fake-a after batches [2, 2, 1, 1]" in out
    assert out.index("closing fake-a") < out.index("test_more.yaml::again[fake-b] ") + 40
    assert "closing fake-b after batches [2, 2, 1, 1]" in out


def test_unrelated_yaml_is_never_collected(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", config="this: [is not: a case file")
    fake_project.makefile(".yml", **{"docker-compose": "services: {}"})
    fake_project.makefile(
        ".yaml", test_ok="cases:\n  - {id: a, image: images/red.png, question: 'say: x', expected: x}\n"
    )
    result = fake_project.runpytest("--vl-model=fake")
    result.assert_outcomes(passed=1)


def test_case_file_pattern_is_configurable(fake_project: pytest.Pytester) -> None:
    fake_project.makeini("[pytest]\nvl_case_files = *.cases.yaml\n")
    fake_project.makefile(
        ".cases.yaml", colours="cases:\n  - {id: a, image: images/red.png, question: 'say: x', expected: x}\n"
    )
    fake_project.makefile(".yaml", test_other="not: [a, case, file")
    result = fake_project.runpytest("--vl-model=fake")
    result.assert_outcomes(passed=1)


BAD_FILES = {
    "syntax": ("cases:\n  - id: a\n    question: [unclosed\n", ["*test_bad.yaml:*YAML syntax error*"]),
    "unknown-key": (
        "cases:\n  - {id: a, image: images/red.png, question: q, expected: x, treshold: 0.5}\n",
        ["*test_bad.yaml:2: case 'a': key 'treshold': unknown key in a case (did you mean 'threshold'?)*"],
    ),
    "missing-image": (
        "cases:\n  - {id: a, image: images/nope.png, question: q, expected: x}\n",
        ["*case 'a': key 'image': image not found: images/nope.png*"],
    ),
    "wrong-type": (
        "cases:\n  - {id: a, image: images/red.png, question: q, expected: x, max_new_tokens: many}\n",
        ["*case 'a': key 'max_new_tokens': expected a positive integer, got 'many'*"],
    ),
    "duplicate-id": (
        "cases:\n  - {id: a, image: images/red.png, question: q, expected: x}\n"
        "  - {id: a, image: images/red.png, question: q, expected: y}\n",
        ["*test_bad.yaml:3: case 'a': key 'id': duplicate id (also case #1)*"],
    ),
    "threshold-range": (
        "cases:\n  - {id: a, image: images/red.png, question: q, expected: x, threshold: 1.5}\n",
        ["*case 'a': key 'threshold': 1.5 is outside the range of scorer 'exact' [[]0, 1[]]*"],
    ),
    "unknown-scorer": (
        "cases:\n  - {id: a, image: images/red.png, question: q, expected: x, scorer: exakt}\n",
        ["*case 'a': key 'scorer': unknown scorer 'exakt' (did you mean 'exact'?)*"],
    ),
    "wrong-reference": (
        "cases:\n  - {id: a, image: images/red.png, question: q, expected: x, scorer: vqa_accuracy}\n",
        ["*case 'a': key 'expected': scorer 'vqa_accuracy' reads 'answers', not 'expected'*"],
    ),
    "yes-boolean": (
        "cases:\n  - {id: a, image: images/red.png, question: Is it red, expected: yes}\n",
        ["*case 'a': key 'expected': expected text, got the boolean True*quote the answer*"],
    ),
    "bad-regex": (
        "cases:\n  - {id: a, image: images/red.png, question: q, expected: '(red', scorer: regex}\n",
        ["*case 'a': key 'expected':*(red*"],
    ),
    "duplicate-key": (
        "cases:\n  - id: a\n    image: images/red.png\n    question: q\n    expected: x\n    expected: y\n",
        [
            "*test_bad.yaml:6: YAML syntax error: found duplicate key 'expected' (first at line 5)*",
            "*each key may appear once*",
        ],
    ),
    "no-cases": (
        "defaults: {scorer: exact}\n",
        ["*test_bad.yaml: key 'cases': expected a non-empty list of cases*"],
    ),
}


def test_a_question_mark_inside_a_flow_mapping(tmp_path: Path) -> None:
    """libyaml (the C parser, used when PyYAML has it) reads ``question: Is it red?, ...`` inside ``{...}`` as
    written; PyYAML's pure-Python parser refuses it, and then the error carries the hint."""
    import yaml

    from pytest_vleval.cases.yaml_loader import YamlError, load_yaml

    text = "cases:\n  - {id: a, image: images/red.png, question: Is it red?, expected: 'yes'}\n"
    if getattr(yaml, "__with_libyaml__", False):
        case = load_yaml(text, tmp_path / "t.yaml")["cases"][0]
        assert (case["question"], case["expected"], case.line) == ("Is it red?", "yes", 2)
    else:
        with pytest.raises(YamlError) as info:
            load_yaml(text, tmp_path / "t.yaml")
        assert "a '?' inside a {...} flow mapping" in str(info.value.hint)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_invalid_file_is_one_collection_error_others_run(fake_project: pytest.Pytester, kind: str) -> None:
    content, expected = BAD_FILES[kind]
    fake_project.makefile(".yaml", test_bad=content)
    fake_project.makefile(
        ".yaml", test_good="cases:\n  - {id: ok, image: images/red.png, question: 'say: x', expected: x}\n"
    )
    result = fake_project.runpytest("--vl-model=fake", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting test_bad.yaml*", *expected])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vl-device=tpu"], "*--vl-device='tpu': expected one of auto, cpu, cuda, cuda:N, mps*"),
        (["--vl-dtype=int3"], "*--vl-dtype='int3': expected one of auto, float32, bfloat16, float16*"),
        (["--vl-max-new-tokens=0"], "*--vl-max-new-tokens='0': expected a positive integer*"),
        (["--vl-batch-size=big"], "*--vl-batch-size='big': expected a positive integer*"),
    ],
)
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_settings_and_command_line_override(fake_project: pytest.Pytester) -> None:
    fake_project.makeini("[pytest]\nvl_models =\n    fake-ini\nvl_device = tpu\n")
    fake_project.makefile(
        ".yaml", test_a="cases:\n  - {id: a, image: images/red.png, question: 'say: x', expected: x}\n"
    )
    result = fake_project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result = fake_project.runpytest("--vl-device=cpu", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_a.yaml::a[[]fake-ini[]]"])


def test_marks_skip_xfail_and_tags(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(
        ".yaml",
        test_marks="""
defaults: {tags: [shapes]}
cases:
  - {id: skipped, image: images/red.png, question: 'say: x', expected: x, skip: not ready}
  - {id: known-bad, image: images/red.png, question: 'say: y', expected: x, xfail: model confuses them}
  - {id: colour, image: images/red.png, question: 'say: x', expected: x, tags: [colour]}
  - {id: plain, image: images/red.png, question: 'say: x', expected: x}
""",
    )
    result = fake_project.runpytest("--vl-model=fake", "-rsx", "--strict-markers")
    result.assert_outcomes(passed=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*not ready*", "*model confuses them*"])
    result = fake_project.runpytest("--vl-model=fake", "-m", "colour", "--strict-markers")
    result.assert_outcomes(passed=1)
    result = fake_project.runpytest("--vl-model=fake", "-m", "vleval and not colour", "-k", "plain")
    result.assert_outcomes(passed=1)
    # a case's tags add to the defaults' (the README says so): 'colour' is also a 'shapes' case
    result = fake_project.runpytest("--vl-model=fake", "-m", "shapes and colour")
    result.assert_outcomes(passed=1)


def test_cases_use_fixtures(fake_project: pytest.Pytester) -> None:
    fake_project.makeconftest(
        fake_project.path.joinpath("conftest.py").read_text()
        + textwrap.dedent(
            """
            @pytest.fixture
            def warm_cache(request):
                print(f"fixture for {request.node.nodeid}")
                yield
            """
        )
    )
    fake_project.makefile(
        ".yaml",
        test_fx="cases:\n  - {id: a, image: images/red.png, question: 'say: x', expected: x, fixtures: [warm_cache]}\n",
    )
    result = fake_project.runpytest("--vl-model=fake", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*fixture for test_fx.yaml::a[[]fake[]]*"])
    fake_project.makefile(
        ".yaml",
        test_fx="cases:\n  - {id: a, image: images/red.png, question: q, expected: x, fixtures: [nope]}\n",
    )
    result = fake_project.runpytest("--vl-model=fake")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'nope' not found*"])


def test_failure_shows_case_not_traceback(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(
        ".yaml",
        test_shapes=SHAPES.replace('say: red"\n    expected: red', 'say: blue"\n    expected: red', 1),
    )
    result = fake_project.runpytest("--vl-model=fake")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*case 'circle-color' on model 'fake' (test_shapes.yaml:6)",
            "*image:    images/red.png",
            "*question: say: blue",
            "*expected: 'red'",
            "*answer:   'blue'",
            "*score:    0.000 < threshold 1 (exact) FAILED",
            "*FAILED test_shapes.yaml::circle-color[[]fake[]]*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "def vleval_case" not in result.stdout.str()


def test_dialogue_failure_names_the_turn(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(
        ".yaml",
        test_d=SHAPES.replace(
            '- question: "say: red"\n        expected: red', '- question: "say: green"\n        expected: red'
        ),
    )
    result = fake_project.runpytest("--vl-model=fake", "-k", "dialogue")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*turn 1/2*",
            "*score:    1.000 >= threshold 1 (contains) ok",
            "*turn 2/2*",
            "*answer:   'green'",
            "*FAILED",
        ]
    )


def test_a_case_that_breaks_the_model_fails_alone(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(
        ".yaml",
        test_e="""
cases:
  - {id: a, image: images/red.png, question: 'say: x', expected: x}
  - {id: b, image: images/red.png, question: 'crash', expected: x}
  - {id: c, image: images/red.png, question: 'say: x', expected: x}
""",
    )
    result = fake_project.runpytest("--vl-model=fake", "--vl-batch-size=3")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*error:    model 'fake' failed on turn 1: ValueError: this case breaks the model*"])


def test_out_of_memory_batches_are_halved(fake_project: pytest.Pytester) -> None:
    cases = "\n".join(f"  - {{id: c{i}, image: images/red.png, question: 'oom say: x', expected: x}}" for i in range(4))
    fake_project.makefile(".yaml", test_oom="cases:\n" + cases + "\n")
    result = fake_project.runpytest("--vl-model=fake", "--vl-batch-size=4", "-s")
    result.assert_outcomes(passed=4)
    assert "closing fake after batches [4, 2, 1, 1, 2, 1, 1]" in result.stdout.str()


def test_model_that_fails_to_load_fails_its_cases_clearly(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(
        ".yaml",
        test_a="cases:\n  - {id: a, image: images/red.png, question: q, expected: x}\n  - {id: b, image: images/red.png, question: q, expected: x}\n",
    )
    result = fake_project.runpytest("--vl-model=no-such-org/no-such-model")  # a hub id; the suite is offline
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*model 'no-such-model' could not be loaded: cannot load model*HF_HUB_OFFLINE=1 is set*",
            "*could not be loaded (the reason is in the report of test_a.yaml::a?no-such-model?)",
        ]
    )


def test_vl_model_fixture_in_python_tests(fake_project: pytest.Pytester) -> None:
    fake_project.makepyfile(
        test_py="""
        from pathlib import Path
        from pytest_vleval.models import Conversation

        SEEN = {}

        def test_direct(vl_model):
            image = Path(__file__).parent / "images" / "red.png"
            assert vl_model.generate([Conversation(images=(image,), question="say: hi")]) == ["hi"]
            SEEN.setdefault(vl_model.spec.label, vl_model)

        def test_same_object(vl_model):
            # Loaded once per session and model: the second test gets the very object the first one did.
            assert SEEN[vl_model.spec.label] is vl_model
        """
    )
    result = fake_project.runpytest("--vl-model=fake-a", "--vl-model=fake-b", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*test_direct[[]fake-a[]]*", "*test_same_object[[]fake-a[]]*", "*test_direct[[]fake-b[]]*"]
    )


def test_vqa_threshold_unreachable_with_few_answers(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(
        ".yaml",
        test_v="cases:\n  - {id: a, image: images/red.png, question: q, answers: [red, red], scorer: vqa_accuracy, threshold: 0.9}\n",
    )
    result = fake_project.runpytest("--vl-model=fake")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*case 'a': key 'threshold': 0.9 cannot be reached with 2 answers (best possible vqa_accuracy 0.333333)*"]
    )
