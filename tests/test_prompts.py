"""Task prompts as data: what a case's question becomes when it is sent, and where the sent text shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vleval.backends.families import ADAPTERS, GENERIC, GROUNDING_PROMPTS, adapter_by_name
from pytest_vleval.cases.casefile import CaseFileError, load_case_file
from pytest_vleval.cases.prompts import SHORT_ANSWER, TASK_PROMPTS, PromptSpec
from pytest_vleval.predict.asking import Asking
from pytest_vleval.scoring.extract import DEFAULT_STEPS

from .conftest import make_png


def _case_file(tmp_path: Path, body: str) -> Path:
    make_png(tmp_path / "images" / "red.png")
    path = tmp_path / "test_x.yaml"
    path.write_text(body)
    return path


def _turns(tmp_path: Path, body: str) -> list:
    return [case.turns for case in load_case_file(_case_file(tmp_path, body)).cases]


def test_each_task_has_a_cited_default_and_renders_around_the_question() -> None:
    for name, task in TASK_PROMPTS.items():
        assert task.source, name
    assert PromptSpec.for_task("vqa").render("What colour?") == "What colour?" + SHORT_ANSWER
    assert PromptSpec.for_task("chart").render("Q?") == "Q?\nAnswer the question with a single word."
    assert PromptSpec.for_task("count").render("How many?") == "How many?\nAnswer with a single number."
    assert PromptSpec.for_task(None).render("Q?") == "Q?"
    # Only the {question} slot is filled: JSON braces in a template stay as written.
    assert PromptSpec(template='{question} Reply as {"answer": ...}').render("Q?") == 'Q? Reply as {"answer": ...}'


def test_case_keys_override_the_task_default(tmp_path: Path) -> None:
    (plain, task, post, pre, template, caption) = _turns(
        tmp_path,
        """
defaults: {scorer: exact}
cases:
  - {id: plain, image: images/red.png, question: 'What colour?', expected: red}
  - {id: task, image: images/red.png, question: 'What colour?', expected: red, task: vqa}
  - {id: post, image: images/red.png, question: 'What colour?', expected: red, task: vqa, post_prompt: ' One word.'}
  - {id: pre, image: images/red.png, question: 'What colour?', expected: red, pre_prompt: 'Look. '}
  - {id: template, image: images/red.png, question: 'What colour?', expected: red, prompt: 'Q: {question} A:'}
  - {id: caption, image: images/red.png, expected: red, task: caption, scorer: contains}
""",
    )
    sent = [turns[0].sent(GENERIC.refer_prompt) for turns in (plain, task, post, pre, template, caption)]
    assert sent == [
        "What colour?",
        "What colour?" + SHORT_ANSWER,
        "What colour? One word.",
        "Look. What colour?",
        "Q: What colour? A:",
        "Provide a one-sentence caption for the provided image.",
    ]


def test_dialogue_turns_inherit_the_case_prompt(tmp_path: Path) -> None:
    ((first, second),) = _turns(
        tmp_path,
        """
defaults: {task: vqa, scorer: contains}
cases:
  - id: talk
    image: images/red.png
    turns:
      - {question: 'What shape?', expected: circle}
      - {question: 'And its colour?', expected: red, post_prompt: ' Answer in one word.'}
""",
    )
    assert first.sent(GENERIC.refer_prompt) == "What shape?" + SHORT_ANSWER
    assert second.sent(GENERIC.refer_prompt) == "And its colour? Answer in one word."


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("{id: a, image: images/red.png, question: Q, expected: x, task: vqq}", "key 'task': unknown task 'vqq' (did you mean 'vqa'?)"),
        ("{id: a, image: images/red.png, question: Q, expected: x, prompt: 'no slot'}", "key 'prompt': a prompt template must hold {question}"),
        ("{id: a, image: images/red.png, question: Q, expected: x, prompt: '{question}', post_prompt: x}", "give either a prompt template or pre_prompt/post_prompt"),
        ("{id: a, image: images/red.png, question: Q, refer: cat, box: [1, 1, 2, 2], scorer: iou}", "key 'refer': give either a question or refer"),
        ("{id: a, image: images/red.png, refer: cat, expected: cat}", "a refer: case is scored on its box (scorer 'iou'), not 'exact'"),
        ("{id: a, image: images/red.png, refer: cat, box: [1, 1, 2, 2], scorer: iou, post_prompt: x}", "key 'post_prompt': a refer: case is asked in the model family's own grounding words"),
        ("{id: a, image: images/red.png, expected: x}", "key 'question': missing"),
        ("{id: a, image: images/red.png, question: Q, expected: x, answer: [thinking, trim]}", "key 'answer': unknown step(s) 'trim'"),
        ("{id: a, image: images/red.png, question: Q, expected: x, max_pixels: 0}", "key 'max_pixels': expected a positive number of pixels"),
        ("{id: a, image: images/red.png, question: Q, expected: x, min_pixels: 900, max_pixels: 100}", "min_pixels 900 is above max_pixels 100"),
    ],
)  # fmt: skip
def test_prompt_errors_name_the_file_case_and_key(tmp_path: Path, case: str, message: str) -> None:
    path = _case_file(tmp_path, f"cases:\n  - {case}\n")
    with pytest.raises(CaseFileError) as error:
        load_case_file(path)
    assert message in str(error.value)
    assert str(error.value).startswith(f"{path}:2: case 'a'")


def test_every_family_has_its_grounding_wording() -> None:
    for adapter in ADAPTERS:
        if adapter.grounding_prompt:
            assert "{ref}" in adapter.grounding_prompt, adapter.name
    qwen3 = adapter_by_name("Qwen3-VL")
    assert qwen3 is not None and qwen3.refer_prompt("the blue square") == (
        'Locate every object that matches the description "the blue square" in the image. '
        "Report bbox coordinates in JSON format."
    )
    assert adapter_by_name("Qwen3-VL Thinking") is qwen3
    assert (
        adapter_by_name("qwen2.5-vl").refer_prompt("cat")
        == "Locate cat in this image and output the bbox coordinates in JSON format."
    )  # type: ignore[union-attr]
    assert adapter_by_name("LLaVA-1.5").refer_prompt("cat").endswith("this sentence describes: cat")  # type: ignore[union-attr]
    assert adapter_by_name("InternVL").refer_prompt("cat").endswith("describes: <ref>cat</ref>")  # type: ignore[union-attr]
    assert adapter_by_name("MiniGPT-v2").refer_prompt("cat") == "[refer] give me the location of cat"  # type: ignore[union-attr]
    assert GENERIC.refer_prompt("cat") == GROUNDING_PROMPTS["generic"].replace("{ref}", "cat")
    assert adapter_by_name("Gemma 3").refer_prompt("cat") == GENERIC.refer_prompt("cat")  # type: ignore[union-attr]


def test_asking_puts_sent_text_and_limits_into_the_conversation(tmp_path: Path) -> None:
    path = _case_file(
        tmp_path,
        """
cases:
  - {id: box, image: images/red.png, refer: red square, box: [1, 1, 20, 20], scorer: iou, max_pixels: 4096}
  - {id: q, image: images/red.png, question: 'What?', expected: x, task: vqa}
""",
    )
    box, q = load_case_file(path).cases
    asking = Asking(adapter_by_name("Qwen3-VL"), min_pixels=100, max_pixels=10_000)  # type: ignore[arg-type]
    conv = asking.conversation(box, 0, [], 16)
    assert conv.question.startswith('Locate every object that matches the description "red square"')
    assert (conv.min_pixels, conv.max_pixels) == (100, 4096)  # the case's own limit wins
    assert asking.conversation(q, 0, [], 16).question == "What?" + SHORT_ANSWER
    assert Asking().questions(box) == (GENERIC.refer_prompt("red square"),)


SUITE = """
defaults: {scorer: exact, pre_prompt: 'Look. '}
cases:
  - {id: red, image: images/red.png, question: 'say: red', expected: red}
  - {id: wrong, image: images/red.png, question: 'say: Blue.', expected: red}
"""


def test_the_sent_prompt_is_in_the_failure_and_the_record(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", test_sent=SUITE)
    first = fake_project.runpytest("--vl-model=fake", "--vl-json=run.json", "-p", "no:cacheprovider")
    first.assert_outcomes(passed=1, failed=1)
    first.stdout.fnmatch_lines(
        [
            "*question: say: Blue.",
            "*sent:     'Look. say: Blue.'",
            "*answer:   'Blue.'",
            "*scored:   'Blue' (after thinking, fences, label, quotes, period)",
        ]
    )
    turns = [c["turns"][0] for c in json.loads((fake_project.path / "run.json").read_text())["cases"]]
    assert [t["prompt"] for t in turns] == ["Look. say: red", "Look. say: Blue."]
    assert [t["extracted"] for t in turns] == ["red", "Blue"]
    assert [t["answer_steps"] for t in turns] == [list(DEFAULT_STEPS["exact"])] * 2


def test_the_sent_text_and_the_limits_are_part_of_the_answer_cache_key(tmp_path: Path) -> None:
    """Another instruction, another family's wording or other pixel limits is another question."""
    from pytest_vleval.predict.fingerprints import case_fingerprint

    (case,) = load_case_file(_case_file(tmp_path, SUITE.replace("  - {id: wrong", "#"))).cases

    def key(asking: Asking) -> str:
        return case_fingerprint(case, 8, lambda path: "image-hash", asking.questions(case), asking.pixels(case))

    plain = key(Asking())
    assert key(Asking()) == plain
    assert key(Asking(max_pixels=4096)) != plain
    (other,) = load_case_file(
        _case_file(tmp_path, SUITE.replace("'Look. '", "'See. '").replace("  - {id: wrong", "#"))
    ).cases
    assert case_fingerprint(other, 8, lambda path: "image-hash", Asking().questions(other)) != plain


def test_pixel_limits_resize_keeping_the_aspect_ratio(tmp_path: Path) -> None:
    """Models whose processors take no limits get the image resized into them; so do openai:// requests."""
    import base64
    import io

    from PIL import Image

    from pytest_vleval.backends.openai_api import image_url
    from pytest_vleval.backends.pixels import effective_size, model_limits, resize_within, takes_limits

    assert effective_size(4000, 3000, None, 1_003_520) == (1156, 867)  # 4:3 kept, area just under the limit
    assert effective_size(40, 30, 3136, None) == (64, 48)
    assert effective_size(640, 480, 3136, 1_003_520) == (640, 480)  # within: untouched
    big = Image.new("RGB", (400, 300))
    assert resize_within(big, None, 30_000).size == (200, 150)
    assert resize_within(big, None, None) is big
    photo = make_png(tmp_path / "photo.png", (400, 300))
    url = image_url(photo, None, 30_000)
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.size == (200, 150)
    assert image_url(photo) == image_url(photo, None, 10**9)  # within the limits: the file as it is
    assert not takes_limits(object()) and model_limits(object()) == (None, None)


def test_qwen_processors_take_the_limits_themselves() -> None:
    pytest.importorskip("transformers")
    from transformers import AutoProcessor

    from pytest_vleval.backends.hf import image_token_count
    from pytest_vleval.backends.pixels import limited, model_limits, takes_limits
    from pytest_vleval.builtin import BUILTIN_MODELS

    processor = AutoProcessor.from_pretrained(BUILTIN_MODELS["tiny"])
    assert takes_limits(processor) and model_limits(processor) == (4096, 4096)  # tiny sees ~64x64 pixels
    assert image_token_count(processor, 640, 480) == 12
    with limited(processor, 256, 1024):
        assert model_limits(processor) == (256, 1024)
        assert image_token_count(processor, 640, 480) == 2
    assert model_limits(processor) == (4096, 4096)  # restored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vl-max-pixels=0"], "--vl-max-pixels='0': expected a positive integer"),
        (["--vl-min-pixels=lots"], "--vl-min-pixels='lots': expected a positive integer"),
        (["--vl-min-pixels=5000", "--vl-max-pixels=4000"], "--vl-min-pixels=5000 is above --vl-max-pixels=4000"),
    ],
)
def test_bad_pixel_limits_are_usage_errors(fake_project: pytest.Pytester, args: list[str], message: str) -> None:
    result = fake_project.runpytest("--vl-model=fake", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_the_comparison_notes_cases_sent_another_prompt(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", test_sent=SUITE)
    fake_project.runpytest("--vl-model=fake", "--vl-json=base.json", "-p", "no:cacheprovider")
    (fake_project.path / "test_sent.yaml").write_text(SUITE.replace("'Look. '", "'See. '"))
    result = fake_project.runpytest("--vl-model=fake", "--vl-compare=base.json", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["*model fake: 2 case(s) were sent another prompt than in the baseline (test_sent.yaml::red, *::wrong)*"]
    )
