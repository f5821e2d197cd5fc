"""Images named by case files and golden sets are checked at collection: inside the rootdir or an ini
``vl_data_roots`` folder, a regular file, a header PIL can read, and PIL's size limit reported at the case."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from pytest_vleval.cases.casefile import CaseFileError, load_case_file
from pytest_vleval.cases.golden import GoldenSetError, load_golden_set
from pytest_vleval.cases.images import LargeImageWarning

from .conftest import FAKE_BACKEND_CONFTEST, make_png


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (1-bit grey) with no pixel data: PIL opens it without decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def case_file(image: str) -> str:
    return f"cases:\n  - {{id: ok, image: images/red.png, question: 'say: x', expected: x}}\n  - {{id: a, image: '{image}', question: 'say: x', expected: x}}\n"


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real image in a folder outside the pytester project (its rootdir)."""
    return make_png(tmp_path_factory.mktemp("outside") / "red.png")


def _broken(root: Path, kind: str) -> str:
    """Make the broken image `kind` under `root`; returns the path the case file names."""
    target = root / "images" / f"{kind}.png"
    if kind == "empty":
        target.write_bytes(b"")
    elif kind == "text":
        target.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif kind == "folder":
        target.mkdir()
    elif kind == "cut-header":
        target.write_bytes((root / "images" / "red.png").read_bytes()[:20])
    elif kind == "lfs":
        target.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 12\n")
    elif kind == "fifo":
        os.mkfifo(target)
    return f"images/{kind}.png"


BROKEN = {
    "empty": "is an empty file (0 bytes",
    "text": "is not an image file PIL can read: no known image format starts with b'root:x:0:0:root:",
    "folder": "is a folder, not an image file",
    "cut-header": "is not an image file PIL can read:",
    "lfs": "is not an image file PIL can read: it is a Git LFS pointer, not the image (run git lfs pull)",
    "fifo": "is not a regular file",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_image_is_a_collection_error_of_its_case(fake_project: pytest.Pytester, kind: str) -> None:
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no fifos on this platform")
    shown = _broken(fake_project.path, kind)
    fake_project.makefile(".yaml", test_bad=case_file(shown))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*test_bad.yaml:3: case 'a': key 'image': image {shown} {BROKEN[kind]}*"])
    assert "Traceback" not in result.stdout.str()


def test_a_cut_off_pixel_body_stays_a_run_time_error(fake_project: pytest.Pytester) -> None:
    data = (fake_project.path / "images" / "red.png").read_bytes()
    (fake_project.path / "images" / "cut.png").write_bytes(data[:-30])  # header and part of IDAT: not decoded
    fake_project.makefile(".yaml", test_cut=case_file("images/cut.png"))
    result = fake_project.runpytest("--vl-model=fake", "--collect-only", "-q", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*2 tests collected*"])


def _escape(root: Path, outside: Path, kind: str) -> str:
    if kind == "absolute":
        return str(outside)
    if kind == "dot-dot":
        return os.path.relpath(outside, root)
    link = root / "images" / "link.png"  # inside the rootdir, pointing out of it
    link.symlink_to(outside)
    return "images/link.png"


@pytest.mark.parametrize("kind", ["absolute", "dot-dot", "symlink"])
def test_an_image_outside_the_rootdir_is_refused(fake_project: pytest.Pytester, outside: Path, kind: str) -> None:
    shown = _escape(fake_project.path, outside, kind)
    fake_project.makefile(".yaml", test_bad=case_file(shown))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*test_bad.yaml:3: case 'a': key 'image': image {shown} resolves to {outside.resolve()}, outside the "
            f"folders images may come from ({fake_project.path.resolve()}); to allow it, add a folder holding it to "
            "the ini key vl_data_roots*"
        ]
    )


def test_an_etc_passwd_image_is_refused_before_it_is_read(fake_project: pytest.Pytester) -> None:
    fake_project.makefile(".yaml", test_bad=case_file("../../../../../../../../etc/passwd"))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*case 'a': key 'image': image ../../*/etc/passwd resolves to /etc/passwd, outside*"])


@pytest.mark.parametrize("kind", ["absolute", "dot-dot", "symlink"])
def test_vl_data_roots_allows_a_folder(fake_project: pytest.Pytester, outside: Path, kind: str) -> None:
    shown = _escape(fake_project.path, outside, kind)
    # relative to the ini file's folder
    fake_project.makeini(
        f"[pytest]\nvl_data_roots =\n    elsewhere\n    {os.path.relpath(outside.parent, fake_project.path)}\n"
    )
    fake_project.makefile(".yaml", test_ok=case_file(shown))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_library_callers_without_roots_read_images_anywhere(tmp_path: Path, outside: Path) -> None:
    path = tmp_path / "test_x.yaml"
    make_png(tmp_path / "images" / "red.png")
    path.write_text(case_file(str(outside)))
    assert load_case_file(path).cases[1].images == (outside,)
    with pytest.raises(CaseFileError, match="outside the folders images may come from"):
        load_case_file(path, roots=[tmp_path])


def test_a_large_image_warns_at_its_case(fake_project: pytest.Pytester) -> None:
    png_header(fake_project.path / "images" / "huge.png", 10000, 10000)  # 100M pixels: PIL warns above ~89M
    fake_project.makefile(".yaml", test_big=case_file("images/huge.png"))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider", "-W", "default::pytest.PytestWarning")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*test_big.yaml:3: LargeImageWarning: case 'a': key 'image': image images/huge.png is 10000x10000 "
            "(100,000,000 pixels), above PIL's decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS (89,478,485)*",
        ]
    )
    assert "DecompressionBombWarning" not in result.stdout.str()
    assert "test_big.yaml::a" not in result.stdout.str().split("warnings summary")[1]  # not on a test


def test_pils_own_warning_does_not_land_on_the_case_that_runs_the_batch(fake_project: pytest.Pytester) -> None:
    """A batch opens every member's image inside the first member's test: PIL's warning about the huge one
    would be reported on the case that happened to run the batch ('ok' here)."""
    fake_project.makeconftest(
        FAKE_BACKEND_CONFTEST.replace(
            "        answers = []\n",
            "        from PIL import Image\n        for c in conversations:\n            Image.open(c.images[0])\n"
            "        answers = []\n",
        )
    )
    png_header(fake_project.path / "images" / "huge.png", 10000, 10000)
    fake_project.makefile(".yaml", test_big=case_file("images/huge.png"))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider", "-W", "default::pytest.PytestWarning")
    result.assert_outcomes(passed=2, warnings=1)  # the case's own LargeImageWarning, from collection
    assert "DecompressionBombWarning" not in result.stdout.str()


def test_a_large_image_under_w_error_is_a_collection_error(fake_project: pytest.Pytester) -> None:
    png_header(fake_project.path / "images" / "huge.png", 10000, 10000)
    fake_project.makefile(".yaml", test_big=case_file("images/huge.png"))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider", "-W", "error::pytest.PytestWarning")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_big.yaml:3: case 'a': key 'image': image images/huge.png is 10000x10000*"])


def test_an_image_past_pils_hard_limit_is_a_collection_error(fake_project: pytest.Pytester) -> None:
    png_header(fake_project.path / "images" / "huge.png", 20000, 10000)  # more than twice the limit
    fake_project.makefile(".yaml", test_big=case_file("images/huge.png"))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_big.yaml:3: case 'a': key 'image': image images/huge.png has 200,000,000 pixels, more than twice "
            "PIL's decompression-bomb limit PIL.Image.MAX_IMAGE_PIXELS (89,478,485), so PIL refuses to open it*"
            "PIL.Image.MAX_IMAGE_PIXELS = 200000000*"
        ]
    )


def test_a_raised_pil_limit_is_honoured(fake_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    png_header(fake_project.path / "images" / "huge.png", 20000, 10000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000_000)  # as a conftest.py would, before collection
    fake_project.makefile(".yaml", test_big=case_file("images/huge.png"))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def _golden(tmp_path: Path, file_name: str) -> Path:
    make_png(tmp_path / "images" / "red.png")
    captions = {
        "images": [{"id": 1, "file_name": file_name}],
        "annotations": [{"id": 1, "image_id": 1, "caption": "x"}],
    }
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    manifest = tmp_path / "golden.yaml"
    manifest.write_text("prompt: Describe the image.\nreferences: captions.json\nimages_dir: images\n")
    return manifest


def test_golden_set_images_are_checked_the_same_way(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "empty.png").write_bytes(b"")
    with pytest.raises(GoldenSetError, match=r"images\[0\].file_name \(image id 1\): image empty.png is an empty"):
        load_golden_set(_golden(tmp_path, "empty.png"))
    escape = os.path.relpath(outside, tmp_path / "images")
    manifest = _golden(tmp_path, escape)
    assert load_golden_set(manifest).images[0].path.resolve() == outside.resolve()  # library default: anywhere
    with pytest.raises(GoldenSetError, match=r"outside the folders images may come from.*vl_data_roots"):
        load_golden_set(manifest, roots=[tmp_path])
    assert load_golden_set(manifest, roots=[tmp_path, outside.parent]).images


def test_a_large_golden_image_warns_at_the_manifest(tmp_path: Path) -> None:
    png_header(tmp_path / "images" / "huge.png", 10000, 10000)
    manifest = _golden(tmp_path, "huge.png")
    with pytest.warns(
        LargeImageWarning, match=r"images\[0\].file_name \(image id 1\): image huge.png is 10000x10000"
    ) as caught:
        load_golden_set(manifest)
    assert caught[0].filename == str(manifest)


def test_copied_passwd_named_png_is_refused(fake_project: pytest.Pytester) -> None:
    source = Path("/etc/passwd")
    if not source.is_file():
        pytest.skip("no /etc/passwd here")
    shutil.copyfile(source, fake_project.path / "images" / "passwd.png")
    fake_project.makefile(".yaml", test_bad=case_file("images/passwd.png"))
    result = fake_project.runpytest("--vl-model=fake", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*case 'a': key 'image': image images/passwd.png is not an image file PIL can read*"])
