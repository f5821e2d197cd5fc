"""The transformers backend on a locally built random-weight Qwen3-VL (no network, no GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_vleval.models import Conversation, resolve_model

from .conftest import make_png
from .conftest import vl_options as options

SUITE = """
defaults: {scorer: regex, max_new_tokens: 6}
cases:
  - {id: one-image, image: images/red.png, question: 'What colour is the shape?', expected: '^.*$'}
  - {id: two-images, images: [images/red.png, images/blue.png], question: 'Which one is blue?', expected: '^.*$'}
  - id: dialogue
    image: images/blue.png
    turns:
      - {question: 'What shape is it?', expected: '^.*$'}
      - {question: 'And its colour?', expected: '^.*$'}
  - {id: must-fail, image: images/red.png, question: 'What colour?', expected: 'zebra crossing', scorer: exact}
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("images")
    return [
        make_png(base / "red.png", (64, 64), (220, 20, 20)),
        make_png(base / "blue.png", (96, 48), (20, 20, 220)),
        make_png(base / "green.png", (48, 80), (20, 200, 20)),
    ]


@pytest.fixture(scope="module")
def backend(random_qwen3vl: Path):
    from pytest_vleval.backends.hf import TransformersBackend

    loaded = TransformersBackend(resolve_model(str(random_qwen3vl)), options())
    yield loaded
    loaded.close()


def test_loads_through_auto_classes_with_cpu_defaults(backend) -> None:
    assert backend.info["architecture"] == "Qwen3VLForConditionalGeneration"
    assert backend.info["dtype"] == "float32"  # auto on a CPU means float32
    assert backend.info["device"] == "cpu"
    assert backend.tokenizer.padding_side == "left"
    assert backend.generation_config.do_sample is False


def test_answers_exclude_the_prompt_and_respect_each_budget(backend, images: list[Path], monkeypatch) -> None:
    decoded: list[list[int]] = []
    original = backend.tokenizer.batch_decode

    def spy(rows, **kwargs):
        decoded.extend([int(t) for t in row] for row in rows)
        return original(rows, **kwargs)

    monkeypatch.setattr(backend.tokenizer, "batch_decode", spy)
    short = Conversation(images=(images[0],), question="What colour is the shape?", max_new_tokens=3)
    long = Conversation(images=(images[0],), question="What colour is the shape?", max_new_tokens=12)
    answers = backend.generate([short, long])
    assert all("What colour" not in a and "assistant" not in a for a in answers)
    assert len(decoded[0]) <= 3
    # Greedy decoding is prefix-stable: the short budget's tokens begin the long one's.
    assert decoded[1][: len(decoded[0])] == decoded[0]


def test_batched_answers_equal_single_answers(backend, images: list[Path]) -> None:
    conversations = [
        Conversation(images=(images[0],), question="What colour is the shape?", max_new_tokens=8),
        Conversation(images=(images[1],), question="Is there a square?", max_new_tokens=5),
        Conversation(images=(images[0], images[1]), question="Which picture has more circles?", max_new_tokens=8),
        Conversation(
            images=(images[2],), question="And now?", history=(("What is it?", "a circle"),), max_new_tokens=8
        ),
        Conversation(images=(images[2], images[0], images[1]), question="Count them all.", max_new_tokens=12),
    ]
    singles = [backend.generate([c])[0] for c in conversations]
    assert len(set(singles)) > 1, "the random model should answer differently to different inputs"
    assert backend.generate(conversations) == singles
    assert backend.generate(conversations[::-1]) == singles[::-1]


def test_bfloat16_on_cpu_is_honoured(random_qwen3vl: Path, images: list[Path]) -> None:
    from pytest_vleval.backends.hf import TransformersBackend

    loaded = TransformersBackend(resolve_model(str(random_qwen3vl)), options(dtype="bfloat16"))
    try:
        assert loaded.info["dtype"] == "bfloat16"
        assert next(loaded.model.parameters()).dtype.is_floating_point
        assert str(next(loaded.model.parameters()).dtype) == "torch.bfloat16"
        (answer,) = loaded.generate([Conversation(images=(images[0],), question="What?", max_new_tokens=4)])
        assert isinstance(answer, str)
    finally:
        loaded.close()


def test_cuda_request_without_gpu_is_a_clear_error(random_qwen3vl: Path) -> None:
    import torch

    from pytest_vleval.backends.hf import TransformersBackend
    from pytest_vleval.models import ModelLoadError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CUDA path is exercised for real there")
    with pytest.raises(ModelLoadError, match="--vl-device=cuda: CUDA is not available"):
        TransformersBackend(resolve_model(str(random_qwen3vl)), options(device="cuda"))


def test_unreachable_hub_id_is_a_clear_error() -> None:
    from pytest_vleval.backends.hf import TransformersBackend
    from pytest_vleval.models import ModelLoadError

    # the suite runs with HF_HUB_OFFLINE=1 (conftest.py); tests/test_reliability.py covers an unreachable hub
    with pytest.raises(
        ModelLoadError,
        match=r"cannot load model 'no-such-org/no-such-model' \(hub id no-such-org/no-such-model\): "
        r"HF_HUB_OFFLINE=1 is set, and the model is not in the local cache",
    ):
        TransformersBackend(resolve_model("no-such-org/no-such-model"), options())


def test_plugin_runs_a_suite_on_a_local_checkpoint(pytester: pytest.Pytester, random_qwen3vl: Path) -> None:
    make_png(pytester.path / "images" / "red.png", (64, 64), (220, 20, 20))
    make_png(pytester.path / "images" / "blue.png", (96, 48), (20, 20, 220))
    pytester.makefile(".yaml", test_suite=SUITE)
    import shutil

    copy = shutil.copytree(random_qwen3vl, pytester.path / "models" / "rand-qwen3vl")
    result = pytester.runpytest(f"--vl-model={random_qwen3vl}", "--vl-model=models/rand-qwen3vl", "-v")
    assert copy.is_dir()
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_suite.yaml::one-image[[]rand-qwen3vl[]] PASSED*",
            "*test_suite.yaml::one-image[[]rand-qwen3vl-2[]] PASSED*",
            "*case 'must-fail' on model 'rand-qwen3vl'*",
            "*model rand-qwen3vl (Qwen3VLForConditionalGeneration, cpu, float32, loaded 1x in*): 3/4 cases passed",
            "*model rand-qwen3vl-2 (Qwen3VLForConditionalGeneration, cpu, float32, loaded 1x in*): 3/4 cases passed",
        ]
    )


@pytest.mark.parametrize("size", [(64, 64), (96, 48), (200, 120)])
def test_the_image_token_count_the_batches_are_sorted_by_matches_a_real_prompt(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """``image_token_count`` calls transformers' private ``_get_num_multimodal_tokens``: if that helper goes away
    or changes its meaning, this fails instead of the batch order silently degrading."""
    from PIL import Image
    from transformers import AutoProcessor

    from pytest_vleval.backends.hf import image_token_count
    from pytest_vleval.builtin import BUILTIN_MODELS

    processor = AutoProcessor.from_pretrained(BUILTIN_MODELS["tiny"])
    path = make_png(tmp_path / "image.png", size)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    with Image.open(path) as image:
        inputs = processor(text=[prompt], images=[image.convert("RGB")], return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert image_token_count(processor, *size) == int((inputs["input_ids"] == image_token).sum())
