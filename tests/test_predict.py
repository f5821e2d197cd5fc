"""BatchPredictor on its own (batches, sorting, out-of-memory recovery) and the progress bar."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_vleval.cases.casefile import Case, load_case_file
from pytest_vleval.models import Conversation, ModelSpec
from pytest_vleval.predict import progress
from pytest_vleval.predict.pool import ModelPool
from pytest_vleval.predict.predictor import BatchPredictor, ModelRun
from pytest_vleval.records.aggregates import cache_summary, invariance_summary, prediction_summary
from pytest_vleval.report.terminal import prediction_lines

from .conftest import FAKE_BACKEND_CONFTEST, make_png

SPEC = ModelSpec("fake", "fake", "fake", False)


def summary(predictor: BatchPredictor) -> list[str]:
    """The summary's prediction lines for this predictor alone (the way the recorder builds them)."""
    snapshot = predictor.snapshot()
    record = {
        "models": [
            {"label": label, "prediction": prediction_summary([run])} for label, run in snapshot["models"].items()
        ],
        "run": {
            "answer_cache": cache_summary([snapshot["cache"]]),
            "batch_invariance": invariance_summary([snapshot["invariance"]]),
        },
    }
    return prediction_lines(record)


class Backend:
    """Answers the question back; 'oom' questions exhaust memory in batches above `fits`."""

    def __init__(self, device: str = "cpu", fits: int = 1, measure: bool = True) -> None:
        self.spec = SPEC
        self.info: dict[str, object] = {"device": device}
        self.calls: list[list[str]] = []
        self.fits = fits
        if measure:
            self.input_length = lambda conv: len(conv.question)

    def generate(self, conversations: Sequence[Conversation]) -> list[str]:
        self.calls.append([c.question for c in conversations])
        if len(conversations) > self.fits and any("oom" in c.question for c in conversations):
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")
        return [c.question.upper() for c in conversations]

    def close(self) -> None:
        pass


def make_cases(tmp_path: Path, questions: Sequence[str]) -> list[Case]:
    image = make_png(tmp_path / "images" / "red.png")
    lines = [f"  - {{id: c{i}, image: {image}, question: '{q}', expected: x}}" for i, q in enumerate(questions)]
    path = tmp_path / "test_cases.yaml"
    path.write_text("cases:\n" + "\n".join(lines) + "\n")
    return list(load_case_file(path).cases)


def predictor(backend: Backend, cases: list[Case], size: int, **kwargs) -> BatchPredictor:
    vl = BatchPredictor(ModelPool(lambda spec: backend), lambda b: size, 8, **kwargs)
    vl.plan([(SPEC, c) for c in cases])
    return vl


def test_batches_are_sorted_by_length_within_a_window(tmp_path: Path) -> None:
    questions = ["a" * n for n in (5, 1, 7, 2, 8, 3, 6, 4)]
    cases = make_cases(tmp_path, questions)
    backend = Backend()
    vl = predictor(backend, cases, size=2)
    answers = [vl.predict(SPEC, c).answers for c in cases]
    assert answers == [[q.upper()] for q in questions]
    # The window of 4 batches (all 8 cases) is sorted, then cut; each batch is generated when first needed.
    assert [sorted(len(q) for q in call) for call in backend.calls] == [[5, 6], [1, 2], [7, 8], [3, 4]]
    assert vl.batches == [2, 2, 2, 2]
    assert vl.runs["fake"].generated == 8 and vl.runs["fake"].batches == 4


def test_a_prediction_is_handed_over_once_and_a_case_asked_again_is_answered_anew(tmp_path: Path) -> None:
    cases = make_cases(tmp_path, ["a", "bb", "ccc", "dddd"])
    backend = Backend(measure=False)
    vl = predictor(backend, cases, size=2)
    first = vl.predict(SPEC, cases[2])
    assert first.answers == ["CCC"] and first.prompts == ("ccc",)
    # Only "answered" stays behind: 200,000 predictions are not kept twice (the tests hold theirs).
    assert not any(p is first for p in vl._done.values())
    assert [vl.predict(SPEC, c).answers for c in cases] == [["A"], ["BB"], ["CCC"], ["DDDD"]]
    # Asked again (a rerun plugin runs an item twice): answered again, not from a stale entry; the batches of
    # the cases served in between are not generated again.
    assert backend.calls == [["ccc", "dddd"], ["a", "bb"], ["ccc"]]
    assert vl.runs["fake"].generated == 5


def test_a_backend_that_cannot_measure_keeps_run_order(tmp_path: Path) -> None:
    cases = make_cases(tmp_path, ["aaaa", "a", "aaa", "aa"])
    backend = Backend(measure=False)
    vl = predictor(backend, cases, size=2)
    vl.predict(SPEC, cases[0])
    assert backend.calls == [["aaaa", "a"]]  # only the batch of the first case: nothing more until needed


def test_out_of_memory_halves_then_caps_later_batches_and_frees_cuda_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    cases = make_cases(tmp_path, ["oom a", "oom b", "oom c", "oom d", "e", "f", "g", "h"])
    backend = Backend(device="cuda:0", fits=2, measure=False)
    vl = predictor(backend, cases, size=4)
    assert [vl.predict(SPEC, c).answers for c in cases] == [[c.turns[0].question.upper()] for c in cases]
    assert [len(call) for call in backend.calls] == [4, 2, 2, 2, 2]
    assert len(emptied) == 1  # once, after the failed batch of 4, before its halves were retried
    run = vl.runs["fake"]
    assert (run.oom_batch, run.batch_cap) == (4, 2)
    assert any("out of memory at batch size 4" in line for line in summary(vl))


def test_out_of_memory_on_the_cpu_does_not_touch_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: pytest.fail("empty_cache on a CPU backend"))
    cases = make_cases(tmp_path, ["oom a", "oom b"])
    vl = predictor(Backend(device="cpu", fits=0, measure=False), cases, size=2)
    prediction = vl.predict(SPEC, cases[0])
    assert prediction.error is not None and "ran out of memory on turn 1 even alone" in prediction.error
    assert "(its batch of 2 was halved down to 1)" in prediction.error
    assert vl.runs["fake"].failed == [
        "test_cases.yaml::c0: " + prediction.error,
        "test_cases.yaml::c1: " + vl.predict(SPEC, cases[1]).error,  # type: ignore[operator]
    ]


def test_invariance_check_fails_cases_that_change_with_the_batch(tmp_path: Path) -> None:
    class Unstable(Backend):
        def generate(self, conversations):
            answers = super().generate(conversations)
            return [f"{a} {len(conversations)}" if "unstable" in a.lower() else a for a in answers]

    cases = make_cases(tmp_path, ["stable", "unstable", "fine"])
    vl = predictor(Unstable(measure=False), cases, size=3, check_invariance=True)
    results = [vl.predict(SPEC, c) for c in cases]
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].error == (
        "batch invariance: turn 1 answered 'UNSTABLE 3' in a batch of 3 but 'UNSTABLE 1' alone "
        "(--vl-check-batch-invariance)"
    )
    assert results[1].answers == ["UNSTABLE 1"]  # scored on the batch-1 answer
    lines = summary(vl)
    assert "batch invariance: 1 of 3 cases generated in batches answered differently alone" in lines
    assert "  test_cases.yaml::c1[fake] turn 1: 'UNSTABLE 3' in a batch of 3, 'UNSTABLE 1' alone" in lines


def test_progress_line_and_redraws() -> None:
    run = ModelRun(total=200, cached=16, generated=32, seconds=4.0)
    assert progress.render("tiny", run, busy=8) == (
        "tiny [####................] 48/200 cases  8.00 cases/s  (16 cached)  generating 8..."
    )
    assert "0/3 cases ? cases/s" in progress.render("tiny", ModelRun(total=3))
    written: list[str] = []
    bar = progress.PredictionProgress(written.append, room=lambda: 60)
    bar.update("tiny", run, busy=8)
    bar.update("tiny", run, busy=8)
    bar.clear()
    bar.clear()
    assert written[0].startswith(progress.SAVE_CURSOR + " tiny [")
    assert written[1].startswith(progress.RESTORE_AND_CLEAR + " tiny [") and len(written[1]) <= 60 + 6
    assert written[2:] == [progress.RESTORE_AND_CLEAR]
    cramped: list[str] = []
    progress.PredictionProgress(cramped.append, room=lambda: 10).update("tiny", run, busy=8)
    assert cramped == []


class Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("args", "env", "tty", "shown"),
    [
        ((), {}, True, True),
        ((), {}, False, False),
        ((), {"CI": "true"}, True, False),
        ((), {"CI": "0"}, True, True),
        (("-q",), {}, True, False),
        ((), {"TERM": "dumb"}, True, False),
    ],
)
def test_progress_is_wanted_only_in_an_interactive_terminal(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args, env, tty, shown
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = pytester.parseconfigure(*args)
    assert progress.wanted(config, Stream(tty)) is shown


def test_progress_is_silent_on_xdist_workers(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    config = pytester.parseconfigure()
    config.workerinput = {"workerid": "gw0"}  # type: ignore[attr-defined]
    assert progress.wanted(config, Stream(True)) is False


SLOW_FAKE = FAKE_BACKEND_CONFTEST.replace(
    "    def generate(self, conversations):\n",
    "    def generate(self, conversations):\n        import time; time.sleep(0.05)\n",
)


def run_in_terminal(project: Path, *args: str, env: dict[str, str]) -> str:
    """Run pytest with its output on a pseudo-terminal, as a person at a terminal would see it."""
    import pty

    main, child = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k != "CI"} | {"TERM": "xterm", "COLUMNS": "120"} | env
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        env=full_env,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=120)
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_progress_bar_in_a_terminal_and_quiet_in_ci(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SLOW_FAKE)
    make_png(pytester.path / "images" / "red.png")
    cases = "\n".join(f"  - {{id: c{i}, image: images/red.png, question: 'say: x', expected: x}}" for i in range(6))
    pytester.makefile(".yaml", test_p="cases:\n" + cases + "\n")
    args = ("--vl-model=fake", "--vl-batch-size=2", "--vl-no-cache")

    shown = run_in_terminal(pytester.path, *args, env={})
    assert "6 passed" in shown
    assert progress.SAVE_CURSOR + " fake [" in shown and "generating 2..." in shown
    assert "fake [######" in shown and "2/6 cases" in shown and "cases/s" in shown
    assert shown.count(progress.SAVE_CURSOR) == 3  # drawn during each of the 3 batches
    assert shown.count(progress.RESTORE_AND_CLEAR) == 3  # and erased before pytest wrote again
    # Without the bar's own drawing and erasing, pytest's line of dots is intact.
    plain = re.sub(r"\x1b7[^\x1b]*\x1b8\x1b\[K", "", shown)
    assert "test_p.yaml ......" in re.sub(r"\x1b\[[0-9;]*m", "", plain)

    quiet = run_in_terminal(pytester.path, *args, env={"CI": "true"})
    assert "6 passed" in quiet and progress.SAVE_CURSOR not in quiet and "generating" not in quiet
    assert "prediction fake: 6/6 cases, 6 generated in 3 batches" in quiet  # one line per model instead

    piped = pytester.runpytest(*args)
    piped.assert_outcomes(passed=6)
    assert progress.SAVE_CURSOR not in piped.stdout.str() and "generating" not in piped.stdout.str()


def test_a_dialogue_the_family_cannot_hold_is_skipped_before_its_first_turn(tmp_path: Path) -> None:
    """BLIP-2 has no chat template: a two-turn case must not spend a generation on turn 1 only to skip."""
    image = make_png(tmp_path / "images" / "red.png")
    path = tmp_path / "test_cases.yaml"
    path.write_text(
        "cases:\n"
        f"  - {{id: single, image: {image}, question: one, expected: x}}\n"
        f"  - id: talk\n    image: {image}\n    turns:\n"
        "      - {question: first, expected: x}\n      - {question: second, expected: x}\n"
    )
    single, talk = load_case_file(path).cases
    backend = Backend()
    backend.unsupported = lambda conv: "Fam does not hold a multi-turn dialogue" if conv.history else None
    vl = predictor(backend, [single, talk], size=4)
    skipped = vl.predict(SPEC, talk)
    assert skipped.skipped == "Fam does not hold a multi-turn dialogue" and skipped.answers == []
    assert skipped.error == "model 'fake' failed on turn 2: Fam does not hold a multi-turn dialogue"
    assert vl.predict(SPEC, single).answers == ["ONE"]
    assert backend.calls == [["one"]]  # 'first' was never generated


def test_an_xdist_worker_reads_its_own_queue(fake_project: pytest.Pytester) -> None:
    """The worker's queue lives in pytest-xdist's internals (``WorkerInteractor.torun``/``nextitem_index``): if
    they change, batching falls back to collection order; this test says so instead of the run getting slower."""
    pytest.importorskip("xdist")
    fake_project.makepyfile(
        test_queue="""
        import pytest
        from pytest_vleval.predict.planning import worker_queue

        @pytest.mark.parametrize("n", range(4))
        def test_queue(request, n):
            queue = worker_queue(request.config)
            assert queue is not None, "pytest-xdist's WorkerInteractor no longer has torun/nextitem_index"
            upcoming = queue.upcoming()
            assert upcoming is not None and request.node in upcoming
        """
    )
    fake_project.runpytest("-n", "2").assert_outcomes(passed=4)
