"""Case files become pytest items: one real ``pytest.Function`` per (case, model).

Items are ``pytest.Function`` subclasses so that fixtures (``benchmark`` included), ``usefixtures``, marks,
``-k``/``-m`` and ``--lf`` behave exactly as for Python tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pytest_vleval.cases import Case, CaseFileError, load_case_file
from pytest_vleval.models import ModelSpec
from pytest_vleval.outcome import evaluate, failure_message
from pytest_vleval.session import get_session

MARKER = "vleval"


def _marks(config: pytest.Config, case: Case) -> list[pytest.MarkDecorator]:
    marks = [getattr(pytest.mark, MARKER)]
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


def _test_function(marks: list[pytest.MarkDecorator]) -> Any:
    def vleval_case(request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        item = request.node
        assert isinstance(item, CaseItem)
        item.run_case()

    vleval_case.pytestmark = marks  # type: ignore[attr-defined]
    return vleval_case


class CaseItem(pytest.Function):
    """One case of a YAML file, run against one model."""

    def __init__(self, *, case: Case, spec: ModelSpec, **kwargs: Any) -> None:
        self.case = case
        self.spec = spec
        super().__init__(**kwargs)

    def run_case(self) -> None:
        __tracebackhide__ = True
        vl = get_session(self.config)
        prediction = vl.predictor.predict(self.spec, self.case)
        if prediction.skipped is not None:
            pytest.skip(f"model {self.spec.label}: {prediction.skipped}")
        convention: str | None = None
        resized: tuple[tuple[int, int], ...] = ()
        if prediction.error is None and any(turn.scorer == "iou" for turn in self.case.turns):
            from pytest_vleval.families import box_context

            info = vl.pool.infos.get(self.spec.label)
            convention, resized = box_context(
                self.spec, self.case.images, info=info, trust_remote_code=vl.options.trust_remote_code
            )
        result = evaluate(self.case, self.spec.label, prediction, box_convention=convention, resized_sizes=resized)
        vl.results.append(result)
        self.user_properties.append(("vleval", result.to_dict()))
        if not result.passed:
            pytest.fail(failure_message(self.case, result), pytrace=False)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.case.line - 1, f"{self.case.id}[{self.spec.label}]"


class CaseFileNode(pytest.File):
    """A YAML case file."""

    def collect(self) -> Iterator[pytest.Item]:
        vl = get_session(self.config)
        try:
            case_file = load_case_file(self.path)
        except CaseFileError as exc:
            raise self.CollectError(str(exc)) from None
        for case in case_file.cases:
            marks = _marks(self.config, case)
            for spec in vl.models:
                yield CaseItem.from_parent(
                    self,
                    name=f"{case.id}[{spec.label}]",
                    callobj=_test_function(marks),
                    case=case,
                    spec=spec,
                )
