"""Built-in reference models: tiny Qwen3-VL checkpoints built and trained locally (`build`, `train`)."""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTIN_MODELS: dict[str, Path] = {
    "tiny": BUILTIN_DIR / "tiny",
    "tiny-v0": BUILTIN_DIR / "tiny-v0",
    "tiny-judge": BUILTIN_DIR / "tiny-judge",  # tiny fine-tuned as a judge (builtin/train_judge.py)
}

__all__ = ["BUILTIN_DIR", "BUILTIN_MODELS"]
