"""Every HF-native family through the whole plugin path, on tiny random checkpoints built offline.

Each family's checkpoint (tests/family_models.py) is built once per session from the family's own config,
tokenizer, processor and chat template classes, then run by pytester: collection -> batched prediction ->
scoring. Random weights answer nonsense, so those cases score with a regex that accepts anything; what is
checked is that every family runs, batches, and skips (not crashes on) what it cannot take. Grounding is
checked with known-good answers in each Qwen family's own box convention, read through the real processor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# pytester drops the modules first imported during a test (its body and its in-process runs), and torch
# registers operator libraries that cannot be registered twice: import the ones transformers pulls in once,
# at collection. Models are built in session fixtures, set up before pytester's snapshot, for the same reason.
import torch.distributed._functional_collectives
import torch.distributed.tensor  # noqa: F401

from pytest_vleval.backends.families import ADAPTERS, GENERIC, FamilyAdapter, adapter_for_config, box_context
from pytest_vleval.models import ALIASES, Conversation, resolve_model
from pytest_vleval.scoring import box_iou, parse_box

from .conftest import make_png
from .family_models import BUILDERS

# Family checkpoint -> (adapter name, multi-image, multi-turn).
FAMILIES: dict[str, tuple[str, bool, bool]] = {
    "qwen3_vl": ("Qwen3-VL", True, True),
    "qwen3_vl_thinking": ("Qwen3-VL Thinking", True, True),
    "qwen3_vl_moe": ("Qwen3-VL", True, True),
    "qwen2_5_vl": ("Qwen2.5-VL", True, True),
    "qwen2_vl": ("Qwen2-VL", True, True),
    "llava": ("LLaVA-1.5", False, True),
    "llava_next": ("LLaVA-NeXT", False, True),
    "llava_onevision": ("LLaVA-OneVision", True, True),
    "blip2_opt": ("BLIP-2", False, False),
    "blip2_flan_t5": ("BLIP-2", False, False),
    "instructblip": ("InstructBLIP", False, False),
    "idefics3": ("Idefics3", True, True),
    "smolvlm": ("SmolVLM", True, True),
    "internvl": ("InternVL", True, True),
    "gemma3": ("Gemma 3", True, True),
}

SUITE = """
defaults: {scorer: regex, max_new_tokens: 4}
cases:
  - {id: one-image, image: images/red.png, question: 'What colour is the shape?', expected: '(?s).*'}
  - {id: two-images, images: [images/red.png, images/blue.png], question: 'Which one is blue?', expected: '(?s).*'}
  - id: dialogue
    image: images/blue.png
    turns:
      - {question: 'What shape is it?', expected: '(?s).*'}
      - {question: 'And its colour?', expected: '(?s).*'}
"""


@pytest.fixture(scope="session")
def family_builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """Builds a family's checkpoint on first use, once per session (one thread: the CPU is shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = BUILDERS[name](root / name)
        return built[name]

    yield get
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def family_model(request: pytest.FixtureRequest, family_builds: Callable[[str], Path]) -> Path:
    return family_builds(request.param)


@pytest.fixture(scope="session")
def qwen_models(family_builds: Callable[[str], Path]) -> dict[str, Path]:
    return {name: family_builds(name) for name in QWEN_FAMILIES}


def _project(pytester: pytest.Pytester) -> pytest.Pytester:
    make_png(pytester.path / "images" / "red.png", (64, 48), (220, 20, 20))
    make_png(pytester.path / "images" / "blue.png", (40, 60), (20, 20, 220))
    return pytester


@pytest.mark.parametrize("family_model", list(FAMILIES), indirect=True)
def test_family_runs_through_the_plugin(pytester: pytest.Pytester, family_model: Path) -> None:
    name = family_model.name
    family, multi_image, multi_turn = FAMILIES[name]
    model = family_model
    _project(pytester).makefile(".yaml", test_suite=SUITE)
    result = pytester.runpytest(f"--vl-model={model}", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1 + multi_image + multi_turn, skipped=2 - multi_image - multi_turn)
    if not multi_image:
        result.stdout.fnmatch_lines(
            [f"SKIPPED*model {name}: {family} takes one image per conversation; this case has 2*"]
        )
    if not multi_turn:
        result.stdout.fnmatch_lines([f"SKIPPED*model {name}: {family} does not hold a multi-turn dialogue*"])
    result.stdout.fnmatch_lines(
        [
            f"model {name} (*, cpu, float32, loaded 1x in *): {1 + multi_image + multi_turn}/"
            f"{1 + multi_image + multi_turn} cases passed",
            "*generated*in 1 batches*",  # the three cases in one batch
        ]
    )


# --- grounding in each Qwen family's own convention ------------------------------------------------

# A 640x480 scene whose red rectangle is [160, 120, 480, 360] in original pixels. Qwen2.5-VL's processor
# resizes it to 644x476 (sides rounded to multiples of 28), where the rectangle is [161, 119, 483, 357].
BOX = [160, 120, 480, 360]
KNOWN_ANSWERS = {
    "Qwen3-VL": '```json\n[{"bbox_2d": [250, 250, 750, 750], "label": "red rectangle"}]\n```',
    # The reasoning holds a wrong box that only a correctly stripped answer ignores.
    "Qwen3-VL Thinking": 'First guess {"bbox_2d": [0, 0, 100, 100]}; no, it is centred.\n</think>\n\n'
    '{"bbox_2d": [250, 250, 750, 750], "label": "red rectangle"}',
    "Qwen2.5-VL": '[{"bbox_2d": [161, 119, 483, 357], "label": "red rectangle"}]',
    "Qwen2-VL": "<|object_ref_start|>the red rectangle<|object_ref_end|><|box_start|>(250,250),(750,750)<|box_end|>",
}

KNOWN_ANSWERS_CONFTEST = f"""
from pytest_vleval.backends.hf import TransformersBackend

ANSWERS = {KNOWN_ANSWERS!r}


class KnownAnswers(TransformersBackend):
    '''The family's real processor, config and post-processing; known-good raw answers instead of generation.'''

    def _generate(self, conversations):
        raw = [ANSWERS[self.family.name] if "red" in c.question else "I cannot see one." for c in conversations]
        return [self.family.postprocess(text, self._prompt(c)) for text, c in zip(raw, conversations)]


def pytest_vleval_load_model(config, spec, options):
    return KnownAnswers(spec, options)
"""

GROUNDING_SUITE = """
defaults: {scorer: iou, max_new_tokens: 32}
cases:
  # IoU 0.999: the known answers land exactly (Qwen2.5-VL's off by the resize would score 0.98).
  - id: red-box
    image: images/scene.png
    question: Locate the red rectangle.
    box: [160, 120, 480, 360]
    threshold: 0.999
  - {id: unicorn, image: images/scene.png, question: 'Locate the unicorn.', box: [0, 0, 64, 64]}
"""


def _scene(path: Path) -> Path:
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (640, 480), (240, 240, 240))
    ImageDraw.Draw(image).rectangle([160, 120, 479, 359], fill=(220, 20, 20))
    image.save(path)
    return path


QWEN_FAMILIES = ("qwen3_vl", "qwen3_vl_thinking", "qwen2_5_vl", "qwen2_vl")


def test_grounding_in_each_qwen_convention_through_the_plugin(
    pytester: pytest.Pytester, qwen_models: dict[str, Path]
) -> None:
    pytester.makeconftest(KNOWN_ANSWERS_CONFTEST)
    _scene(pytester.path / "images" / "scene.png")
    pytester.makefile(".yaml", test_grounding=GROUNDING_SUITE)
    models = [f"--vl-model={path}" for path in qwen_models.values()]
    result = pytester.runpytest(*models, "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=4)
    for name in QWEN_FAMILIES:
        result.stdout.fnmatch_lines([f"*test_grounding.yaml::red-box[[]{name}[]] PASSED*"])
        result.stdout.fnmatch_lines([f"model {name} *: 1/2 cases passed", "*box parse failures: 1/2"])
    result.stdout.fnmatch_lines(["*could not parse a box in the 'qwen2.5' convention*"])


def test_qwen2_5_vl_boxes_rescale_with_the_processors_resized_size(
    tmp_path: Path, qwen_models: dict[str, Path]
) -> None:
    scene = _scene(tmp_path / "scene.png")
    spec = resolve_model(str(qwen_models["qwen2_5_vl"]))
    convention, resized = box_context(spec, [scene])
    assert (convention, resized) == ("qwen2.5", ((644, 476),))  # image_grid_thw * patch size
    answer = KNOWN_ANSWERS["Qwen2.5-VL"]
    box = parse_box(answer, "qwen2.5", image_size=(640, 480), resized_size=resized[0])
    assert box == pytest.approx(BOX)
    # The same pixels read in any other convention miss: the convention is never guessed from the numbers.
    for other in ("qwen3", "normalized"):
        misread = parse_box(answer, other, image_size=(640, 480))
        assert misread is None or box_iou(misread, BOX) < 0.5, other


@pytest.mark.parametrize(
    ("convention", "answer"),
    [
        ("qwen3", KNOWN_ANSWERS["Qwen3-VL"]),
        ("qwen2", KNOWN_ANSWERS["Qwen2-VL"]),
        ("qwen2", "(250,250),(750,750)"),  # the tags are special tokens, gone with skip_special_tokens
        ("qwen-vl", "<ref>the red rectangle</ref><box>(250,250),(750,749)</box>"),
        ("normalized", "[0.25, 0.25, 0.75, 0.75]"),
    ],
)
def test_known_boxes_parse_in_their_convention(convention: str, answer: str) -> None:
    box = parse_box(answer, convention, image_size=(640, 480))
    assert box is not None and box_iou(box, BOX) > 0.99


def test_a_hook_backend_declares_its_box_convention(pytester: pytest.Pytester) -> None:
    """A remote-code family loaded by a conftest hook (Qwen-VL here) has its boxes read in its convention."""
    pytester.makeconftest(
        """
        class QwenVLChat:
            def __init__(self, spec):
                self.spec = spec
                self.info = {"device": "cpu", "dtype": "bfloat16", "box_convention": "qwen-vl"}

            def generate(self, conversations):
                return ["<ref>red rectangle</ref><box>(250,250),(750,749)</box>" for _ in conversations]

            def close(self):
                pass

        def pytest_vleval_load_model(config, spec, options):
            return QwenVLChat(spec)
        """
    )
    _scene(pytester.path / "images" / "scene.png")
    # The 0-999 grid rounds: IoU 0.997 here, so the default threshold 0.5.
    pytester.makefile(".yaml", test_grounding=GROUNDING_SUITE.replace("threshold: 0.999", "threshold: 0.5"))
    result = pytester.runpytest("--vl-model=Qwen-VL-Chat", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)  # the unicorn's box is elsewhere, not unparsable


# --- adapters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "family", "convention"),
    [
        ("qwen3_vl", "Qwen3-VL", "qwen3"),
        ("qwen3_vl_moe", "Qwen3-VL", "qwen3"),
        ("qwen2_5_vl", "Qwen2.5-VL", "qwen2.5"),
        ("qwen2_vl", "Qwen2-VL", "qwen2"),
        ("qwen", "Qwen-VL", "qwen-vl"),
        ("cogvlm", "CogVLM", "cogvlm"),
        ("llava", "LLaVA-1.5", "normalized"),
        ("blip-2", "BLIP-2", "normalized"),
        ("gemma3", "Gemma 3", "normalized"),
        ("some_new_vlm", "generic", "normalized"),
    ],
)
def test_family_detection_from_the_config(model_type: str, family: str, convention: str) -> None:
    adapter = adapter_for_config({"model_type": model_type})
    assert (adapter.name, adapter.box_convention) == (family, convention)


def test_thinking_variant_is_detected_from_its_chat_template_and_strips_reasoning() -> None:
    thinking = adapter_for_config({"model_type": "qwen3_vl"}, chat_template="...'<|im_start|>assistant\\n<think>\\n'")
    assert thinking.name == "Qwen3-VL Thinking" and thinking.thinking
    prompt = "<|im_start|>assistant\n<think>\n"
    assert thinking.postprocess("hmm, red or blue?\n</think>\n\nred", prompt) == "red"
    assert thinking.postprocess("hmm, red or", prompt) == ""  # cut off while reasoning: no answer yet
    assert thinking.history_answer("<think>why</think>\n\nred") == "red"  # old reasoning leaves the history
    assert adapter_for_config({"model_type": "qwen3_vl"}, chat_template="no thinking").name == "Qwen3-VL"


def test_blip_style_prompt_and_an_echoed_prompt_is_removed() -> None:
    blip = adapter_for_config({"model_type": "blip-2"})
    conv = Conversation(images=(Path("a.png"),), question="What colour is it?")
    prompt = blip.build_prompt(object(), conv)
    assert prompt == "Question: What colour is it? Answer:"
    assert blip.postprocess(f"{prompt} red", prompt) == "red"


def test_unsupported_conversations_name_the_family_and_the_reason() -> None:
    blip = adapter_for_config({"model_type": "blip-2"})
    two = Conversation(images=(Path("a.png"), Path("b.png")), question="Which?")
    dialogue = Conversation(images=(Path("a.png"),), question="And?", history=(("What?", "red"),))
    assert blip.unsupported(two) == "BLIP-2 takes one image per conversation; this case has 2"
    assert "BLIP-2 does not hold a multi-turn dialogue (no chat template)" in str(blip.unsupported(dialogue))
    # A family without a chat template in this checkpoint cannot hold a dialogue either.
    assert GENERIC.unsupported(dialogue, has_chat_template=False) is not None
    assert GENERIC.unsupported(dialogue, has_chat_template=True) is None


def test_every_alias_family_has_an_adapter_or_the_generic_path() -> None:
    names = {adapter.name for adapter in ADAPTERS}
    assert {
        "Qwen3-VL",
        "Qwen2.5-VL",
        "Qwen2-VL",
        "LLaVA-1.5",
        "LLaVA-NeXT",
        "LLaVA-OneVision",
        "BLIP-2",
        "InstructBLIP",
        "Idefics3",
        "SmolVLM",
        "InternVL",
        "Gemma 3",
    } <= names
    for alias in (
        "Qwen3-VL-8B-Thinking",
        "Qwen3-VL-30B-A3B",
        "LLaVA-OneVision-7B",
        "SmolVLM-256M",
        "InternVL3-1B",
        "Gemma-3-4B",
        "Idefics3-8B",
        "BLIP-2-FlanT5-XL",
        "InstructBLIP-7B",
        "Qwen-VL-Chat",
    ):
        assert alias in ALIASES
    assert isinstance(GENERIC, FamilyAdapter)


def test_remote_code_alias_without_a_hook_says_how_to_load_it() -> None:
    from pytest_vleval.backends.loader import load_backend
    from pytest_vleval.models import ModelLoadError

    from .test_transformers_backend import options

    with pytest.raises(ModelLoadError, match="remote-code family: load it with a pytest_vleval_load_model hook"):
        load_backend(resolve_model("Qwen-VL-Chat"), options())


# --- precision and quantisation -----------------------------------------------------------------------


def test_float32_and_bfloat16_on_cpu_are_reported_as_the_precision(
    pytester: pytest.Pytester, qwen_models: dict[str, Path]
) -> None:
    model = qwen_models["qwen2_5_vl"]
    _project(pytester).makefile(".yaml", test_suite=SUITE)
    for dtype in ("float32", "bfloat16"):
        result = pytester.runpytest(f"--vl-model={model}", f"--vl-dtype={dtype}", "-k", "one")
        result.assert_outcomes(passed=1, deselected=2)
        result.stdout.fnmatch_lines([f"model qwen2_5_vl (Qwen2_5_VLForConditionalGeneration, cpu, {dtype}, *"])


def test_bnb_quantization_without_a_gpu_is_a_usage_error(fake_project: pytest.Pytester) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: bitsandbytes may run here")
    fake_project.makefile(".yaml", test_x="cases: [{id: a, image: images/red.png, question: 'say: x', expected: x}]")
    for mode in ("bnb-4bit", "bnb-8bit"):
        result = fake_project.runpytest("--vl-model=fake", f"--vl-quantization={mode}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: --vl-quantization={mode} needs a CUDA GPU*"])
    result = fake_project.runpytest("--vl-model=fake", "--vl-quantization=int3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vl-quantization='int3': expected one of none, bnb-4bit, bnb-8bit"])
    fake_project.runpytest("--vl-model=fake", "--vl-quantization=none").assert_outcomes(passed=1)


def test_bnb_configs_and_precision_labels() -> None:
    import torch

    from pytest_vleval.backends.precision import precision_label, quantization_config

    four = quantization_config("bnb-4bit", torch.bfloat16)
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config("bnb-8bit", torch.float16).load_in_8bit
    assert quantization_config("none", torch.float32) is None
    assert precision_label("bfloat16", "bnb-4bit") == "int4 (bnb-4bit nf4, compute bfloat16)"
    assert precision_label("float32", "none") == "float32"


# --- referring expressions: each family asked in its own words ----------------------------------------

REFER_SUITE = """
defaults: {task: grounding, scorer: iou, max_new_tokens: 4}
cases:
  - {id: refer, image: images/scene.png, refer: red rectangle, box: [160, 120, 480, 360]}
"""
REFER_FAMILIES = {
    "qwen3_vl": "Qwen3-VL",
    "qwen2_5_vl": "Qwen2.5-VL",
    "qwen2_vl": "Qwen2-VL",
    "llava": "LLaVA",
    "internvl": "InternVL",
    "gemma3": "generic",
}


@pytest.mark.parametrize("family_model", list(REFER_FAMILIES), indirect=True)
def test_refer_is_asked_in_the_family_own_words(pytester: pytest.Pytester, family_model: Path) -> None:
    """The prompt in the record is the family's grounding wording, and it reaches the real chat template."""
    from pytest_vleval.backends.families import GROUNDING_PROMPTS, adapter_for_source
    from pytest_vleval.predict.asking import Asking

    _scene(pytester.path / "images" / "scene.png")
    pytester.makefile(".yaml", test_refer=REFER_SUITE)
    result = pytester.runpytest(f"--vl-model={family_model}", "--vl-json=run.json", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)  # random weights write no box: a parse failure, never a crash
    result.stdout.fnmatch_lines(["*box parse failures: 1/1*"])
    (case,) = json.loads((pytester.path / "run.json").read_text())["cases"]
    wording = GROUNDING_PROMPTS[REFER_FAMILIES[family_model.name]].replace("{ref}", "red rectangle")
    assert case["turns"][0]["prompt"] == wording
    assert case["turns"][0]["question"] == "refer: red rectangle"
    adapter = adapter_for_source(resolve_model(str(family_model)))
    assert adapter is not None and Asking(adapter).family.refer_prompt("red rectangle") == wording


def test_pixel_limits_reach_the_qwen_processor_and_the_record(
    pytester: pytest.Pytester, qwen_models: dict[str, Path]
) -> None:
    """--vl-min/max-pixels go to a Qwen-VL processor (other vision token counts); a case file's own limits win;
    the effective limits and the model's defaults are in the record, and a change is flagged by the comparison."""
    _scene(pytester.path / "images" / "scene.png")
    pytester.makefile(
        ".yaml",
        test_pixels="""
cases:
  - {id: default, image: images/scene.png, question: 'What is red?', expected: '(?s).*', scorer: regex}
  - {id: small, image: images/scene.png, question: 'What is red?', expected: '(?s).*', scorer: regex,
     min_pixels: 3136, max_pixels: 12544}
""",
    )
    model = f"--vl-model={qwen_models['qwen3_vl']}"
    base = pytester.runpytest(model, "--vl-json=base.json", "-p", "no:cacheprovider")
    base.assert_outcomes(passed=2)
    limited = pytester.runpytest(
        model, "--vl-min-pixels=50176", "--vl-max-pixels=50176", "--vl-json=run.json", "--vl-compare=base.json",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    limited.assert_outcomes(passed=2)
    before = json.loads((pytester.path / "base.json").read_text())
    after = json.loads((pytester.path / "run.json").read_text())
    tokens = {(r, c["case_id"]): c["vision_tokens"] for r, rec in (("before", before), ("after", after))
              for c in rec["cases"]}  # fmt: skip
    # The test model's own limits are tiny (a few tokens); 50176 pixels is 64 tokens at 14-pixel patches.
    assert tokens[("after", "default")] > tokens[("after", "small")] > 0
    assert tokens[("after", "default")] != tokens[("before", "default")]
    assert tokens[("after", "small")] == tokens[("before", "small")]  # the case's own limits win
    pixels = after["models"][0]["backend"]["pixels"]
    assert pixels["min_pixels"] == pixels["max_pixels"] == 50176 and pixels["applied_by"] == "processor"
    assert pixels["model_default"] == before["models"][0]["backend"]["pixels"]["model_default"]
    limited.stdout.fnmatch_lines(["*image limits changed (min_pixels, max_pixels)*"])
