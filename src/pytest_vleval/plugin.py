"""pytest entry point: options, hooks and fixtures only; the logic lives in the modules they call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vleval import hookspec
from pytest_vleval.cases import matches_any
from pytest_vleval.options import addoption, parse_options
from pytest_vleval.session import SESSION_KEY, VlSession, get_session

if TYPE_CHECKING:
    from pytest_vleval.models import Backend, ModelSpec
    from pytest_vleval.options import VlOptions


def pytest_addoption(parser: pytest.Parser) -> None:
    from pytest_vleval import regression, reporting

    addoption(parser)
    regression.addoption(parser)
    reporting.addoption(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


@pytest.hookimpl
def pytest_configure(config: pytest.Config) -> None:
    from pytest_vleval.collect import MARKER
    from pytest_vleval.models import resolve_models
    from pytest_vleval.predict import ModelPool, make_predictor

    config.addinivalue_line("markers", f"{MARKER}: a pytest-vleval case (added to every YAML case)")
    config.addinivalue_line("markers", "vleval_golden: a gated metric of a golden caption set")
    options = parse_options(config)
    if options.quantization != "none" and not config.getoption("help", False):
        from pytest_vleval.precision import check_quantization

        check_quantization(options.quantization, options.device)  # a UsageError without a CUDA GPU
    try:
        models = resolve_models(options.models, rootdir=Path(config.rootpath))
    except ValueError as exc:  # a malformed openai:// spec
        raise pytest.UsageError(f"--vl-model: {exc}") from None

    def load(spec: ModelSpec) -> Backend:
        backend = config.hook.pytest_vleval_load_model(config=config, spec=spec, options=options)
        if backend is None:
            raise RuntimeError(f"no pytest_vleval_load_model implementation loaded {spec.requested!r}")
        return backend

    def batch_size(backend: Backend) -> int:
        if options.batch_size is not None:
            return options.batch_size
        preferred = getattr(backend, "preferred_batch_size", None)  # e.g. an HTTP backend's concurrency
        if isinstance(preferred, int) and preferred > 0:
            return preferred
        return 8 if str(backend.info.get("device", "cpu")).startswith("cpu") else 16

    pool = ModelPool(load)
    config.stash[SESSION_KEY] = VlSession(
        options=options,
        models=models,
        pool=pool,
        predictor=make_predictor(config, options, pool, batch_size),
    )
    from pytest_vleval.regression import configure as configure_regression

    configure_regression(config)  # saved runs, the gate, latency items
    from pytest_vleval.reporting import configure as configure_reporting

    configure_reporting(config)  # the model comparison table and the HTML report


@pytest.hookimpl(trylast=True)
def pytest_vleval_load_model(config: pytest.Config, spec: ModelSpec, options: VlOptions) -> Backend:
    from pytest_vleval.openai_backend import is_openai_spec

    if is_openai_spec(spec.source):
        from pytest_vleval.openai_backend import OpenAIBackend

        return OpenAIBackend(spec, options)
    from pytest_vleval.hf import TransformersBackend

    return TransformersBackend(spec, options)


@pytest.hookimpl
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    vl = get_session(parent.config)
    if matches_any(file_path.name, vl.options.case_files):
        from pytest_vleval.collect import CaseFileNode

        return CaseFileNode.from_parent(parent, path=file_path)
    if matches_any(file_path.name, vl.options.golden_files):
        from pytest_vleval.captioning import GoldenFileNode

        return GoldenFileNode.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from pytest_vleval.captioning import GoldenItem
    from pytest_vleval.collect import CaseItem

    # Run each model's cases together so a model is loaded once and freed before the next.
    positions = [i for i, item in enumerate(items) if isinstance(item, (CaseItem, GoldenItem))]
    order = {spec.label: n for n, spec in enumerate(get_session(config).models)}
    grouped = sorted((items[i] for i in positions), key=lambda item: order[item.spec.label])  # type: ignore[attr-defined]
    for position, item in zip(positions, grouped, strict=True):
        items[position] = item


@pytest.hookimpl
def pytest_collection_finish(session: pytest.Session) -> None:
    from pytest_vleval.planning import prediction_work, worker_queue

    predictor = get_session(session.config).predictor
    predictor.plan(prediction_work(session.items))
    queue = worker_queue(session.config)  # an xdist worker batches only the cases it runs
    if queue is not None:
        predictor.upcoming = queue.upcoming_work


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vl_model" in metafunc.fixturenames:
        models = get_session(metafunc.config).models
        metafunc.parametrize("vl_model", models, indirect=True, scope="session", ids=[m.label for m in models])


@pytest.fixture(scope="session")
def vl_model(request: pytest.FixtureRequest) -> Any:
    """The loaded model (a Backend: ``generate(conversations)``), once per session per process per model."""
    vl = get_session(request.config)
    spec = getattr(request, "param", vl.models[0])
    from pytest_vleval.predict import PredictionError

    try:
        return vl.pool.get(spec)
    except PredictionError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.hookimpl
def pytest_sessionfinish(session: pytest.Session) -> None:
    if SESSION_KEY in session.config.stash:
        vl = get_session(session.config)
        vl.pool.close()
        if vl.caption_evaluator is not None:
            vl.caption_evaluator.close()


@pytest.hookimpl
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    node = getattr(report, "node", None)  # pytest-xdist's controller sets it on every report from a worker
    config = getattr(node, "config", None)
    if isinstance(config, pytest.Config) and SESSION_KEY in config.stash:
        from pytest_vleval.report import take_worker_report

        take_worker_report(get_session(config), report)


@pytest.hookimpl
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if SESSION_KEY not in config.stash:
        return
    from pytest_vleval.report import summary_lines

    lines = summary_lines(get_session(config))
    if lines:
        terminalreporter.section("vleval summary")
        for line in lines:
            terminalreporter.write_line(line)
