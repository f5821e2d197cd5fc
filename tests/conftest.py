from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

# httpx imports httpcore lazily, at its first client. In-process pytester runs drop the modules first imported
# inside a run, so a later run would import a second httpcore whose exceptions httpx's (cached) exception map no
# longer knows: a read timeout would then escape as httpcore.ReadTimeout. Importing it here keeps one httpcore.
import httpcore  # noqa: F401

# pytester's in-process runs drop modules first imported inside them; numpy (pulled in by the caption
# metrics) cannot be imported twice in one process, so import it once here.
import numpy  # noqa: F401

# pygal (the report's plots) imports importlib_metadata, which takes the standard library's distribution finder
# off PathFinder and puts its own on sys.meta_path. In-process pytester runs restore sys.meta_path afterwards, so
# a run that first wrote a report would leave no finder at all: later runs find no plugin entry points
# ("unrecognized arguments: --vl-model"). Importing it here keeps importlib_metadata's finder for the session.
import pygal  # noqa: F401
import pytest

# The same for scipy (the significance tests cross-check against scipy.stats), when it is installed.
with contextlib.suppress(ImportError):
    import scipy.stats  # noqa: F401
# And for datasets (pyarrow), which the `hf` source format imports inside pytester runs.
with contextlib.suppress(ImportError):
    import datasets  # noqa: F401

from pytest_vleval.options import VlOptions

# Tests never reach the Hugging Face Hub: a hub id must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FAKE_BACKEND_CONFTEST = '''
import pytest

class FakeBackend:
    """Answers 'say: X' with X; raises on 'crash'; counts loads and batches."""

    loads = 0

    def __init__(self, spec):
        FakeBackend.loads += 1
        self.spec = spec
        self.info = {"device": "cpu", "dtype": "float32", "architecture": "Fake"}
        self.batches = []

    def generate(self, conversations):
        self.batches.append(len(conversations))
        if any("oom" in c.question for c in conversations) and len(conversations) > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        answers = []
        for c in conversations:
            if "crash" in c.question:
                raise ValueError("this case breaks the model")
            if "say:" in c.question:
                answers.append(c.question.split("say:", 1)[1].strip())
            elif c.images and c.images[0].with_suffix(".caption").exists():
                # golden-set tests: the caption sits next to the image
                answers.append(c.images[0].with_suffix(".caption").read_text().strip())
            else:
                answers.append("")
        return answers

    def close(self):
        print(f"closing {self.spec.label} after batches {self.batches}")


def pytest_vleval_load_model(config, spec, options):
    if spec.requested.startswith("fake"):
        return FakeBackend(spec)
    return None
'''


@pytest.fixture(autouse=True)
def _not_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner pytest runs print whole failure messages in their short summary when CI/BUILD_NUMBER is set;
    tests that read that output must see the same text on a laptop and in CI."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    # Inner runs must not append their Markdown summaries to the job page of a GitHub Actions run of this suite.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def vl_options(**overrides: object) -> VlOptions:
    """Plugin options as `pytest_configure` would build them for one CPU model, with `overrides`."""
    values: dict = dict(
        models=("x",),
        device="cpu",
        dtype="auto",
        max_new_tokens=8,
        trust_remote_code=False,
        batch_size=None,
        case_files=(),
        golden_files=(),
    )
    values.update(overrides)
    return VlOptions(**values)


def make_png(path: Path, size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def fake_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with a fake backend (hook-loaded) and two images."""
    pytester.makeconftest(FAKE_BACKEND_CONFTEST)
    make_png(pytester.path / "images" / "red.png")
    make_png(pytester.path / "images" / "blue.png", color=(20, 20, 220))
    return pytester


def _noisy_random_qwen3vl(out: Path) -> Path:
    """A random Qwen3-VL whose greedy answers vary with the input (the default init answers newlines)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from pytest_vleval.builtin.build import build_random_qwen3vl

    base = build_random_qwen3vl(out.with_name(out.name + "-base"), seed=0)
    model = AutoModelForImageTextToText.from_pretrained(base)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.15)
    model.save_pretrained(out)
    for file in base.iterdir():
        if not (out / file.name).exists():
            shutil.copy(file, out / file.name)
    return out


@pytest.fixture(scope="session")
def random_qwen3vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A locally built, random-weight Qwen3-VL directory (tokenizer and processor built offline)."""
    return _noisy_random_qwen3vl(tmp_path_factory.mktemp("models") / "rand-qwen3vl")
