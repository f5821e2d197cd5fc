"""Command-line options and ini keys, parsed once into a frozen :class:`VlOptions`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

DEVICES_HELP = "auto, cpu, cuda, cuda:N, mps"
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_MODEL = "tiny"
DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_CASE_FILES = ("test_*.yaml", "test_*.yml")
DEFAULT_GOLDEN_FILES = ("golden*.yaml", "golden*.yml")

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class VlOptions:
    models: tuple[str, ...]
    device: str
    dtype: str
    max_new_tokens: int
    trust_remote_code: bool
    batch_size: int | None  # None: chosen per device when the model loads
    case_files: tuple[str, ...]
    golden_files: tuple[str, ...]


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vleval", "vision-language model evaluation (pytest-vleval)")
    group.addoption(
        "--vl-model",
        action="append",
        dest="vl_model",
        default=None,
        metavar="MODEL",
        help="Model to test: an alias (see README), a Hugging Face hub id or a local directory. "
        f"Repeat to test several models. Default: ini vl_models, else '{DEFAULT_MODEL}' (the built-in model).",
    )
    group.addoption(
        "--vl-device",
        dest="vl_device",
        default=None,
        metavar="DEVICE",
        help=f"Device to run models on: {DEVICES_HELP}. Default: ini vl_device, else auto "
        "(cuda if available, then mps, else cpu).",
    )
    group.addoption(
        "--vl-dtype",
        dest="vl_dtype",
        default=None,
        metavar="DTYPE",
        help=f"Weight dtype: {', '.join(DTYPES)}. Default: ini vl_dtype, else auto "
        "(float32 on CPU, bfloat16 on GPUs that support it, else float16).",
    )
    group.addoption(
        "--vl-max-new-tokens",
        dest="vl_max_new_tokens",
        default=None,
        metavar="N",
        help="Generation budget for cases that set no max_new_tokens. "
        f"Default: ini vl_max_new_tokens, else {DEFAULT_MAX_NEW_TOKENS}.",
    )
    group.addoption(
        "--vl-batch-size",
        dest="vl_batch_size",
        default=None,
        metavar="N",
        help="Cases generated together in one batch (greedy answers do not depend on it). "
        "Default: ini vl_batch_size, else auto (8 on CPU, 16 on GPU).",
    )
    group.addoption(
        "--vl-trust-remote-code",
        dest="vl_trust_remote_code",
        action="store_true",
        default=None,
        help="Allow models whose code lives in their hub repository to run it. Default: off.",
    )
    parser.addini("vl_models", "Models to test when --vl-model is not given.", type="linelist", default=[])
    parser.addini("vl_device", "Default for --vl-device.", default="auto")
    parser.addini("vl_dtype", "Default for --vl-dtype.", default="auto")
    parser.addini(
        "vl_max_new_tokens", "Default for --vl-max-new-tokens.", default=str(DEFAULT_MAX_NEW_TOKENS)
    )
    parser.addini("vl_batch_size", "Default for --vl-batch-size.", default="auto")
    parser.addini("vl_trust_remote_code", "Default for --vl-trust-remote-code.", type="bool", default=False)
    parser.addini(
        "vl_case_files",
        "Glob patterns of YAML case files to collect (file names only). Default: test_*.yaml test_*.yml.",
        type="args",
        default=list(DEFAULT_CASE_FILES),
    )
    parser.addini(
        "vl_golden_files",
        "Glob patterns of golden caption-set manifests to collect. Default: golden*.yaml golden*.yml.",
        type="args",
        default=list(DEFAULT_GOLDEN_FILES),
    )


def _positive_int(value: str, flag: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if number < 1:
        raise pytest.UsageError(f"{flag}={value!r}: expected a positive integer")
    return number


def _choose(cli: object, config: pytest.Config, ini: str) -> str:
    return str(cli if cli is not None else config.getini(ini)).strip()


def parse_options(config: pytest.Config) -> VlOptions:
    """Read and validate every vleval option; bad values raise :class:`pytest.UsageError`."""
    models = config.getoption("vl_model") or config.getini("vl_models") or [DEFAULT_MODEL]
    models = [m.strip() for m in models]
    if any(not m for m in models):
        raise pytest.UsageError("--vl-model: empty model name")

    device = _choose(config.getoption("vl_device"), config, "vl_device").lower()
    if not _DEVICE_RE.match(device):
        raise pytest.UsageError(f"--vl-device={device!r}: expected one of {DEVICES_HELP}")

    dtype = _choose(config.getoption("vl_dtype"), config, "vl_dtype").lower()
    if dtype not in DTYPES:
        raise pytest.UsageError(f"--vl-dtype={dtype!r}: expected one of {', '.join(DTYPES)}")

    max_new = _positive_int(
        _choose(config.getoption("vl_max_new_tokens"), config, "vl_max_new_tokens"), "--vl-max-new-tokens"
    )
    raw_batch = _choose(config.getoption("vl_batch_size"), config, "vl_batch_size").lower()
    batch = None if raw_batch == "auto" else _positive_int(raw_batch, "--vl-batch-size")

    trust = config.getoption("vl_trust_remote_code")
    if trust is None:
        trust = bool(config.getini("vl_trust_remote_code"))

    return VlOptions(
        models=tuple(dict.fromkeys(models)),
        device=device,
        dtype=dtype,
        max_new_tokens=max_new,
        trust_remote_code=bool(trust),
        batch_size=batch,
        case_files=tuple(config.getini("vl_case_files")),
        golden_files=tuple(config.getini("vl_golden_files")),
    )
