"""Large case files' parsed cases kept between runs (cases/parsed_cache.py): read back only while current, every
error and warning still the parse's own, never an error of its own."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image

from pytest_vleval.cases import parsed_cache
from pytest_vleval.cases.casefile import CaseFileError
from pytest_vleval.cases.images import LargeImageWarning
from pytest_vleval.cases.parsed_cache import FOLDER, KEEP_FROM_CASES, load_case_file_kept


def _suite(n: int, image: str = "images/red.png") -> str:
    return "cases:\n" + "".join(
        f"  - {{id: c{i}, image: {image}, question: 'Say w{i % 3}.', expected: w{i % 3}}}\n" for i in range(n)
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "images" / "red.png")
    monkeypatch.setattr(parsed_cache, "KEEP_FROM_CASES", 5)
    return tmp_path


class Parses:
    """Counts the real parses behind load_case_file_kept."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = parsed_cache.load_case_file

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(parsed_cache, "load_case_file", counted)


def _load(project: Path, name: str = "test_big.yaml"):  # type: ignore[no-untyped-def]
    return load_case_file_kept(
        project / name, roots=(project,), image_store=project / ".vleval" / "images", folder=project / FOLDER
    )


def test_a_large_file_is_parsed_once_and_read_back_equal(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "test_big.yaml").write_text(_suite(8))
    parses = Parses(monkeypatch)
    first = _load(project)
    second = _load(project)
    assert parses.count == 1
    assert second == first and len(second.cases) == 8
    assert [p.suffix for p in (project / FOLDER).iterdir() if not p.name.startswith(".")] == [".pickle"]
    assert (project / FOLDER / ".gitignore").read_text().endswith("*\n")


def test_small_files_and_source_blocks_are_not_kept(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "test_small.yaml").write_text(_suite(4))
    parses = Parses(monkeypatch)
    _load(project, "test_small.yaml")
    _load(project, "test_small.yaml")
    assert parses.count == 2 and not (project / FOLDER).exists()


def test_an_edited_file_is_parsed_again_and_its_errors_are_the_parses(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project / "test_big.yaml"
    path.write_text(_suite(8))
    parses = Parses(monkeypatch)
    _load(project)
    path.write_text(_suite(8).replace("expected: w1", "expectd: w1", 1))
    with pytest.raises(CaseFileError, match=r"test_big.yaml:3: case 'c1': key 'expectd': unknown key"):
        _load(project)
    path.write_text(_suite(9))
    assert len(_load(project).cases) == 9
    assert parses.count == 3


def test_a_missing_image_is_the_parses_error_at_its_case(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "test_big.yaml").write_text(_suite(8))
    _load(project)
    (project / "images" / "red.png").unlink()
    with pytest.raises(
        CaseFileError, match=r"test_big.yaml:2: case 'c0': key 'image': image not found: images/red.png"
    ):
        _load(project)


def test_a_large_image_still_warns_at_its_case_on_a_rerun(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "test_big.yaml").write_text(_suite(8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # an 8x8 image is "large" now (below 2x: a warning)
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _load(project)
        assert [str(w.message).split(": image")[0] for w in caught if w.category is LargeImageWarning] == [
            f"case 'c{i}': key 'image'" for i in range(8)
        ]


def test_an_unreadable_kept_file_is_parsed_again_and_rewritten(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "test_big.yaml").write_text(_suite(8))
    first = _load(project)
    (kept,) = (project / FOLDER).glob("*.pickle")
    kept.write_bytes(kept.read_bytes()[:100])  # cut short, as by a killed run
    parses = Parses(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _load(project) == first
    assert parses.count == 1
    assert _load(project) == first and parses.count == 1  # rewritten whole


def test_another_plugin_version_or_roots_parse_again(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "test_big.yaml").write_text(_suite(8))
    parses = Parses(monkeypatch)
    _load(project)
    monkeypatch.setattr(parsed_cache, "_code_fingerprint", lambda: "an edited plugin")
    _load(project)
    assert parses.count == 2
    outside = project / "sub"
    outside.mkdir()
    with pytest.raises(CaseFileError, match="outside the folders images may come from"):
        load_case_file_kept(
            project / "test_big.yaml", roots=(outside,), image_store=project / "store", folder=project / FOLDER
        )


def test_collection_reads_the_kept_cases_and_the_ini_turns_it_off(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", test_many=_suite(KEEP_FROM_CASES))
    for _ in range(2):
        result = fake_project.runpytest("--vl-model=fake", "--collect-only", "-q", "-p", "no:cacheprovider")
        result.stdout.fnmatch_lines([f"{KEEP_FROM_CASES} tests collected*"])
    assert len(list((fake_project.path / FOLDER).glob("*.pickle"))) == 1
    fake_project.makeini("[pytest]\nvl_collection_cache = false\n")
    (fake_project.path / FOLDER / ".gitignore").unlink()
    for kept in (fake_project.path / FOLDER).glob("*.pickle"):
        kept.unlink()
    result = fake_project.runpytest("--vl-model=fake", "--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([f"{KEEP_FROM_CASES} tests collected*"])
    assert list((fake_project.path / FOLDER).iterdir()) == []


def test_a_folder_that_cannot_be_written_only_means_parsing_every_time(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_vleval.predict import cache

    def refuse(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache, "write_atomic", refuse)  # a read-only checkout, a full disk
    (project / "test_big.yaml").write_text(_suite(8))
    parses = Parses(monkeypatch)
    assert len(_load(project).cases) == len(_load(project).cases) == 8
    assert parses.count == 2 and not list((project / FOLDER).glob("*.pickle"))
