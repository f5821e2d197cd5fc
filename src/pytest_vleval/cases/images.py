"""Images named by case files and golden sets, checked once at collection, cheaply: the path stays inside the
rootdir or a folder of the ini key ``vl_data_roots``, names a regular file, and starts with a header PIL can
read. Pixels are not decoded: a file whose header is fine but whose pixel data is cut short stays a run-time
error of its case."""

from __future__ import annotations

import functools
import re
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = ["DATA_ROOTS_INI", "ImageNotFound", "ImageProblem", "LargeImageWarning", "check_image", "resolved_roots"]

DATA_ROOTS_INI = "vl_data_roots"
_LFS_POINTER = b"version https://git-lfs"
_PIXELS_RE = re.compile(r"\((\d+) pixels\)")


class LargeImageWarning(pytest.PytestWarning):
    """An image above PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), reported at the case (or
    golden set) that names it rather than at whichever test happens to open it first."""


class ImageProblem(ValueError):
    """Why one image cannot be used; the caller names the file, the case and the key."""


class ImageNotFound(ImageProblem):
    """No file at the image's path."""


def resolved_roots(roots: Sequence[Path] | None) -> tuple[Path, ...] | None:
    """`roots` with symlinks and '..' resolved, once per file; None stays None (no containment check)."""
    return None if roots is None else tuple(dict.fromkeys(Path(root).resolve() for root in roots))


def check_image(path: Path, shown: str, roots: Sequence[Path] | None = None) -> str | None:
    """Check the image at `path` (`shown` is how the file names it). Raises :class:`ImageProblem` when it
    cannot be used; returns a note when PIL will warn that it is large, else None. `roots`: resolved folders
    the image must lie in (see :func:`resolved_roots`); None: anywhere."""
    if roots is not None:
        _check_inside(path, shown, roots)
    try:
        mode = path.stat()
    except FileNotFoundError:
        raise ImageNotFound(f"image not found: {shown} (looked for {path})") from None
    except OSError as exc:
        raise ImageProblem(f"cannot read image {shown}: {exc}") from None
    if stat.S_ISDIR(mode.st_mode):
        raise ImageProblem(f"image {shown} is a folder, not an image file ({path})")
    if not stat.S_ISREG(mode.st_mode):
        raise ImageProblem(f"image {shown} is not a regular file (a fifo, socket or device: {path})")
    if mode.st_size == 0:
        raise ImageProblem(f"image {shown} is an empty file (0 bytes: {path})")
    from PIL import Image

    # A suite names the same images many times (200,000 VQA questions on 40,000 images): each file's header is
    # read once per content (path, size, modification time) and limit.
    return _header_note(path, shown, mode.st_size, mode.st_mtime_ns, Image.MAX_IMAGE_PIXELS)


@functools.lru_cache(maxsize=65536)
def _header_note(path: Path, shown: str, size: int, mtime_ns: int, limit: int | None) -> str | None:
    return _check_header(path, shown)


def _check_inside(path: Path, shown: str, roots: Sequence[Path]) -> None:
    if _inside(path, tuple(roots)):
        return
    real = path.resolve()
    allowed = ", ".join(str(root) for root in roots)
    raise ImageProblem(
        f"image {shown} resolves to {real}, outside the folders images may come from ({allowed}); "
        f"to allow it, add a folder holding it to the ini key {DATA_ROOTS_INI} (one folder a line)"
    )


@functools.lru_cache(maxsize=65536)
def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    real = path.resolve()
    return any(real.is_relative_to(root) for root in roots)


def _check_header(path: Path, shown: str) -> str | None:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS  # read now: a conftest.py may have raised it
    try:
        # Only the header is read. PIL's own warning is replaced by the case's (below).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:
        match = _PIXELS_RE.search(str(exc))
        pixels = int(match.group(1)) if match else 0
        raise ImageProblem(
            f"image {shown} has {pixels:,} pixels, more than twice PIL's decompression-bomb limit "
            f"PIL.Image.MAX_IMAGE_PIXELS ({limit:,}), so PIL refuses to open it: downscale it, or raise the "
            f"limit in conftest.py (import PIL.Image; PIL.Image.MAX_IMAGE_PIXELS = {pixels}; None: no limit)"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageProblem(f"image {shown} is not an image file PIL can read: {_why(path, exc)}") from None
    pixels = max(1, width) * max(1, height)
    if limit is None or pixels <= limit:
        return None
    return (
        f"image {shown} is {width}x{height} ({pixels:,} pixels), above PIL's decompression-bomb limit "
        f"PIL.Image.MAX_IMAGE_PIXELS ({limit:,}): PIL warns each time it opens it; downscale it, or raise the "
        f"limit in conftest.py (import PIL.Image; PIL.Image.MAX_IMAGE_PIXELS = {pixels})"
    )


def _why(path: Path, exc: Exception) -> str:
    try:
        with path.open("rb") as file:
            head = file.read(32)
    except OSError:
        head = b""
    if head.startswith(_LFS_POINTER):
        return "it is a Git LFS pointer, not the image (run git lfs pull)"
    if "cannot identify image file" in str(exc):
        return f"no known image format starts with {head[:16]!r}"
    return f"{exc} (the header is cut short or damaged)"
