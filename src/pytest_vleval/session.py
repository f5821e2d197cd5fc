"""The run state of one pytest session, kept in ``config.stash``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_vleval.backends.base import Backend, ModelSpec
from pytest_vleval.options import VlOptions
from pytest_vleval.predict.judging import JudgeRunner
from pytest_vleval.predict.pool import ModelPool
from pytest_vleval.predict.predictor import BatchPredictor
from pytest_vleval.records.recorder import Recorder
from pytest_vleval.scoring.golden import GoldenScorer

__all__ = [
    "FREEZE_FROM_ITEMS",
    "SESSION_KEY",
    "VlSession",
    "build_session",
    "freeze",
    "freeze_collected",
    "get_session",
    "session_ended",
    "session_started",
]


@dataclass
class VlSession:
    options: VlOptions
    models: list[ModelSpec]
    pool: ModelPool  # one model resident at a time, each loaded once per process
    predictor: BatchPredictor  # answers (cached or generated in batches) for the case and golden items
    recorder: Recorder  # every result arrives here; it builds the run record
    golden: GoldenScorer  # each golden set scored once per (set, model), one METEOR process for all
    judge: JudgeRunner | None = None  # --vl-judge: grades the turns of scorer judge, resident beside the models
    frozen: bool = False  # the collected tree is gc.freeze()d for the run (freeze, below)


SESSION_KEY = pytest.StashKey[VlSession]()


def get_session(config: pytest.Config) -> VlSession:
    return config.stash[SESSION_KEY]


def _batch_size(options: VlOptions) -> Callable[[Backend], int]:
    def batch_size(backend: Backend) -> int:
        if options.batch_size is not None:
            return options.batch_size
        if backend.preferred_batch_size:  # e.g. an HTTP backend's concurrency
            return backend.preferred_batch_size
        return 8 if str(backend.info.get("device", "cpu")).startswith("cpu") else 16

    return batch_size


def build_session(config: pytest.Config) -> VlSession:
    """Parse the options, resolve the models and build the session's pool, predictor and recorder; register
    the recorder (and the latency items) as plugins. Bad options raise :class:`pytest.UsageError`."""
    from pytest_vleval.backends.registry import resolve_models
    from pytest_vleval.cases.golden_items import GOLDEN_MARKER
    from pytest_vleval.cases.items import MARKER
    from pytest_vleval.options.parse import parse_options
    from pytest_vleval.predict.predictor import make_predictor

    config.addinivalue_line("markers", f"{MARKER}: a pytest-vleval case (added to every YAML case)")
    config.addinivalue_line("markers", f"{GOLDEN_MARKER}: a gated metric of a golden caption set")
    config.addinivalue_line("markers", "vleval_benchmark: a latency benchmark item of a case (--vl-benchmark)")
    options = parse_options(config)
    helping = bool(config.getoption("help", False))
    if options.quantization != "none" and not helping:
        from pytest_vleval.backends.precision import check_quantization

        check_quantization(options.quantization, options.device)  # a UsageError without a CUDA GPU
    try:
        models = resolve_models(options.models, rootdir=Path(config.rootpath))
    except ValueError as exc:  # a malformed openai:// spec
        raise pytest.UsageError(f"--vl-model: {exc}") from None
    if not helping and any(spec.precision in ("int8", "int4") for spec in models):
        from pytest_vleval.backends.precision import check_variants

        check_variants([spec.precision for spec in models], options.device)  # names the package to install

    def load(spec: ModelSpec) -> object:
        backend = config.hook.pytest_vleval_load_model(config=config, spec=spec, options=options)
        if backend is None:
            raise RuntimeError(f"no pytest_vleval_load_model implementation loaded {spec.requested!r}")
        return backend

    pool = ModelPool(load)
    predictor = make_predictor(config, options, pool, _batch_size(options))
    recorder = Recorder(config, options, models, pool, predictor)
    if not hasattr(config, "workerinput") and not helping:
        recorder.load_baseline()  # at configure time, so a bad reference fails before the run
    config.pluginmanager.register(recorder, Recorder.PLUGIN_NAME)
    if options.bench.items:
        from pytest_vleval.bench.latency import LatencyItems

        config.pluginmanager.register(LatencyItems(options.bench.items), "vleval-latency")
    if config.pluginmanager.has_plugin("benchmark"):
        from pytest_vleval.bench.hooks import BenchmarkHooks

        config.pluginmanager.register(BenchmarkHooks(config), "vleval-benchmark-hooks")
    judge = make_judge(config, options, load, predictor) if options.judge else None
    if judge is not None:
        from pytest_vleval.records.recorder import JudgeStatus

        config.pluginmanager.register(JudgeStatus(), JudgeStatus.PLUGIN_NAME)
    return VlSession(options, models, pool, predictor, recorder, GoldenScorer(), judge)


def make_judge(
    config: pytest.Config, options: VlOptions, load: Callable[[ModelSpec], object], predictor: BatchPredictor
) -> JudgeRunner:
    """The judge of --vl-judge: its own pool (resident beside the model under test), the answer cache's folder
    and fingerprints for its verdict cache."""
    from pytest_vleval.backends.registry import resolve_model
    from pytest_vleval.predict.fingerprints import ModelFingerprints, third_party_loaders

    assert options.judge is not None
    try:
        spec = resolve_model(options.judge, rootdir=Path(config.rootpath))
    except ValueError as exc:
        raise pytest.UsageError(f"--vl-judge: {exc}") from None
    pool = ModelPool(load)
    cache = predictor.cache
    fingerprints = None
    if cache is not None:
        fingerprints = ModelFingerprints(options, cache, pool.get, lambda: third_party_loaders(config))
    return JudgeRunner(spec, pool, repeat=options.judge_repeat, cache=cache, fingerprint=fingerprints)


# From this many collected items on, the collected tree is moved out of the garbage collector's reach for the run.
FREEZE_FROM_ITEMS = 2000
_active_sessions = [0]  # pytest sessions of this process under way (an in-process pytester run nests one)


def session_started() -> None:
    _active_sessions[0] += 1


def freeze_collected(session: pytest.Session) -> None:
    """After collection: ``gc.freeze()`` the collected tree (items, cases, their marks), which lives until the end
    of the process anyway, so that the collector's full passes (during the run, while the record is built, and the
    interpreter's own at exit) stop walking it again and again: with 20,000 cases about 3 s of a 15 s run, most of
    it at exit. :func:`session_ended` undoes it for a session nested in another (pytester's in-process runs), whose
    objects must be collectable afterwards."""
    if len(session.items) >= FREEZE_FROM_ITEMS:
        freeze(session)


def freeze(session: pytest.Session) -> None:
    """``gc.freeze()`` now, noted on the session so that a nested one unfreezes at its end (``session_ended``)."""
    import gc

    gc.freeze()
    get_session(session.config).frozen = True


def session_ended(frozen: bool) -> None:
    """The end of a session: a nested one unfreezes what it froze; the outermost leaves it frozen for the exit
    that follows (a program calling ``pytest.main()`` repeatedly keeps each large session's tree until it ends)."""
    _active_sessions[0] = max(0, _active_sessions[0] - 1)
    if frozen and _active_sessions[0] > 0:
        import gc

        gc.unfreeze()
