"""Weight precision: bitsandbytes quantisation (``--vl-quantization``) and the precision label in reports.

torch is imported only when a quantisation is asked for, so ``pytest --help`` and runs without the flag stay
free of it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

QUANTIZATIONS = ("none", "bnb-4bit", "bnb-8bit")
# Precision variants of a model (``--vl-precisions``, ``MODEL@PRECISION``): floating-point weights, or weight-only
# integer quantisation (optimum-quanto on a CPU, bitsandbytes on a CUDA GPU).
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
INSTALL_QUANTO = "pip install 'pytest-vleval[quant]'"


def split_precision(requested: str) -> tuple[str, str | None]:
    """``"tiny@int8"`` -> ``("tiny", "int8")``; a name without a known precision suffix is returned whole."""
    base, sep, suffix = requested.rpartition("@")
    if sep and base and suffix.lower() in PRECISIONS:
        return base, suffix.lower()
    return requested, None


def parse_precisions(value: str, flag: str = "--vl-precisions") -> tuple[str, ...]:
    """``"fp32,int8,int4"`` -> the names, checked (ValueError naming the flag and the bad item)."""
    names = [item.strip().lower() for item in value.split(",") if item.strip()]
    for name in names:
        if name not in PRECISIONS:
            raise ValueError(f"{flag}={value!r}: {name!r} is not a precision; expected some of {', '.join(PRECISIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{flag}={value!r}: a precision is named twice")
    return tuple(names)


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
    if quantization == "none" or quantization.startswith("quanto-"):
        return None  # quanto quantises the loaded model: quantize_in_place
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
    if quantization.startswith("quanto-"):
        return f"{quantization[7:]} (optimum-quanto weight-only, compute {dtype})"
    if quantization == "bnb-4bit":
        return f"int4 (bnb-4bit nf4, compute {dtype})"
    if quantization == "bnb-8bit":
        return f"int8 (bnb-8bit, compute {dtype})"
    return dtype


def variant_quantization(precision: str | None, device: str, default: str) -> str:
    """The quantisation a precision variant loads with: bitsandbytes on a CUDA GPU, optimum-quanto elsewhere;
    ``default`` (``--vl-quantization``) for float variants and models without one."""
    if precision not in ("int8", "int4"):
        return default
    bits = precision[3:]
    return f"bnb-{bits}bit" if device.startswith("cuda") else f"quanto-int{bits}"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing
        return False


def check_variants(precisions: list[str | None], device: str) -> None:
    """A :class:`pytest.UsageError` naming the package when integer variants cannot be quantised here: on a
    CUDA device bitsandbytes, elsewhere optimum-quanto (``auto``: either; torch is not imported to decide)."""
    wanted = sorted({p for p in precisions if p in ("int8", "int4")})
    if not wanted:
        return
    quanto, bnb = _installed("optimum.quanto"), _installed("bitsandbytes")
    what = ", ".join(wanted)
    if device.startswith("cuda") and not bnb:
        raise pytest.UsageError(f"precision {what} on {device} needs bitsandbytes: pip install 'pytest-vleval[bnb]'")
    if not device.startswith("cuda") and not quanto and (device != "auto" or not bnb):
        raise pytest.UsageError(f"precision {what} needs optimum-quanto on this machine: {INSTALL_QUANTO}")


def quantize_in_place(model: Any, quantization: str) -> None:
    """Weight-only integer quantisation of every linear layer with optimum-quanto (``quanto-int8``/``-int4``),
    frozen (the weights stored as integers, the float copies freed)."""
    try:
        from optimum.quanto import freeze, qint4, qint8, quantize
    except ImportError:
        from pytest_vleval.backends.base import ModelLoadError

        raise ModelLoadError(f"{quantization} needs optimum-quanto: {INSTALL_QUANTO}") from None

    quantize(model, weights=qint8 if quantization == "quanto-int8" else qint4)
    freeze(model)


def weight_bytes(model: Any) -> int:
    """Bytes the loaded weights take, measured from the tensors (quantised ones through their inner tensors:
    integer data, scales, zero points); a tensor shared by two names (tied embeddings) counts once."""
    seen: set[tuple[int, int]] = set()

    def size(tensor: Any) -> int:
        flatten = getattr(tensor, "__tensor_flatten__", None)
        if flatten is not None and type(tensor).__name__ != "Parameter":
            names, _ = flatten()
            return sum(size(getattr(tensor, name)) for name in names)
        key = (tensor.data_ptr(), tensor.numel())
        if key in seen or (tensor.data_ptr() == 0 and tensor.numel() == 0):
            return 0
        seen.add(key)
        return int(tensor.numel() * tensor.element_size())

    return sum(size(t) for t in model.state_dict(keep_vars=False).values())
