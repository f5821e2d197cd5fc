"""pytest entry point: options, hooks and fixtures only; each hook hands over to the stage that owns the work
(docs/ARCHITECTURE.md): ``cases`` collects, ``predict`` answers, ``scoring`` scores, ``records`` records and
gates, ``report`` shows. Nothing heavy is imported here (``pytest --help`` never loads torch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vleval import hookspec
from pytest_vleval.options.flags import addoption
from pytest_vleval.session import SESSION_KEY, VlSession, get_session

if TYPE_CHECKING:
    from pytest_vleval.backends.base import Backend, ModelSpec
    from pytest_vleval.options import VlOptions


def pytest_addoption(parser: pytest.Parser) -> None:
    addoption(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


@pytest.hookimpl
def pytest_configure(config: pytest.Config) -> None:
    from pytest_vleval.session import build_session, session_started

    config.stash[SESSION_KEY] = build_session(config)
    session_started()


@pytest.hookimpl(trylast=True)
def pytest_vleval_load_model(config: pytest.Config, spec: ModelSpec, options: VlOptions) -> Backend:
    from pytest_vleval.backends.loader import load_backend

    return load_backend(spec, options)


@pytest.hookimpl
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    from pytest_vleval.cases.casefile import matches_any

    vl = get_session(parent.config)
    if matches_any(file_path.name, vl.options.case_files):
        from pytest_vleval.cases.items import CaseFileNode

        return CaseFileNode.from_parent(parent, path=file_path)
    if matches_any(file_path.name, vl.options.golden_files):
        from pytest_vleval.cases.golden_items import GoldenFileNode

        return GoldenFileNode.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from pytest_vleval.predict.planning import group_by_model

    group_by_model(items, get_session(config).models)


@pytest.hookimpl(trylast=True)  # the freeze after every other plugin's collection work
def pytest_collection_finish(session: pytest.Session) -> None:
    from pytest_vleval.predict.planning import plan
    from pytest_vleval.session import freeze_collected

    plan(get_session(session.config).predictor, session)
    freeze_collected(session)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vl_model" in metafunc.fixturenames:
        models = get_session(metafunc.config).models
        metafunc.parametrize("vl_model", models, indirect=True, scope="session", ids=[m.label for m in models])


@pytest.fixture(scope="session")
def vl_model(request: pytest.FixtureRequest) -> Backend:
    """The loaded model (a Backend: ``generate(conversations)``), once per session per process per model."""
    from pytest_vleval.predict.pool import ModelLoadFailed

    vl = get_session(request.config)
    spec = getattr(request, "param", vl.models[0])
    try:
        return vl.pool.get(spec)
    except ModelLoadFailed as exc:
        failure = exc
    pytest.fail(vl.pool.load_failure(failure, request.node.nodeid), pytrace=False)  # outside: no chained report


@pytest.hookimpl
def pytest_sessionfinish(session: pytest.Session) -> None:
    if SESSION_KEY in session.config.stash:
        vl: VlSession = get_session(session.config)
        vl.pool.close()
        vl.golden.close()
        if vl.judge is not None:
            vl.judge.pool.close()
        vl.predictor.close()


@pytest.hookimpl(trylast=True)  # after pytest's own clean-up (its final gc.collect() skips the frozen tree)
def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION_KEY in config.stash:
        from pytest_vleval.session import session_ended

        session_ended(get_session(config).frozen)


@pytest.hookimpl
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if SESSION_KEY in config.stash:
        from pytest_vleval.report.terminal import write_summary

        write_summary(terminalreporter, get_session(config).recorder)
