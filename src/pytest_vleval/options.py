"""Command-line options and ini keys, parsed once into a frozen :class:`VlOptions`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

DEVICES_HELP = "auto, cpu, cuda, cuda:N, mps"
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "bnb-4bit", "bnb-8bit")
DEFAULT_MODEL = "tiny"
DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_CASE_FILES = ("test_*.yaml", "test_*.yml")
DEFAULT_GOLDEN_FILES = ("golden*.yaml", "golden*.yml")
DEFAULT_CONCURRENCY = 4
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_API_KEY_ENV = "VLEVAL_API_KEY"
DEFAULT_CACHE_DIR = ".vleval/cache"

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    # HTTP models (openai://...): requests in flight, seconds to wait for an answer, where the API key is.
    concurrency: int = DEFAULT_CONCURRENCY
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    api_key_env: str = DEFAULT_API_KEY_ENV
    # The answer cache (cache.py): its absolute folder, "" when off; --vl-refresh regenerates every answer.
    cache_dir: str = ""
    refresh: bool = False
    check_batch_invariance: bool = False
    quantization: str = "none"  # precision.QUANTIZATIONS: bitsandbytes weights on a CUDA GPU


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vleval", "vision-language model evaluation (pytest-vleval)")
    group.addoption(
        "--vl-model",
        action="append",
        dest="vl_model",
        default=None,
        metavar="MODEL",
        help="Model to test: an alias (see README), a Hugging Face hub id, a local directory, or a served model "
        "openai://HOST:PORT/v1/MODEL (openai+https://... for TLS). "
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
    group.addoption(
        "--vl-concurrency",
        dest="vl_concurrency",
        default=None,
        metavar="N",
        help="Requests in flight at once to an openai:// model. "
        f"Default: ini vl_concurrency, else {DEFAULT_CONCURRENCY}.",
    )
    group.addoption(
        "--vl-request-timeout",
        dest="vl_request_timeout",
        default=None,
        metavar="SECONDS",
        help="Seconds to wait for an openai:// model's answer to one request. "
        f"Default: ini vl_request_timeout, else {DEFAULT_REQUEST_TIMEOUT:g}.",
    )
    group.addoption(
        "--vl-api-key-env",
        dest="vl_api_key_env",
        default=None,
        metavar="NAME",
        help="Environment variable holding the API key sent to openai:// models (the key itself is never "
        f"printed or stored). Default: ini vl_api_key_env, else {DEFAULT_API_KEY_ENV}.",
    )
    parser.addini("vl_models", "Models to test when --vl-model is not given.", type="linelist", default=[])
    parser.addini("vl_device", "Default for --vl-device.", default="auto")
    parser.addini("vl_dtype", "Default for --vl-dtype.", default="auto")
    parser.addini(
        "vl_max_new_tokens", "Default for --vl-max-new-tokens.", default=str(DEFAULT_MAX_NEW_TOKENS)
    )
    parser.addini("vl_batch_size", "Default for --vl-batch-size.", default="auto")
    parser.addini("vl_trust_remote_code", "Default for --vl-trust-remote-code.", type="bool", default=False)
    parser.addini("vl_concurrency", "Default for --vl-concurrency.", default=str(DEFAULT_CONCURRENCY))
    parser.addini("vl_request_timeout", "Default for --vl-request-timeout.", default=f"{DEFAULT_REQUEST_TIMEOUT:g}")
    parser.addini("vl_api_key_env", "Default for --vl-api-key-env.", default=DEFAULT_API_KEY_ENV)
    group.addoption(
        "--vl-cache-dir",
        dest="vl_cache_dir",
        default=None,
        metavar="DIR",
        help="Folder of the persistent answer cache (answers keyed by the model's weights, the case and the "
        f"library versions). Default: ini vl_cache_dir (relative to the rootdir), else {DEFAULT_CACHE_DIR}.",
    )
    group.addoption(
        "--vl-no-cache",
        dest="vl_no_cache",
        action="store_true",
        default=False,
        help="Neither read nor write the answer cache: generate every answer. Default: the cache is on.",
    )
    group.addoption(
        "--vl-refresh",
        dest="vl_refresh",
        action="store_true",
        default=False,
        help="Regenerate every answer and overwrite its cache entry. Default: off (cached answers are reused).",
    )
    group.addoption(
        "--vl-check-batch-invariance",
        dest="vl_check_batch_invariance",
        action="store_true",
        default=False,
        help="Regenerate each case alone (batch size 1) after its batch and fail the cases whose answers "
        "differ; cached answers are not reused. Default: off.",
    )
    parser.addini("vl_cache_dir", f"Default for --vl-cache-dir. Default: {DEFAULT_CACHE_DIR}.", default="")
    group.addoption(
        "--vl-quantization",
        dest="vl_quantization",
        default=None,
        metavar="MODE",
        help="Weight quantisation: none, bnb-4bit or bnb-8bit (bitsandbytes; needs a CUDA GPU). "
        "Default: ini vl_quantization, else none.",
    )
    parser.addini("vl_quantization", "Default for --vl-quantization.", default="none")
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

    concurrency = _positive_int(
        _choose(config.getoption("vl_concurrency"), config, "vl_concurrency"), "--vl-concurrency"
    )
    raw_timeout = _choose(config.getoption("vl_request_timeout"), config, "vl_request_timeout")
    try:
        request_timeout = float(raw_timeout)
    except ValueError:
        request_timeout = 0.0
    if not 0 < request_timeout < float("inf"):
        raise pytest.UsageError(f"--vl-request-timeout={raw_timeout!r}: expected a positive number of seconds")
    api_key_env = _choose(config.getoption("vl_api_key_env"), config, "vl_api_key_env")
    if not _ENV_NAME_RE.match(api_key_env):
        raise pytest.UsageError(f"--vl-api-key-env={api_key_env!r}: expected an environment variable name")

    no_cache = bool(config.getoption("vl_no_cache"))
    refresh = bool(config.getoption("vl_refresh"))
    if no_cache and refresh:
        raise pytest.UsageError("--vl-refresh: there is no answer cache to refresh with --vl-no-cache")
    cache_dir = ""
    if not no_cache:
        cli_dir = config.getoption("vl_cache_dir")
        # A command-line folder is relative to where pytest was invoked, an ini one to the rootdir.
        base = Path(config.invocation_params.dir) if cli_dir else Path(config.rootpath)
        raw_dir = str(cli_dir or config.getini("vl_cache_dir") or DEFAULT_CACHE_DIR).strip()
        if not raw_dir:
            raise pytest.UsageError("--vl-cache-dir: empty folder name")
        cache_dir = str((base / Path(raw_dir).expanduser()).resolve())

    quantization = _choose(config.getoption("vl_quantization"), config, "vl_quantization").lower()
    if quantization not in QUANTIZATIONS:
        raise pytest.UsageError(f"--vl-quantization={quantization!r}: expected one of {', '.join(QUANTIZATIONS)}")

    return VlOptions(
        models=tuple(dict.fromkeys(models)),
        device=device,
        dtype=dtype,
        max_new_tokens=max_new,
        trust_remote_code=bool(trust),
        batch_size=batch,
        case_files=tuple(config.getini("vl_case_files")),
        golden_files=tuple(config.getini("vl_golden_files")),
        concurrency=concurrency,
        request_timeout=request_timeout,
        api_key_env=api_key_env,
        cache_dir=cache_dir,
        refresh=refresh,
        check_batch_invariance=bool(config.getoption("vl_check_batch_invariance")),
        quantization=quantization,
    )
