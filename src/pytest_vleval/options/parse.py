"""Reading the options: the command line first, then the ini key, then the default; one set of helpers."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_vleval.backends.service_spec import ServiceDescription
    from pytest_vleval.gate.rules import Rule

from pytest_vleval.options import (
    DEFAULT_CACHE_DIR,
    DEFAULT_MODEL,
    DEFAULT_STORAGE,
    DEVICES_HELP,
    DTYPES,
    QUANTIZATIONS,
    BenchOptions,
    RecordOptions,
    ReportOptions,
    VlOptions,
)

__all__ = ["integer", "parse_cost", "parse_options"]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_HINT = (
    " (an argument right after it was taken as its value: write {flag}=VALUE or put {flag} after the test paths)"
)


def _looks_like_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith((".yaml", ".yml", ".py"))


def integer(value: object, flag: str, minimum: int = 1) -> int:
    """An integer >= `minimum`, else a UsageError naming the flag (and saying so when it swallowed a path)."""
    try:
        number = int(str(value).strip())
    except ValueError:
        number = minimum - 1
    if number < minimum:
        text = str(value)
        hint = _PATH_HINT.format(flag=flag) if ("/" in text or "." in text) else ""
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise pytest.UsageError(f"{flag}={value!r}: expected {what}{hint}")
    return number


def parse_cost(raw: str, flag: str = "--vl-gpu-cost-per-hour") -> float:
    try:
        value = float(str(raw).strip().lstrip("$"))
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise pytest.UsageError(f"{flag}={raw!r}: expected a positive price in USD per hour, e.g. 2.5")
    return value


def _value(config: pytest.Config, dest: str, ini: str) -> str:
    """The command-line value, else the ini value, as stripped text."""
    cli = config.getoption(dest)
    return str(cli if cli is not None else config.getini(ini)).strip()


def _given(config: pytest.Config, dest: str, ini: str, flag: str) -> tuple[str | None, str, Path]:
    """(value or None, what to call it in an error, the folder a relative path is relative to)."""
    cli = config.getoption(dest)
    if cli is not None:
        return str(cli), flag, Path(config.invocation_params.dir)
    raw = str(config.getini(ini) or "").strip()
    return (raw or None), f"ini {ini}", Path(config.rootpath)


def parse_options(config: pytest.Config) -> VlOptions:
    """Read and validate every vleval option; bad values raise :class:`pytest.UsageError`."""
    models = [m.strip() for m in (config.getoption("vl_model") or config.getini("vl_models") or [DEFAULT_MODEL])]
    if any(not m for m in models):
        raise pytest.UsageError("--vl-model: empty model name")
    precisions, reference = _precisions(config)
    models = [variant for model in models for variant in _variants(model, precisions)]
    device = _value(config, "vl_device", "vl_device").lower()
    if not _DEVICE_RE.match(device):
        raise pytest.UsageError(f"--vl-device={device!r}: expected one of {DEVICES_HELP}")
    dtype = _value(config, "vl_dtype", "vl_dtype").lower()
    if dtype not in DTYPES:
        raise pytest.UsageError(f"--vl-dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
    raw_batch = _value(config, "vl_batch_size", "vl_batch_size").lower()
    trust = config.getoption("vl_trust_remote_code")
    quantization = _value(config, "vl_quantization", "vl_quantization").lower()
    if quantization not in QUANTIZATIONS:
        raise pytest.UsageError(f"--vl-quantization={quantization!r}: expected one of {', '.join(QUANTIZATIONS)}")
    min_pixels = _pixels(config, "vl_min_pixels", "--vl-min-pixels")
    max_pixels = _pixels(config, "vl_max_pixels", "--vl-max-pixels")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise pytest.UsageError(f"--vl-min-pixels={min_pixels} is above --vl-max-pixels={max_pixels}")
    judge = (_value(config, "vl_judge", "vl_judge") or "").strip() or None
    serve, serve_timeout = _serve(config)
    judge_repeat = integer(_value(config, "vl_judge_repeat", "vl_judge_repeat"), "--vl-judge-repeat")
    return VlOptions(
        models=tuple(dict.fromkeys(models)),
        judge=judge,
        judge_repeat=judge_repeat,
        serve=serve,
        serve_timeout=serve_timeout,
        endpoint=_endpoint(config, models),
        precisions=precisions,
        precision_reference=reference,
        device=device,
        dtype=dtype,
        max_new_tokens=integer(_value(config, "vl_max_new_tokens", "vl_max_new_tokens"), "--vl-max-new-tokens"),
        trust_remote_code=bool(trust if trust is not None else config.getini("vl_trust_remote_code")),
        batch_size=None if raw_batch == "auto" else integer(raw_batch, "--vl-batch-size"),
        case_files=tuple(config.getini("vl_case_files")),
        golden_files=tuple(config.getini("vl_golden_files")),
        concurrency=integer(_value(config, "vl_concurrency", "vl_concurrency"), "--vl-concurrency"),
        request_timeout=_request_timeout(config),
        api_key_env=_api_key_env(config),
        cache_dir=_cache_dir(config),
        refresh=bool(config.getoption("vl_refresh")),
        check_batch_invariance=bool(config.getoption("vl_check_batch_invariance")),
        quantization=quantization,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        data_roots=_data_roots(config),
        collection_cache=bool(config.getini("vl_collection_cache")),
        record=_record_options(config),
        bench=_bench_options(config),
        report=_report_options(config),
    )


def _precisions(config: pytest.Config) -> tuple[tuple[str, ...], str | None]:
    """--vl-precisions (checked) and --vl-precision-reference (one of them, or of the models' @PRECISION)."""
    from pytest_vleval.backends.precision import PRECISIONS, parse_precisions

    value, name, _ = _given(config, "vl_precisions", "vl_precisions", "--vl-precisions")
    try:
        precisions = parse_precisions(value, name) if value else ()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    reference, ref_name, _ = _given(
        config, "vl_precision_reference", "vl_precision_reference", "--vl-precision-reference"
    )
    if reference is not None:
        reference = reference.strip().lower()
        allowed = precisions or PRECISIONS
        if reference not in allowed:
            raise pytest.UsageError(f"{ref_name}={reference!r}: expected one of {', '.join(allowed)}")
    return precisions, reference


def _variants(model: str, precisions: tuple[str, ...]) -> list[str]:
    """A model at each precision (``tiny`` -> ``tiny@fp32``, ``tiny@int8``); as it is when it names its own or it
    is served (a server's precision is the server's)."""
    from pytest_vleval.backends.precision import split_precision

    if not precisions or split_precision(model)[1] is not None or "://" in model:
        return [model]
    return [f"{model}@{precision}" for precision in precisions]


def _endpoint(config: pytest.Config, models: list[str]) -> ServiceDescription | None:
    """--vl-endpoint's description, read and checked now: a broken one is a usage error naming file and key."""
    from pytest_vleval.backends.service_spec import DescriptionError, is_service_spec, read_description

    value, name, folder = _given(config, "vl_endpoint", "vl_endpoint", "--vl-endpoint")
    if value is None:
        service = next((m for m in models if is_service_spec(m)), None)
        if service is not None:
            raise pytest.UsageError(
                f"--vl-model={service}: a service needs an endpoint description: --vl-endpoint=service.yaml (or the "
                "ini key vl_endpoint) naming the image and question fields and the answer's path (README: Testing "
                "a deployed service)"
            )
        return None
    try:
        return read_description(value, folder)
    except DescriptionError as exc:
        raise pytest.UsageError(f"{name}: {exc}") from None


def _serve(config: pytest.Config) -> tuple[str | None, float]:
    """--vl-serve's command (a preset expanded) and how long to wait for it."""
    raw = _value(config, "vl_serve", "vl_serve")
    command = None
    if raw and raw != "None":
        from pytest_vleval.backends.managed import engine_command  # httpx and the engine presets: only when asked

        try:
            command = engine_command(raw)
        except ValueError as exc:
            raise pytest.UsageError(f"--vl-serve: {exc}") from None
    raw_timeout = _value(config, "vl_serve_timeout", "vl_serve_timeout")
    try:
        timeout = float(raw_timeout)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise pytest.UsageError(f"--vl-serve-timeout={raw_timeout!r}: expected a positive number of seconds")
    return command, timeout


def _pixels(config: pytest.Config, dest: str, flag: str) -> int | None:
    raw = _value(config, dest, dest)
    if not raw or raw == "None":
        return None
    value = integer(raw, flag)
    if value < 1:
        raise pytest.UsageError(f"{flag}={raw!r}: expected a positive number of pixels, e.g. {1280 * 28 * 28}")
    return value


def _data_roots(config: pytest.Config) -> tuple[Path, ...]:
    """The ini's extra image folders, resolved; a relative one is relative to the ini file's folder."""
    base = Path(config.inipath.parent if config.inipath else config.rootpath)
    lines = (str(line).strip() for line in config.getini("vl_data_roots"))
    return tuple(dict.fromkeys((base / Path(line).expanduser()).resolve() for line in lines if line))


def _request_timeout(config: pytest.Config) -> float:
    raw = _value(config, "vl_request_timeout", "vl_request_timeout")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise pytest.UsageError(f"--vl-request-timeout={raw!r}: expected a positive number of seconds")
    return seconds


def _api_key_env(config: pytest.Config) -> str:
    name = _value(config, "vl_api_key_env", "vl_api_key_env")
    if not _ENV_NAME_RE.match(name):
        raise pytest.UsageError(f"--vl-api-key-env={name!r}: expected an environment variable name")
    return name


def _cache_dir(config: pytest.Config) -> str:
    no_cache = bool(config.getoption("vl_no_cache"))
    if no_cache and config.getoption("vl_refresh"):
        raise pytest.UsageError("--vl-refresh: there is no answer cache to refresh with --vl-no-cache")
    if no_cache:
        return ""
    cli_dir = config.getoption("vl_cache_dir")
    # A command-line folder is relative to where pytest was invoked, an ini one to the rootdir.
    base = Path(config.invocation_params.dir) if cli_dir else Path(config.rootpath)
    raw_dir = str(cli_dir or config.getini("vl_cache_dir") or DEFAULT_CACHE_DIR).strip()
    if not raw_dir:
        raise pytest.UsageError("--vl-cache-dir: empty folder name")
    return str((base / Path(raw_dir).expanduser()).resolve())


def _record_options(config: pytest.Config) -> RecordOptions:
    from pytest_vleval.gate.rules import SpecError, needs_benchmark, parse_fail_spec
    from pytest_vleval.records.storage import StorageError, check_name

    save = config.getoption("vl_save")
    if save is None and config.getoption("vl_autosave"):
        save = ""
    if save:
        try:
            check_name(save)
        except StorageError as exc:
            hint = _PATH_HINT.format(flag="--vl-save") if _looks_like_path(save) else ""
            raise pytest.UsageError(f"{exc}{hint}") from None
    invocation = Path(config.invocation_params.dir)
    storage_cli = config.getoption("vl_storage")
    base = config.inipath.parent if config.inipath else config.rootpath
    storage = (
        invocation / storage_cli
        if storage_cli
        else Path(base) / (_value(config, "vl_storage", "vl_storage") or DEFAULT_STORAGE)
    )
    json_path = config.getoption("vl_json")
    compare = config.getoption("vl_compare")
    spec_cli = config.getoption("vl_compare_fail")
    spec = _value(config, "vl_compare_fail", "vl_compare_fail")
    rules: tuple[Rule, ...] = ()
    if spec:
        try:
            rules = parse_fail_spec(spec, "--vl-compare-fail" if spec_cli is not None else "ini vl_compare_fail")
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None
    # Limits on a precision variant (accuracy@int4:-5pp) are checked within the run, the others against --vl-compare.
    in_run = tuple(rule for rule in rules if rule.precision is not None)
    rules = tuple(rule for rule in rules if rule.precision is None)
    if rules and compare is None:
        if spec_cli is not None:
            raise pytest.UsageError(
                "--vl-compare-fail needs --vl-compare (which saved run to compare with: latest, a number, a name or "
                "a path); only limits on a precision variant (accuracy@int4:-5pp) are checked within the run"
            )
        rules = ()  # the ini's limits against a baseline apply when a run is compared
    if not config.getoption("vl_benchmark") and (missing := needs_benchmark((*rules, *in_run))):
        raise pytest.UsageError(
            f"--vl-compare-fail: {', '.join(missing)} is measured by the latency benchmarks: add --vl-benchmark"
        )
    return RecordOptions(
        save=save,
        json_path=invocation / json_path if json_path else None,
        storage=storage,
        compare=compare,
        rules=rules,
        precision_rules=in_run,
        significance=_significance(config),
    )


def _significance(config: pytest.Config) -> float | None:
    raw = _value(config, "vl_compare_significance", "vl_compare_significance")
    if not raw:
        return None
    try:
        alpha = float(raw)
    except ValueError:
        alpha = -1.0
    if not 0 < alpha < 1:
        raise pytest.UsageError(f"--vl-compare-significance={raw!r}: expected a level between 0 and 1, e.g. 0.05")
    return alpha


def _bench_options(config: pytest.Config) -> BenchOptions:
    raw = config.getoption("vl_benchmark")
    items = 0 if raw is None else integer(raw, "--vl-benchmark")
    if items and not config.pluginmanager.has_plugin("benchmark"):
        raise pytest.UsageError(
            "--vl-benchmark needs pytest-benchmark (installed, and not disabled with -p no:benchmark)"
        )
    return BenchOptions(
        items=items,
        rounds=integer(_value(config, "vl_benchmark_rounds", "vl_benchmark_rounds"), "--vl-benchmark-rounds"),
        warmup=integer(_value(config, "vl_benchmark_warmup", "vl_benchmark_warmup"), "--vl-benchmark-warmup", 0),
    )


def _view_path(config: pytest.Config, dest: str, ini: str, flag: str, suffixes: tuple[str, ...]) -> Path | None:
    raw, _, base = _given(config, dest, ini, flag)
    if raw is None:
        return None
    if not raw.lower().endswith(suffixes):
        article = "an" if suffixes[0] == ".html" else "a"
        hint = ""
        if _looks_like_path(raw) or raw.endswith("/"):
            hint = f" (an argument right after it was taken as its value: write {flag}=PATH{suffixes[0]})"
        raise pytest.UsageError(f"{flag}={raw!r}: expected the path of {article} {suffixes[0]} file{hint}")
    return base / Path(raw).expanduser()


def _report_options(config: pytest.Config) -> ReportOptions:
    raw_cost, cost_flag, _ = _given(config, "vl_gpu_cost_per_hour", "vl_gpu_cost_per_hour", "--vl-gpu-cost-per-hour")
    raw_volume, volume_flag, _ = _given(config, "vl_requests_per_day", "vl_requests_per_day", "--vl-requests-per-day")
    volume = None if raw_volume is None else float(integer(raw_volume, volume_flag))
    if volume is not None and raw_cost is None:
        raise pytest.UsageError(f"{volume_flag} needs --vl-gpu-cost-per-hour (the price the monthly cost is made of)")
    return ReportOptions(
        requests_per_day=volume,
        html=_view_path(config, "vl_report", "vl_report", "--vl-report", (".html", ".htm")),
        cost_per_hour=None if raw_cost is None else parse_cost(raw_cost, cost_flag),
        markdown=_view_path(config, "vl_markdown", "vl_markdown", "--vl-markdown", (".md", ".markdown")),
        github_step_summary=bool(config.getini("vl_github_step_summary")),
    )
