"""Case files become pytest items: one real ``pytest.Function`` per (case, model).

Items are ``pytest.Function`` subclasses so that fixtures (``benchmark`` included), ``usefixtures``, marks,
``-k``/``-m`` and ``--lf`` behave exactly as for Python tests. :class:`VlItem` is the scaffolding every item of
the plugin shares (case items here, golden-set items in ``golden_items.py``, latency items in
``bench/latency.py``): a per-item test function carrying its marks, the model, and the location shown in reports.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.backends.base import ModelSpec
from pytest_vleval.cases.casefile import Case, CaseFileError
from pytest_vleval.records.recorder import attach_result
from pytest_vleval.scoring.outcome import evaluate, failure_message
from pytest_vleval.session import get_session

__all__ = ["MARKER", "CaseFileNode", "CaseItem", "VlItem"]

MARKER = "vleval"


def _test_function(marks: Sequence[pytest.MarkDecorator]) -> Any:
    def vleval_test(request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        item = request.node
        assert isinstance(item, VlItem)
        item.run_test(request)

    vleval_test.pytestmark = [getattr(pytest.mark, MARKER), *marks]  # type: ignore[attr-defined]
    return vleval_test


class VlItem(pytest.Function):
    """A test of one model: a case, a golden set's metric, or a latency benchmark."""

    def __init__(self, *, spec: ModelSpec, **kwargs: Any) -> None:
        self.spec = spec
        super().__init__(**kwargs)
        _parse_own_id(self)

    @classmethod
    def create(
        cls,
        parent: pytest.Collector,
        name: str,
        marks: Sequence[pytest.MarkDecorator] = (),
        callobj: Any = None,
        **fields: Any,
    ) -> Any:
        """An item whose test function carries `marks` (and the plugin's own ``vleval`` mark); or `callobj`, such a
        function made before (items with the same marks share one, as a parametrised test's items do)."""
        return cls.from_parent(parent, name=name, callobj=callobj or _test_function(marks), **fields)

    def runtest(self) -> None:
        """The test; when its model could not be loaded, one failure that tells why (or where that was told).

        PIL's DecompressionBombWarning is silenced here: the image's case reported it at collection
        (``cases/images.py``), and a batch opens other cases' images, so PIL's own warning would land on this test.
        """
        from PIL import Image

        from pytest_vleval.predict.pool import ModelLoadFailed

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                super().runtest()
        except ModelLoadFailed as exc:
            if exc.skip:
                raise pytest.skip.Exception(f"model {exc.label}: {exc.reason}", _use_item_location=True) from None
            pytest.fail(get_session(self.config).pool.load_failure(exc, self.nodeid), pytrace=False)

    def run_test(self, request: pytest.FixtureRequest) -> None:
        raise NotImplementedError

    def location_line(self) -> int:
        """0-based line of the item in its file, for reports."""
        return 0

    def location_name(self) -> str:
        return self.name

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.location_line(), self.location_name()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A ``pytest.fail(..., pytrace=False)`` message alone: every frame of ours is hidden, and pytest would
        otherwise add "All traceback entries are hidden" to each failure. ``--full-trace`` shows everything."""
        if (
            isinstance(excinfo.value, pytest.fail.Exception)
            and not excinfo.value.pytrace
            and not self.config.getoption("fulltrace", False)
        ):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def _parse_own_id(item: pytest.Item) -> None:
    """Give the item the structured id pytest reads back from its cache (pytest >= 9.2).

    pytest 9.2 gives each node a ``NodeId`` (path, names, params). A ``Function`` built without a callspec keeps
    ``one[tiny]`` as a single name, while ``--lf``, ``--ff`` and ``--sw`` parse the saved id string into name
    ``one`` and params ``tiny``; the two never compare equal and every case reruns. Re-parsing the item's own id
    string gives the form the cache plugins compare with. Older pytest has no ``NodeId`` (string ids): nothing to
    do. Guarded: ``tests/test_rerun.py`` fails if pytest changes this.
    """
    node_id = getattr(item, "_id", None)
    parse = getattr(type(node_id), "parse", None)
    if node_id is not None and callable(parse):
        item._id = parse(str(node_id))  # type: ignore[attr-defined]


def _marks(config: pytest.Config, case: Case) -> list[pytest.MarkDecorator]:
    marks = []
    for tag in case.tags:
        # Tags are declared by the case file itself, so they count as registered under --strict-markers.
        config.addinivalue_line("markers", f"{tag}: vleval case tag")
        marks.append(getattr(pytest.mark, tag))
    if case.fixtures:
        marks.append(pytest.mark.usefixtures(*case.fixtures))
    if case.skip is not None:
        marks.append(pytest.mark.skip(reason=case.skip or "skipped in the case file"))
    if case.xfail is not None:
        marks.append(pytest.mark.xfail(reason=case.xfail or "expected to fail (case file)"))
    return marks


class CaseItem(VlItem):
    """One case of a YAML file, run against one model."""

    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        self.case = case
        super().__init__(**kwargs)

    def run_test(self, request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        vl = get_session(self.config)
        if vl.judge is None and any(turn.scorer == "judge" for turn in self.case.turns):
            # Skips are reported at the case (file:line), not inside pytest's call machinery.
            raise pytest.skip.Exception(
                "scorer 'judge' needs a judge model: --vl-judge=SPEC (the built-in one is tiny-judge)",
                _use_item_location=True,
            )
        prediction = vl.predictor.predict(self.spec, self.case)
        if prediction.skipped is not None:
            raise pytest.skip.Exception(f"model {self.spec.label}: {prediction.skipped}", _use_item_location=True)
        convention: str | None = None
        resized: tuple[tuple[int, int], ...] = ()
        pixels = vl.predictor.asking(self.spec).pixels(self.case)
        if prediction.error is None and any(turn.scorer == "iou" for turn in self.case.turns):
            from pytest_vleval.backends.families import box_context

            info = vl.pool.infos.get(self.spec.label)
            convention, resized = box_context(
                self.spec,
                self.case.images,
                info=info,
                trust_remote_code=vl.options.trust_remote_code,
                pixels=pixels,
            )
        result = evaluate(
            self.case,
            self.spec.label,
            prediction,
            box_convention=convention,
            resized_sizes=resized,
            pixels=pixels,
            judge=vl.judge,
        )
        attach_result(self, "case", result.to_dict())
        if not result.passed:
            pytest.fail(failure_message(self.case, result), pytrace=False)

    def location_line(self) -> int:
        return self.case.line - 1

    def location_name(self) -> str:
        return f"{self.case.id}[{self.spec.label}]"


class CaseFileNode(pytest.File):
    """A YAML case file."""

    def collect(self) -> list[pytest.Item]:  # type: ignore[override]
        """The file's items, built with the garbage collector paused: a 20,000-case file allocates millions of
        objects that all live on (cases, items, marks), and the collector's passes over them while they are made
        cost a third of collecting it. Little is thrown away meanwhile; what is cyclic waits for the next pass."""
        import gc

        from pytest_vleval.session import FREEZE_FROM_ITEMS, freeze

        paused = gc.isenabled()
        gc.disable()
        try:
            items = list(self._items())
            if len(items) >= FREEZE_FROM_ITEMS:
                freeze(self.session)  # what this file made lives on: no pass over it when the collector resumes
            return items
        finally:
            if paused:
                gc.enable()

    def _items(self) -> Iterator[pytest.Item]:
        from pytest_vleval.cases.parsed_cache import FOLDER, load_case_file_kept

        vl = get_session(self.config)
        rootdir = self.config.rootpath
        try:
            case_file = load_case_file_kept(
                self.path,
                roots=(rootdir, *vl.options.data_roots),
                image_store=rootdir / ".vleval" / "images",
                folder=rootdir / FOLDER if vl.options.collection_cache else None,
            )
        except CaseFileError as exc:
            raise self.CollectError(str(exc)) from None
        # Every item of the file calls the same one-argument test function, so pytest's fixture analysis of the
        # first (its signature, autouse fixtures, closure) holds for all but those with their own usefixtures
        # marks: computed once, not once per case (a third of collecting a 20,000-case file).
        shared: Any = None
        # One test function per set of marks (most cases have the same), like a parametrised test's items.
        functions: dict[tuple[Any, ...], tuple[Any, bool]] = {}
        for case in case_file.cases:
            key = (case.tags, case.fixtures, case.skip, case.xfail)
            if key not in functions:
                marks = _marks(self.config, case)
                own = any(mark.name == "usefixtures" for mark in marks)  # then its own fixture analysis
                functions[key] = (_test_function(marks), own)
            function, own = functions[key]
            for spec in vl.models:
                extra = {} if own or shared is None else {"fixtureinfo": shared}
                item = CaseItem.create(
                    self, f"{case.id}[{spec.label}]", callobj=function, case=case, spec=spec, **extra
                )
                if shared is None and not own:
                    shared = item._fixtureinfo
                yield item
