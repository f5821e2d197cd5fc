"""The ``--vl-*`` options and their ini keys, declared once: one group, help that states the default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pytest_vleval.options import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_BENCHMARK_CASES,
    DEFAULT_BENCHMARK_ROUNDS,
    DEFAULT_BENCHMARK_WARMUP,
    DEFAULT_CACHE_DIR,
    DEFAULT_CASE_FILES,
    DEFAULT_CONCURRENCY,
    DEFAULT_GOLDEN_FILES,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_STORAGE,
    DEVICES_HELP,
    DTYPES,
)

__all__ = ["FLAGS", "INI_ONLY", "Flag", "addoption"]


@dataclass(frozen=True)
class Flag:
    """One command-line option; `ini` names its ini key (the command line overrides it)."""

    name: str  # "--vl-model"; the dest is the name without dashes ("vl_model")
    help: str
    metavar: str | None = None
    action: str | None = None
    nargs: str | None = None
    const: str | None = None
    ini: str | None = None
    ini_type: str | None = None  # "bool", "linelist", ...; None: a string
    ini_default: Any = ""

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


def _default(ini: str, value: object) -> str:
    return f"Default: ini {ini}, else {value}."


FLAGS: tuple[Flag, ...] = (
    Flag(
        "--vl-model",
        "Model to test: an alias (see README), a Hugging Face hub id, a local directory, or a served model "
        "openai://HOST:PORT/v1/MODEL (openai+https://... for TLS), a team's own service http(s)://HOST:PORT/PATH "
        "or a Gradio app gradio://HOST:PORT/API_NAME (both described by --vl-endpoint). Repeat to test several models. "
        f"Default: ini vl_models, else '{DEFAULT_MODEL}' (the built-in model).",
        metavar="MODEL",
        action="append",
        ini="vl_models",
        ini_type="linelist",
        ini_default=[],
    ),
    Flag(
        "--vl-precisions",
        "Test each --vl-model at these precisions, each its own variant (label MODEL@PRECISION, own cache key and "
        "record entry; loaded one at a time), compared in the precision table: some of fp32, bf16, fp16 (GPU), "
        "int8, int4 (weight-only: optimum-quanto on a CPU, bitsandbytes on a GPU). A single model takes "
        "MODEL@int8 too. " + _default("vl_precisions", "none: the run's --vl-dtype"),
        metavar="P1,P2,...",
        ini="vl_precisions",
    ),
    Flag(
        "--vl-precision-reference",
        "The precision the others are compared with in the precision table and by --vl-compare-fail "
        "rules like accuracy@int4:-5pp. " + _default("vl_precision_reference", "each model's first variant"),
        metavar="PRECISION",
        ini="vl_precision_reference",
    ),
    Flag(
        "--vl-judge",
        "Judge model for the cases of scorer judge (any model --vl-model takes; the built-in judge is tiny-judge). "
        "It stays loaded beside the model under test; its verdicts are cached by its fingerprint, the template and "
        "the prompt. " + _default("vl_judge", "none: judged cases are skipped"),
        metavar="MODEL",
        ini="vl_judge",
    ),
    Flag(
        "--vl-judge-repeat",
        "Verdicts per judged answer, each with the prompt's sections in another order; the score is their mean "
        "and the record keeps their agreement. " + _default("vl_judge_repeat", 1),
        metavar="N",
        ini="vl_judge_repeat",
        ini_default="1",
    ),
    Flag(
        "--vl-endpoint",
        "How http:// and gradio:// models are asked: a YAML file (relative to the rootdir), or the YAML itself in "
        "the ini key, naming the fields of the image, the question (system prompt, max tokens, history), the body "
        "kind (json, multipart, form), headers (secrets as ${ENV_VAR}), the answer's path in the reply and the "
        "service's identity (without one, their answers are not cached). " + _default("vl_endpoint", "none"),
        metavar="YAML",
        ini="vl_endpoint",
    ),
    Flag(
        "--vl-serve",
        "Start an OpenAI-compatible engine for each --vl-model and test through it: a preset (transformers, vllm, "
        "sglang) or a command holding {port} and {model}, e.g. 'vllm serve {model} --port {port} "
        "--tensor-parallel-size 2'. The engine is stopped after its model's cases, on Ctrl-C and on failure. "
        + _default("vl_serve", "off"),
        metavar="PRESET|COMMAND",
        ini="vl_serve",
    ),
    Flag(
        "--vl-serve-timeout",
        "Seconds to wait for a --vl-serve engine to answer /health. " + _default("vl_serve_timeout", 600),
        metavar="SECONDS",
        ini="vl_serve_timeout",
        ini_default="600",
    ),
    Flag(
        "--vl-device",
        f"Device to run models on: {DEVICES_HELP}. "
        + _default("vl_device", "auto (cuda if available, then mps, else cpu)"),
        metavar="DEVICE",
        ini="vl_device",
        ini_default="auto",
    ),
    Flag(
        "--vl-dtype",
        f"Weight dtype: {', '.join(DTYPES)}. "
        + _default("vl_dtype", "auto (float32 on CPU, bfloat16 on GPUs that support it, else float16)"),
        metavar="DTYPE",
        ini="vl_dtype",
        ini_default="auto",
    ),
    Flag(
        "--vl-max-new-tokens",
        "Generation budget for cases that set no max_new_tokens. "
        + _default("vl_max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        metavar="N",
        ini="vl_max_new_tokens",
        ini_default=str(DEFAULT_MAX_NEW_TOKENS),
    ),
    Flag(
        "--vl-min-pixels",
        "Smallest image area in pixels a model is given (a case file's min_pixels wins): Qwen-VL family "
        "processors take it as their min_pixels; other models get an aspect-preserving upscale. "
        + _default("vl_min_pixels", "the model's own"),
        metavar="N",
        ini="vl_min_pixels",
    ),
    Flag(
        "--vl-max-pixels",
        "Largest image area in pixels a model is given, e.g. 1003520 (1280 * 28 * 28): Qwen-VL family processors "
        "take it as their max_pixels; other models get an aspect-preserving downscale. "
        + _default("vl_max_pixels", "the model's own"),
        metavar="N",
        ini="vl_max_pixels",
    ),
    Flag(
        "--vl-batch-size",
        "Cases generated together in one batch (greedy answers do not depend on it). "
        + _default("vl_batch_size", "auto (8 on CPU, 16 on GPU)"),
        metavar="N",
        ini="vl_batch_size",
        ini_default="auto",
    ),
    Flag(
        "--vl-trust-remote-code",
        "Allow models whose code lives in their hub repository to run it. Default: ini vl_trust_remote_code, else off.",
        action="store_true",
        ini="vl_trust_remote_code",
        ini_type="bool",
        ini_default=False,
    ),
    Flag(
        "--vl-concurrency",
        "Requests in flight at once to an openai://, http:// or gradio:// model. "
        + _default("vl_concurrency", DEFAULT_CONCURRENCY),
        metavar="N",
        ini="vl_concurrency",
        ini_default=str(DEFAULT_CONCURRENCY),
    ),
    Flag(
        "--vl-request-timeout",
        "Seconds to wait for a served model's answer to one request. "
        + _default("vl_request_timeout", f"{DEFAULT_REQUEST_TIMEOUT:g}"),
        metavar="SECONDS",
        ini="vl_request_timeout",
        ini_default=f"{DEFAULT_REQUEST_TIMEOUT:g}",
    ),
    Flag(
        "--vl-api-key-env",
        "Environment variable holding the API key sent to openai:// models (the key itself is never printed or "
        "stored). " + _default("vl_api_key_env", DEFAULT_API_KEY_ENV),
        metavar="NAME",
        ini="vl_api_key_env",
        ini_default=DEFAULT_API_KEY_ENV,
    ),
    Flag(
        "--vl-cache-dir",
        "Folder of the persistent answer cache (answers keyed by the model's weights, the case and the library "
        f"versions). Default: ini vl_cache_dir (relative to the rootdir), else {DEFAULT_CACHE_DIR}.",
        metavar="DIR",
        ini="vl_cache_dir",
    ),
    Flag(
        "--vl-no-cache",
        "Neither read nor write the answer cache: generate every answer. Default: the cache is on.",
        action="store_true",
    ),
    Flag(
        "--vl-refresh",
        "Regenerate every answer and overwrite its cache entry. Default: off (cached answers are reused).",
        action="store_true",
    ),
    Flag(
        "--vl-check-batch-invariance",
        "Regenerate each case alone (batch size 1) after its batch and fail the cases whose answers differ; "
        "cached answers are not reused. Default: off.",
        action="store_true",
    ),
    Flag(
        "--vl-quantization",
        "Weight quantisation: none, bnb-4bit or bnb-8bit (bitsandbytes; needs a CUDA GPU). "
        + _default("vl_quantization", "none"),
        metavar="MODE",
        ini="vl_quantization",
        ini_default="none",
    ),
    Flag(
        "--vl-save",
        "Save this run's record in the storage folder as NNNN_NAME.json. Without NAME: "
        "NNNN_<commit>_<time>.json. Default: off.",
        metavar="NAME",
        nargs="?",
        const="",
    ),
    Flag(
        "--vl-autosave",
        "Save this run's record with an automatic name (as --vl-save without NAME). Default: off.",
        action="store_true",
    ),
    Flag("--vl-json", "Also write this run's record to PATH (any folder). Default: off.", metavar="PATH"),
    Flag(
        "--vl-storage",
        "Folder of saved runs (one sub-folder per machine kind). "
        f"Default: ini vl_storage (relative to the ini file), else {DEFAULT_STORAGE} next to the ini file.",
        metavar="PATH",
        ini="vl_storage",
    ),
    Flag(
        "--vl-compare",
        "Compare this run with a saved one: latest, a number, a name, or the path of a record JSON. "
        "Without REF: latest. Default: off.",
        metavar="REF",
        nargs="?",
        const="latest",
    ),
    Flag(
        "--vl-compare-fail",
        "Fail the session when a metric regresses past its limit, e.g. "
        "accuracy:-2%%,accuracy@test_colour.yaml:-5pp,CIDEr:-0.05,latency_p50:+15%%,memory_peak:+10%%. "
        "Needs --vl-compare. Default: ini vl_compare_fail, else none (the comparison is only shown).",
        metavar="SPEC",
        ini="vl_compare_fail",
    ),
    Flag(
        "--vl-compare-significance",
        "Fail on an accuracy or score drop only when a paired test (exact McNemar on pass/fail, paired bootstrap "
        "on scores) gives p < ALPHA. Default: ini vl_compare_significance, else off.",
        metavar="ALPHA",
        ini="vl_compare_significance",
    ),
    Flag(
        "--vl-benchmark",
        "Add N latency benchmark items per model (pytest-benchmark, pedantic mode), on cases spread over the "
        f"case files. Without N: {DEFAULT_BENCHMARK_CASES}. Default: off.",
        metavar="N",
        nargs="?",
        const=str(DEFAULT_BENCHMARK_CASES),
    ),
    Flag(
        "--vl-benchmark-rounds",
        "Timed rounds per benchmark item. " + _default("vl_benchmark_rounds", DEFAULT_BENCHMARK_ROUNDS),
        metavar="N",
        ini="vl_benchmark_rounds",
        ini_default=str(DEFAULT_BENCHMARK_ROUNDS),
    ),
    Flag(
        "--vl-benchmark-warmup",
        "Untimed warm-up rounds per benchmark item. " + _default("vl_benchmark_warmup", DEFAULT_BENCHMARK_WARMUP),
        metavar="N",
        ini="vl_benchmark_warmup",
        ini_default=str(DEFAULT_BENCHMARK_WARMUP),
    ),
    Flag(
        "--vl-report",
        "Write a self-contained HTML report (comparison table, plots, every case with its images and each "
        "model's answers) to PATH.html. Default: ini vl_report (relative to the rootdir), else none.",
        metavar="PATH.html",
        ini="vl_report",
    ),
    Flag(
        "--vl-markdown",
        "Write a Markdown summary of the run (the model comparison, the gate's verdict and the flipped cases) "
        "to PATH.md, for CI job pages and pull-request comments. Default: ini vl_markdown (relative to the "
        "rootdir), else none; under GitHub Actions it is also appended to $GITHUB_STEP_SUMMARY "
        "(ini vl_github_step_summary).",
        metavar="PATH.md",
        ini="vl_markdown",
    ),
    Flag(
        "--vl-gpu-cost-per-hour",
        "Price of the machine per hour in USD: adds the estimated cost per 1,000 requests to the model "
        "comparison. Default: ini vl_gpu_cost_per_hour, else no cost column.",
        metavar="USD",
        ini="vl_gpu_cost_per_hour",
    ),
    Flag(
        "--vl-requests-per-day",
        "With --vl-gpu-cost-per-hour: the precision table adds the monthly cost of serving this many requests a "
        "day at each variant's measured throughput. Default: ini vl_requests_per_day, else no monthly cost.",
        metavar="N",
        ini="vl_requests_per_day",
    ),
)

# Settings that have no command-line flag: (name, help, type, default).
INI_ONLY: tuple[tuple[str, str, str | None, Any], ...] = (
    (
        "vl_collection_cache",
        "Keep the parsed cases of large case files (1,000 cases and more) in .vleval/collected/ and read them back "
        "while the file, its settings and the plugin are unchanged. Default: true.",
        "bool",
        True,
    ),
    (
        "vl_case_files",
        "Glob patterns of YAML case files to collect (file names only). Default: test_*.yaml test_*.yml.",
        "args",
        list(DEFAULT_CASE_FILES),
    ),
    (
        "vl_golden_files",
        "Glob patterns of golden caption-set manifests to collect. Default: golden*.yaml golden*.yml.",
        "args",
        list(DEFAULT_GOLDEN_FILES),
    ),
    (
        "vl_data_roots",
        "Folders (one a line; relative ones to the ini file's folder) that case files and golden sets may name "
        "images in besides the rootdir; an image elsewhere, symlinks and '..' resolved, is a collection error. "
        "Default: none (the rootdir only).",
        "linelist",
        [],
    ),
    (
        "vl_github_step_summary",
        "Append the Markdown summary to $GITHUB_STEP_SUMMARY when GitHub Actions sets it. Default: true.",
        "bool",
        True,
    ),
)


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vleval", "vision-language model evaluation (pytest-vleval)")
    for flag in FLAGS:
        kwargs: dict[str, Any] = {"dest": flag.dest, "help": flag.help, "default": None}
        for key in ("metavar", "action", "nargs", "const"):
            if getattr(flag, key) is not None:
                kwargs[key] = getattr(flag, key)
        group.addoption(flag.name, **kwargs)
        if flag.ini is not None:
            ini_help = f"Default for {flag.name}."
            parser.addini(flag.ini, ini_help, type=flag.ini_type, default=flag.ini_default)  # type: ignore[arg-type]
    for name, text, kind, default in INI_ONLY:
        parser.addini(name, text, type=kind, default=default)  # type: ignore[arg-type]
