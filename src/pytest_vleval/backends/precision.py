"""Weight precision: bitsandbytes quantisation (``--vl-quantization``) and the precision label in reports.

torch is imported only when a quantisation is asked for, so ``pytest --help`` and runs without the flag stay
free of it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

QUANTIZATIONS = ("none", "bnb-4bit", "bnb-8bit")


def check_quantization(quantization: str, device: str) -> None:
    """Raise :class:`pytest.UsageError` naming the flag unless bitsandbytes can run here (a CUDA GPU)."""
    if quantization == "none":
        return
    flag = f"--vl-quantization={quantization}"
    if device in ("cpu", "mps"):
        raise pytest.UsageError(f"{flag} needs a CUDA GPU (bitsandbytes), not --vl-device={device}")
    import torch

    if not torch.cuda.is_available():
        raise pytest.UsageError(
            f"{flag} needs a CUDA GPU (bitsandbytes) and none is available; use --vl-quantization=none and "
            "--vl-dtype to compare precisions on this machine"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise pytest.UsageError(f"{flag} needs the bitsandbytes package: pip install 'pytest-vleval[bnb]'")


def quantization_config(quantization: str, compute_dtype: Any) -> Any | None:
    """The transformers ``BitsAndBytesConfig`` for `quantization`, or None for full-precision weights."""
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "bnb-4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_use_double_quant=False,
        )
    if quantization == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"unknown quantization {quantization!r}; expected one of {', '.join(QUANTIZATIONS)}")


def precision_label(dtype: str, quantization: str) -> str:
    """What a report shows as the model's precision: "bfloat16", "int4 (bnb-4bit nf4, compute bfloat16)"."""
    if quantization == "bnb-4bit":
        return f"int4 (bnb-4bit nf4, compute {dtype})"
    if quantization == "bnb-8bit":
        return f"int8 (bnb-8bit, compute {dtype})"
    return dtype
