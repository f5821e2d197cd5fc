"""Every ``--vl-*`` option and ini key, declared in one table (``flags.py``) and parsed once (``parse.py``) into
a frozen :class:`VlOptions`. Bad values raise :class:`pytest.UsageError` naming the flag and what it accepts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_vleval.backends.openai_api import DEFAULT_API_KEY_ENV
from pytest_vleval.backends.precision import QUANTIZATIONS

if TYPE_CHECKING:
    from pytest_vleval.backends.service_spec import ServiceDescription
    from pytest_vleval.gate.rules import Rule

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_MODEL",
    "DTYPES",
    "QUANTIZATIONS",
    "BenchOptions",
    "RecordOptions",
    "ReportOptions",
    "VlOptions",
]

DEVICES_HELP = "auto, cpu, cuda, cuda:N, mps"
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_MODEL = "tiny"
DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_CASE_FILES = ("test_*.yaml", "test_*.yml")
DEFAULT_GOLDEN_FILES = ("golden*.yaml", "golden*.yml")
DEFAULT_CONCURRENCY = 4
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_CACHE_DIR = ".vleval/cache"
DEFAULT_STORAGE = ".vleval/runs"
DEFAULT_BENCHMARK_CASES = 3
DEFAULT_BENCHMARK_ROUNDS = 5
DEFAULT_BENCHMARK_WARMUP = 1


@dataclass(frozen=True)
class RecordOptions:
    """Saved runs and the regression gate."""

    save: str | None = None  # a run name, "" for an automatic one, None when not saving to the storage
    json_path: Path | None = None
    storage: Path = Path(DEFAULT_STORAGE)
    compare: str | None = None  # "latest", a number, a name or a path
    rules: tuple[Rule, ...] = ()
    precision_rules: tuple[Rule, ...] = ()  # accuracy@int4:-5pp: a variant against the run's reference variant
    significance: float | None = None

    @property
    def wants_record(self) -> bool:
        return (
            self.save is not None
            or self.json_path is not None
            or self.compare is not None
            or bool(self.precision_rules)
        )


@dataclass(frozen=True)
class BenchOptions:
    """Latency items (``--vl-benchmark``)."""

    items: int = 0  # benchmark items per model; 0: none
    rounds: int = DEFAULT_BENCHMARK_ROUNDS
    warmup: int = DEFAULT_BENCHMARK_WARMUP


@dataclass(frozen=True)
class ReportOptions:
    """Views of the record written to files: the HTML report, the Markdown summary."""

    html: Path | None = None
    cost_per_hour: float | None = None  # USD per GPU hour, for the cost column
    requests_per_day: float | None = None  # with cost_per_hour: the precision table's monthly cost
    markdown: Path | None = None
    github_step_summary: bool = True  # append the Markdown summary to $GITHUB_STEP_SUMMARY when it is set


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
    # The answer cache (predict/cache.py): its absolute folder, "" when off; --vl-refresh regenerates every answer.
    cache_dir: str = ""
    refresh: bool = False
    check_batch_invariance: bool = False
    quantization: str = "none"  # backends/precision.QUANTIZATIONS: bitsandbytes weights on a CUDA GPU
    min_pixels: int | None = None  # image resolution limits (None: the model's own); a case file's win
    max_pixels: int | None = None
    # Resolved folders (ini vl_data_roots) that case files and golden sets may name images in besides the rootdir.
    data_roots: tuple[Path, ...] = ()
    # ini vl_collection_cache: the parsed cases of large case files are kept (cases/parsed_cache.py)
    collection_cache: bool = True
    record: RecordOptions = field(default_factory=RecordOptions)
    bench: BenchOptions = field(default_factory=BenchOptions)
    report: ReportOptions = field(default_factory=ReportOptions)
    judge: str | None = None  # --vl-judge: the model that grades the cases of scorer judge
    judge_repeat: int = 1  # --vl-judge-repeat: verdicts per judged answer
    serve: str | None = None  # --vl-serve: the engine command ({model}, {port}) started for each model
    serve_timeout: float = 600.0
    # --vl-precisions: the variants each model runs at (models already expanded to MODEL@PRECISION);
    # --vl-precision-reference: the one the others are compared with (None: each model's first)
    precisions: tuple[str, ...] = ()
    precision_reference: str | None = None
    # --vl-endpoint: how http:// and gradio:// models are asked (backends/service_spec.ServiceDescription)
    endpoint: ServiceDescription | None = None
