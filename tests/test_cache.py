"""The persistent answer cache: keys, hits and misses, refresh, concurrent writers, resume, weight changes."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_vleval.backends.hub import hub_snapshot
from pytest_vleval.models import resolve_model
from pytest_vleval.predict import cache as cache_module
from pytest_vleval.predict.cache import MEMO_MIN_BYTES, AnswerCache
from pytest_vleval.predict.fingerprints import (
    ModelFingerprint,
    ModelFingerprints,
    answer_code_hash,
    answer_code_modules,
    directory_fingerprint,
    module_source,
)

from .conftest import FAKE_BACKEND_CONFTEST, make_png
from .conftest import vl_options as options

# The fake backend of conftest.py, plus: a fingerprint read from fingerprint.txt (none when it is absent),
# a log of every question it generates (across runs and processes), an injected out-of-memory error for
# 'huge' questions at any batch size, and a hard kill on 'die' (a run killed half-way).
CACHED_FAKE_CONFTEST = (
    FAKE_BACKEND_CONFTEST
    + """
import os
from pathlib import Path

_ROOT = Path(__file__).parent
_plain_init = FakeBackend.__init__
_plain_generate = FakeBackend.generate


def _init(self, spec):
    _plain_init(self, spec)
    stamp = _ROOT / "fingerprint.txt"
    if stamp.exists():
        self.info["fingerprint"] = stamp.read_text()


def _generate(self, conversations):
    with open(_ROOT / "generated.log", "a") as log:
        log.writelines(f"{len(conversations)} {c.question}\\n" for c in conversations)
    if any("die" in c.question for c in conversations):
        os._exit(3)
    if any("huge" in c.question for c in conversations):
        raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB\\nmore details")
    return _plain_generate(self, conversations)


FakeBackend.__init__ = _init
FakeBackend.generate = _generate
"""
)


def cases_yaml(n: int, question: str = "say: x{n}", **extra: str) -> str:
    lines = []
    for i in range(n):
        q = extra.get(f"q{i}", question.format(n=i))
        lines.append(f"  - {{id: c{i}, image: images/red.png, question: '{q}', expected: 'x{i}', scorer: contains}}")
    return "cases:\n" + "\n".join(lines) + "\n"


@pytest.fixture
def cached_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CACHED_FAKE_CONFTEST)
    make_png(pytester.path / "images" / "red.png")
    make_png(pytester.path / "images" / "blue.png", color=(20, 20, 220))
    (pytester.path / "fingerprint.txt").write_text("fake-weights-v1")
    return pytester


def generated(project: pytest.Pytester) -> list[str]:
    """Questions the fake backend generated so far (one line per conversation), and forget them."""
    log = project.path / "generated.log"
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    log.unlink()
    return [line.split(" ", 1)[1] for line in lines]


def entries(root: Path) -> list[dict]:
    return list(AnswerCache(root).entries())


def test_second_run_reuses_every_answer(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_a=cases_yaml(5))
    result = cached_project.runpytest("--vl-model=fake", "--vl-batch-size=2")
    result.assert_outcomes(passed=5)
    assert sorted(generated(cached_project)) == [f"say: x{i}" for i in range(5)]
    result.stdout.fnmatch_lines(["*answer cache */.vleval/cache: 0 answers reused, 5 stored"])
    stored = entries(cached_project.path / ".vleval" / "cache")
    assert sorted(e["case"] for e in stored) == [f"c{i}" for i in range(5)]
    assert all(e["answers"] == [f"x{e['case'][1:]}"] and e["model"] == "fake" for e in stored)

    result = cached_project.runpytest("--vl-model=fake", "--vl-batch-size=2")
    result.assert_outcomes(passed=5)
    assert generated(cached_project) == []
    result.stdout.fnmatch_lines(
        [
            "*prediction fake: 5/5 cases, 0 generated in 0 batches*, 5 from the answer cache",
            "*answer cache *: 5 answers reused, 0 stored",
        ]
    )


def test_the_record_says_which_answers_came_from_the_cache(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_a=cases_yaml(3))
    cached_project.runpytest("--vl-model=fake", "--vl-json=first.json").assert_outcomes(passed=3)
    cached_project.makefile(".yaml", test_a=cases_yaml(4))  # one new case: generated, the others reused
    cached_project.runpytest("--vl-model=fake", "--vl-json=second.json").assert_outcomes(passed=4)
    first = json.loads((cached_project.path / "first.json").read_text())
    second = json.loads((cached_project.path / "second.json").read_text())
    assert [c["cached"] for c in first["cases"]] == [False, False, False]
    assert {c["case_id"]: c["cached"] for c in second["cases"]} == {"c0": True, "c1": True, "c2": True, "c3": False}
    assert [c["seconds"] for c in second["cases"] if c["cached"]] == [0.0, 0.0, 0.0]
    assert second["models"][0]["eval"]["timed_cases"] == 1
    assert second["models"][0]["prediction"] | {"seconds": 0} == {
        "planned": 4,
        "cached": 3,
        "generated": 1,
        "batches": 1,
        "seconds": 0,
        "failed": [],
        "oom_batch": None,
        "batch_cap": None,
    }
    assert second["run"]["answer_cache"]["hits"] == 3 and second["run"]["answer_cache"]["writes"] == 1


def test_answer_code_is_what_the_transformers_backend_imports() -> None:
    modules = answer_code_modules()
    assert {
        "pytest_vleval.backends.hf",
        "pytest_vleval.backends.base",
        "pytest_vleval.backends.families",
        "pytest_vleval.backends.precision",
        "pytest_vleval.backends.devices",
    } <= set(modules)
    # Options, scoring and reports cannot change an answer: editing them keeps the cached answers.
    assert not any(
        m.startswith(("pytest_vleval.options", "pytest_vleval.scoring", "pytest_vleval.report")) for m in modules
    )
    real = module_source
    baseline = answer_code_hash()

    def edited(name: str) -> bytes:
        source = real(name)
        return source + b"\n# an edit\n" if name == "pytest_vleval.backends.families" else source

    assert answer_code_hash(source=edited) != baseline
    assert answer_code_hash(source=real) == baseline


def test_answer_code_that_cannot_be_found_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"module pytest_vleval\.backends\.no_such_module is not found"):
        answer_code_hash(roots=("pytest_vleval.backends.no_such_module",))


def test_refresh_regenerates_and_no_cache_neither_reads_nor_writes(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_a=cases_yaml(3))
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=3)
    generated(cached_project)
    root = cached_project.path / ".vleval" / "cache"
    before = {e["case"]: e["created"] for e in entries(root)}

    result = cached_project.runpytest("--vl-model=fake", "--vl-refresh")
    result.assert_outcomes(passed=3)
    assert len(generated(cached_project)) == 3
    result.stdout.fnmatch_lines(["*answer cache * (refreshing: every answer regenerated): 0 answers reused, 3 stored"])
    assert len(entries(root)) == 3 and set(before) == {e["case"] for e in entries(root)}

    shutil.rmtree(root)
    result = cached_project.runpytest("--vl-model=fake", "--vl-no-cache")
    result.assert_outcomes(passed=3)
    assert len(generated(cached_project)) == 3
    assert not root.exists()
    result.stdout.fnmatch_lines(["*answer cache: off (--vl-no-cache)"])

    result = cached_project.runpytest("--vl-model=fake", "--vl-no-cache", "--vl-refresh")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vl-refresh: there is no answer cache to refresh with --vl-no-cache*"])


def test_cache_dir_option_and_ini(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_a=cases_yaml(2))
    cached_project.runpytest("--vl-model=fake", "--vl-cache-dir=elsewhere").assert_outcomes(passed=2)
    assert len(entries(cached_project.path / "elsewhere")) == 2
    assert (cached_project.path / "elsewhere" / ".gitignore").read_text().endswith("*\n")
    cached_project.makeini("[pytest]\nvl_cache_dir = from-ini\n")
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=2)
    assert len(entries(cached_project.path / "from-ini")) == 2
    assert not (cached_project.path / ".vleval").exists()


def test_a_new_fingerprint_or_changed_case_is_regenerated(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_a=cases_yaml(3))
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=3)
    assert len(generated(cached_project)) == 3

    (cached_project.path / "fingerprint.txt").write_text("fake-weights-v2")
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=3)
    assert len(generated(cached_project)) == 3

    # A changed question, a changed budget, and changed image bytes: only those cases are generated again.
    cached_project.makefile(
        ".yaml",
        test_a=cases_yaml(3, q1="say: x1 ").replace("id: c2,", "id: c2, max_new_tokens: 3,"),
    )
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=3)
    assert sorted(generated(cached_project)) == ["say: x1 ", "say: x2"]
    make_png(cached_project.path / "images" / "red.png", color=(201, 30, 30))
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=3)
    assert len(generated(cached_project)) == 3


def test_a_backend_without_fingerprint_is_not_cached(cached_project: pytest.Pytester) -> None:
    (cached_project.path / "fingerprint.txt").unlink()
    cached_project.makefile(".yaml", test_a=cases_yaml(2))
    for _ in range(2):
        result = cached_project.runpytest("--vl-model=fake")
        result.assert_outcomes(passed=2)
        assert len(generated(cached_project)) == 2
    result.stdout.fnmatch_lines(
        [
            "*answer cache *: 0 answers reused, 0 stored",
            "*not used for model fake: its backend FakeBackend gives no fingerprint",
        ]
    )


def test_dialogues_are_cached_with_every_turn(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(
        ".yaml",
        test_d="""
cases:
  - id: talk
    image: images/red.png
    turns:
      - {question: 'say: a circle', expected: circle, scorer: contains}
      - {question: 'say: red', expected: red}
""",
    )
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=1)
    assert generated(cached_project) == ["say: a circle", "say: red"]
    (entry,) = entries(cached_project.path / ".vleval" / "cache")
    assert entry["answers"] == ["a circle", "red"]
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=1)
    assert generated(cached_project) == []


def test_selection_decides_what_is_generated(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_a=cases_yaml(10))
    result = cached_project.runpytest("--vl-model=fake", "--vl-batch-size=4", "-k", "c3 or c7")
    result.assert_outcomes(passed=2)
    assert sorted(generated(cached_project)) == ["say: x3", "say: x7"]
    # With -x, the first failure stops the run: at most its batch was generated.
    cached_project.makefile(".yaml", test_b=cases_yaml(10, question="say: wrong{n}"))
    result = cached_project.runpytest("--vl-model=fake", "--vl-batch-size=3", "-x", "test_b.yaml")
    result.assert_outcomes(failed=1)
    assert generated(cached_project) == ["say: wrong0", "say: wrong1", "say: wrong2"]


def test_skipped_cases_are_never_generated(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(
        ".yaml",
        test_s="""
cases:
  - {id: a, image: images/red.png, question: 'say: a', expected: a}
  - {id: b, image: images/red.png, question: 'say: b', expected: b, skip: not ready}
  - {id: c, image: images/red.png, question: 'say: c', expected: c}
""",
    )
    cached_project.runpytest("--vl-model=fake", "--vl-batch-size=4").assert_outcomes(passed=2, skipped=1)
    assert generated(cached_project) == ["say: a", "say: c"]


def test_out_of_memory_fails_only_its_case_and_keeps_the_others(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_m=cases_yaml(4, q1="huge say: x1"))
    result = cached_project.runpytest("--vl-model=fake", "--vl-batch-size=4")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*case 'c1' on model 'fake'*",
            "*error:    model 'fake' ran out of memory on turn 1 even alone (its batch of 4 was halved down to 1): "
            "RuntimeError: CUDA out of memory. Tried to allocate 80.00 GiB; try a smaller max_new_tokens*",
            "*out of memory at batch size 4: the batch was halved and retried; later batches used at most 2",
            "*failed: test_m.yaml::c1: model 'fake' ran out of memory*",
        ]
    )
    assert "more details" not in result.stdout.str()
    # Halving: [c0 c1 c2 c3] -> [c0 c1] -> [c0] ok, [c1] fails alone; [c2 c3] ok.
    assert generated(cached_project) == [
        *("say: x0", "huge say: x1", "say: x2", "say: x3"),
        *("say: x0", "huge say: x1"),
        "say: x0",
        "huge say: x1",
        *("say: x2", "say: x3"),
    ]
    stored = sorted(e["case"] for e in entries(cached_project.path / ".vleval" / "cache"))
    assert stored == ["c0", "c2", "c3"]
    result = cached_project.runpytest("--vl-model=fake", "--vl-batch-size=4")
    result.assert_outcomes(passed=3, failed=1)
    assert generated(cached_project) == ["huge say: x1"]


def test_killed_run_keeps_its_answers_and_the_next_run_resumes(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_k=cases_yaml(9, q6="die say: x6"))
    killed = cached_project.runpytest_subprocess("--vl-model=fake", "--vl-batch-size=2", "-p", "no:cacheprovider")
    assert killed.ret == 3  # os._exit(3) in the middle of the run
    assert len(generated(cached_project)) == 8  # batches [c0 c1] [c2 c3] [c4 c5] finished, [c6 c7] died
    stored = sorted(e["case"] for e in entries(cached_project.path / ".vleval" / "cache"))
    assert stored == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert not list((cached_project.path / ".vleval").rglob("*.tmp"))

    cached_project.makefile(".yaml", test_k=cases_yaml(9))
    result = cached_project.runpytest("--vl-model=fake", "--vl-batch-size=2")
    result.assert_outcomes(passed=9)
    assert generated(cached_project) == ["say: x6", "say: x7", "say: x8"]


def test_xdist_workers_share_the_cache(cached_project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    cached_project.makefile(".yaml", test_a=cases_yaml(6), test_b=cases_yaml(6, question="say: x{n} b"))
    cold = cached_project.runpytest("--vl-model=fake", "-n", "2")
    cold.assert_outcomes(passed=12)
    first = generated(cached_project)
    assert len(first) == 12  # each worker batches only the cases it runs
    assert len(entries(cached_project.path / ".vleval" / "cache")) == 12
    # the controller's summary counts what the workers stored and reused (it said "0 stored" once)
    cold.stdout.fnmatch_lines(["*answer cache *: 0 answers reused, 12 stored"])
    warm = cached_project.runpytest("--vl-model=fake", "-n", "2")
    warm.assert_outcomes(passed=12)
    assert generated(cached_project) == []
    warm.stdout.fnmatch_lines(["*answer cache *: 12 answers reused, 0 stored"])


@pytest.mark.parametrize("dist", ["load", "loadfile"])
def test_xdist_workers_generate_only_their_own_cases(cached_project: pytest.Pytester, dist: str) -> None:
    """Without a cache to share, no case is generated twice: a worker batches from its own queue."""
    pytest.importorskip("xdist")
    cached_project.makefile(".yaml", test_a=cases_yaml(12), test_b=cases_yaml(12, question="say: x{n} b"))
    args = ("--vl-model=fake", "--vl-no-cache", "--vl-batch-size=4", "-n", "2", "--dist", dist)
    cached_project.runpytest(*args).assert_outcomes(passed=24)
    questions = generated(cached_project)
    assert sorted(questions) == sorted({*questions}) and len(questions) == 24


def _writer(root: str, worker: int, n: int) -> None:
    store = AnswerCache(Path(root))
    model = ModelFingerprint("m", "k" * 64, "test")
    for round_ in range(3):
        for i in range(n):
            store.put(model, f"case-{i}", {"answers": [f"w{worker}-r{round_}-" + "x" * 2000]})
            got = store.get(model, f"case-{(i * 7) % n}", 1)
            assert got is None or got["answers"][0].endswith("x" * 2000)


def test_concurrent_writers_leave_complete_entries(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        ".gitignore",
        "CACHEDIR.TAG",
        "answers.sqlite3",
    ]
    stored = entries(tmp_path)
    assert len(stored) == 40
    assert all(e["answers"][0].endswith("x" * 2000) for e in stored)


def test_corrupt_or_foreign_entries_are_misses(tmp_path: Path) -> None:
    store = AnswerCache(tmp_path)
    model = ModelFingerprint("m", "a" * 64, "test")
    store.put(model, "case", {"answers": ["one"]})
    assert store.get(model, "case", 1)["answers"] == ["one"]
    assert store.get(model, "case", 2) is None  # the case now has two turns
    # The same files under another label (a copy of the checkpoint) are asked again, as with a folder per label.
    assert store.get(ModelFingerprint("copy of m", "a" * 64, "test"), "case", 1) is None
    assert store.get(ModelFingerprint("m", "b" * 64, "test"), "case", 1) is None
    with sqlite3.connect(store.store) as db:  # a row cut short
        db.execute(
            "UPDATE answers SET entry = ? WHERE key = ?",
            ('{"format": 1, "answers": ["tru', store.answer_key(model, "case")),
        )
    assert store.get(model, "case", 1) is None
    assert AnswerCache(tmp_path, read=False).get(model, "case", 1) is None


def test_a_batch_of_answers_is_one_commit_kept_also_when_interrupted(tmp_path: Path) -> None:
    store, reader = AnswerCache(tmp_path), AnswerCache(tmp_path)  # two connections, as two xdist workers
    model = ModelFingerprint("m", "a" * 64, "test")
    with store.batch():
        for i in range(3):
            store.put(model, f"case-{i}", {"answers": [f"a{i}"]})
        assert reader.get(model, "case-0", 1) is None, "not committed yet: nobody sees half a batch"
        assert store.writes == 0
    assert [reader.get(model, f"case-{i}", 1)["answers"] for i in range(3)] == [["a0"], ["a1"], ["a2"]]
    assert store.writes == 3
    with pytest.raises(KeyboardInterrupt), store.batch():
        store.put(model, "case-3", {"answers": ["a3"]})
        raise KeyboardInterrupt  # Ctrl-C while storing: what was stored is kept
    assert reader.get(model, "case-3", 1)["answers"] == ["a3"]
    store.close()
    store.put(model, "case-4", {"answers": ["a4"]})  # reopens after close, outside a batch: committed at once
    assert reader.get(model, "case-4", 1)["answers"] == ["a4"]
    assert store.writes == 5


def test_a_cache_written_before_the_database_is_still_read(tmp_path: Path) -> None:
    """A JSON file per entry was the layout until the database: those answers and verdicts are still hits."""
    model = ModelFingerprint("my model", "b" * 64, "test")
    store = AnswerCache(tmp_path)
    key = cache_module.sha256_text("b" * 64 + ":case")  # the file's name: the model's and the case's fingerprints
    old = {"format": 1, "model_fingerprint": "b" * 64, "case_fingerprint": "case", "answers": ["A cat."]}
    (tmp_path / "answers" / ("my_model-" + "b" * 16)).mkdir(parents=True)
    (tmp_path / "answers" / ("my_model-" + "b" * 16) / f"{key}.json").write_text(json.dumps(old, indent=1))
    verdict = store.verdict_key("judge", "j" * 64, {"prompt": "grade it"})
    (tmp_path / "verdicts" / ("judge-" + "j" * 16)).mkdir(parents=True)
    (tmp_path / "verdicts" / ("judge-" + "j" * 16) / f"{verdict.digest}.json").write_text('{"reply": "5"}')
    assert store.get(model, "case", 1)["answers"] == ["A cat."]
    assert store.get_verdict(verdict) == "5"
    assert store.get(model, "other case", 1) is None
    store.put(model, "case", {"answers": ["A dog."]})  # a new answer goes to the database and wins
    assert AnswerCache(tmp_path).get(model, "case", 1)["answers"] == ["A dog."]


def test_a_damaged_store_is_one_message_and_the_run_goes_on(cached_project: pytest.Pytester) -> None:
    cached_project.makefile(".yaml", test_a=cases_yaml(3))
    store = cached_project.path / ".vleval" / "cache" / "answers.sqlite3"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"not a database, but the tail of a copy that went wrong\n" * 100)
    result = cached_project.runpytest("--vl-model=fake")
    result.assert_outcomes(passed=3)
    assert len(generated(cached_project)) == 3
    result.stdout.fnmatch_lines(
        [
            "*answer cache */.vleval/cache: 0 answers reused, 0 stored",
            "*could not write: */answers.sqlite3: DatabaseError: file is not a database (the file is damaged: "
            "delete it and the next run starts an empty answer cache)",
        ]
    )
    assert "Traceback" not in result.stdout.str() and "damaged" not in result.stderr.str()
    store.unlink()  # the fix the message gives
    cached_project.runpytest("--vl-model=fake").assert_outcomes(passed=3)
    again = cached_project.runpytest("--vl-model=fake")
    again.stdout.fnmatch_lines(["*answer cache *: 3 answers reused, 0 stored"])
    assert len(generated(cached_project)) == 3


def test_file_hashes_are_memoised_by_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "model" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"a" * MEMO_MIN_BYTES)
    first = AnswerCache(tmp_path / "cache").file_hash(weights)

    calls = []
    real = cache_module.sha256_file
    monkeypatch.setattr(cache_module, "sha256_file", lambda p: calls.append(p) or real(p))
    assert AnswerCache(tmp_path / "cache").file_hash(weights) == first  # a new process: read from the memo
    assert calls == []

    stat = weights.stat()
    weights.write_bytes(b"b" * MEMO_MIN_BYTES)  # same size, new content
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert AnswerCache(tmp_path / "cache").file_hash(weights) != first
    assert calls == [weights]


def fingerprints(root: Path, **overrides: object) -> ModelFingerprints:
    def no_load(spec):  # the transformers path is fingerprinted from files, never loaded
        raise AssertionError("loaded")

    return ModelFingerprints(options(**overrides), AnswerCache(root), no_load, lambda: False)


def test_overwritten_weights_at_the_same_path_are_a_new_model(random_qwen3vl: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    model_dir = shutil.copytree(random_qwen3vl, tmp_path / "model")
    spec = resolve_model(str(model_dir))
    before = fingerprints(tmp_path / "cache")(spec)
    assert before.key is not None and before.basis == f"files of {model_dir}"
    # Same path, same content: the same key, also through the on-disk memo and for a copy elsewhere.
    assert fingerprints(tmp_path / "cache")(spec).key == before.key
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    assert fingerprints(tmp_path / "cache")(resolve_model(str(copy))).key == before.key

    weights = model_dir / "model.safetensors"
    tensors = load_file(weights)
    name = next(n for n, t in tensors.items() if t.dim() == 2)
    tensors[name] = tensors[name] + 0.01  # fine-tuned and saved over the old checkpoint
    save_file(tensors, weights, metadata={"format": "pt"})
    after = fingerprints(tmp_path / "cache")(spec)
    assert after.key != before.key

    config = json.loads((model_dir / "generation_config.json").read_text())
    config["max_new_tokens"] = 77
    (model_dir / "generation_config.json").write_text(json.dumps(config))
    assert fingerprints(tmp_path / "cache")(spec).key != after.key
    assert fingerprints(tmp_path / "cache", dtype="bfloat16")(spec).key != fingerprints(tmp_path / "cache")(spec).key


def test_hub_ids_use_the_local_snapshot_or_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = resolve_model("some-org/some-model")
    missing = fingerprints(tmp_path / "cache")(spec)
    assert missing.key is None and "has no local snapshot" in missing.basis

    repo = tmp_path / "hub" / "models--some-org--some-model"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert hub_snapshot("some-org/some-model") == snapshot
    found = fingerprints(tmp_path / "cache")(spec)
    assert found.key is not None and "local snapshot abc123" in found.basis
    assert directory_fingerprint(snapshot, AnswerCache(tmp_path / "cache"))


def test_a_fully_cached_run_imports_no_torch(pytester: pytest.Pytester, random_qwen3vl: Path) -> None:
    make_png(pytester.path / "images" / "red.png", (64, 64), (220, 20, 20))
    pytester.makefile(
        ".yaml",
        test_s="""
defaults: {scorer: regex, max_new_tokens: 4}
cases:
  - {id: a, image: images/red.png, question: 'What colour is it?', expected: '^.*$'}
  - {id: b, image: images/red.png, question: 'Describe it.', expected: '^.*$'}
""",
    )
    pytester.makeconftest(
        """
        import sys
        def pytest_sessionfinish(session):
            print("\\nHEAVY", sorted(m for m in ("torch", "transformers") if m in sys.modules))
        """
    )
    model = shutil.copytree(random_qwen3vl, pytester.path / "model")
    args = ("--vl-model=model", "-s", "-p", "no:cacheprovider")
    cold = pytester.runpytest_subprocess(*args)
    cold.assert_outcomes(passed=2)
    cold.stdout.fnmatch_lines(["HEAVY ['torch', 'transformers']", "*0 answers reused, 2 stored"])
    warm = pytester.runpytest_subprocess(*args)
    warm.assert_outcomes(passed=2)
    warm.stdout.fnmatch_lines(["HEAVY []", "*2 answers reused, 0 stored"])
    # A fine-tuned checkpoint saved at the same path: the answers are generated again.
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    changed = pytester.runpytest_subprocess(*args)
    changed.assert_outcomes(passed=2)
    changed.stdout.fnmatch_lines(["HEAVY ['torch', 'transformers']", "*0 answers reused, 2 stored"])


def test_help_lists_the_cache_options() -> None:
    code = textwrap.dedent(
        """
        import io, contextlib, pytest
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            pytest.main(["--help"])
        print(out.getvalue())
        """
    )
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    for flag in ("--vl-cache-dir=DIR", "--vl-no-cache", "--vl-refresh", "--vl-check-batch-invariance", "vl_cache_dir"):
        assert flag in text, flag


def test_xdist_controller_prints_the_vleval_summary(cached_project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    cached_project.makefile(".yaml", test_a=cases_yaml(5, q2="say: wrong"), test_b=cases_yaml(4))
    result = cached_project.runpytest("--vl-model=fake", "-n", "2")
    result.assert_outcomes(passed=8, failed=1)
    # The controller's summary is built from the record, so it knows what the workers loaded and predicted.
    result.stdout.re_match_lines(
        [r".*vleval summary.*", r"model fake \(Fake, cpu, float32, loaded [12]x in 0.0 s\): 8/9 cases passed"]
    )
    # Each case answered once: generated by its worker, or read from the cache the other worker just wrote.
    (line,) = [line for line in result.stdout.lines if line.startswith("prediction fake: ")]
    match = re.match(
        r"prediction fake: 9/9 cases, (\d+) generated in \d+ batches .*, (\d+) from the answer cache", line
    )
    assert match is not None and int(match[1]) + int(match[2]) == 9, line
    result.stdout.re_match_lines(
        [r"\s+test_a.yaml\s+4/5\s+passed\s+mean score 0.800", r"\s+test_b.yaml\s+4/4\s+passed"]
    )
