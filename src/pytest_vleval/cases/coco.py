"""COCO caption references (``{"images": [...], "annotations": [...]}``) read into a golden set's images; every
problem names the file, the key, the image id and, where a common mistake explains it, a hint."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vleval.cases.checks import kind
from pytest_vleval.cases.images import ImageNotFound, ImageProblem, LargeImageWarning, check_image

if TYPE_CHECKING:
    from pytest_vleval.cases.golden import GoldenImage, GoldenSetError

__all__ = ["read_coco"]

COCO_HINT = (
    'COCO captions are {"images": [{"id": 1, "file_name": "a.jpg"}], '
    '"annotations": [{"image_id": 1, "caption": "..."}]}'
)


class _Reader:
    def __init__(
        self, references_path: Path, images_dir: Path, manifest: Path, roots: Sequence[Path] | None = None
    ) -> None:
        self.path = references_path
        self.images_dir = images_dir
        self.manifest = manifest
        self.roots = roots
        self.order: list[int | str] = []
        self.file_names: dict[int | str, str] = {}
        self.keys: dict[str, int | str] = {}  # str(id) -> id, to tell 1 from "1"

    def error(
        self, key: str, problem: str, *, image_id: int | str | None = None, hint: str | None = None
    ) -> GoldenSetError:
        from pytest_vleval.cases.golden import GoldenSetError

        return GoldenSetError(self.path, key, problem, image_id=image_id, hint=hint, manifest=self.manifest)

    def document(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise self.error(f"line {exc.lineno}, column {exc.colno}", f"malformed JSON: {exc.msg}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error("file", f"cannot be read: {exc}") from None
        if isinstance(document, list):
            raise self.error(
                "file",
                "is a list; expected a COCO object with 'images' and 'annotations'",
                hint="this looks like a COCO results file ([{image_id, caption}]); " + COCO_HINT,
            )
        if not isinstance(document, dict):
            raise self.error("file", f"must be a JSON object, got {kind(document)}", hint=COCO_HINT)
        for section in ("images", "annotations"):
            if not isinstance(document.get(section), list):
                found = "missing" if section not in document else f"a {kind(document[section])}, not a list"
                raise self.error(section, found, hint=COCO_HINT)
        return document

    def image_entry(self, index: int, entry: Any) -> None:
        key = f"images[{index}]"
        if not isinstance(entry, dict):
            raise self.error(key, f"must be an object with 'id' and 'file_name', got {kind(entry)}")
        image_id = entry.get("id")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)) or image_id == "":
            raise self.error(f"{key}.id", f"must be an integer or a non-empty string, got {image_id!r}")
        if image_id in self.file_names or str(image_id) in self.keys:
            raise self.error(f"{key}.id", "duplicate image id", image_id=image_id)
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise self.error(f"{key}.file_name", f"must be a non-empty string, got {file_name!r}", image_id=image_id)
        if Path(file_name).is_absolute():
            raise self.error(
                f"{key}.file_name",
                f"{file_name!r} is absolute",
                image_id=image_id,
                hint="file names are relative to images_dir, so the set can move",
            )
        self.order.append(image_id)
        self.file_names[image_id] = file_name
        self.keys[str(image_id)] = image_id

    def annotation(self, index: int, entry: Any, references: dict[int | str, list[str]]) -> None:
        key = f"annotations[{index}]"
        if not isinstance(entry, dict):
            raise self.error(key, f"must be an object with 'image_id' and 'caption', got {kind(entry)}")
        image_id = entry.get("image_id")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)) or image_id not in references:
            hint = None
            if isinstance(image_id, (int, str)) and str(image_id) in self.keys:
                hint = f"ids compare with their JSON type: {image_id!r} is not {self.keys[str(image_id)]!r}"
            raise self.error(f"{key}.image_id", f"{image_id!r} is not the id of any entry in 'images'", hint=hint)
        caption = entry.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise self.error(f"{key}.caption", f"must be a non-empty string, got {caption!r}", image_id=image_id)
        references[image_id].append(caption)

    def check_image(self, key: str, image_id: int | str, image_path: Path) -> None:
        try:
            note = check_image(image_path, self.file_names[image_id], self.roots)
        except ImageNotFound:
            raise self.error(key, f"image file not found: {image_path}", image_id=image_id) from None
        except ImageProblem as exc:
            raise self.error(key, str(exc), image_id=image_id) from None
        if note is None:
            return
        # Located at the manifest, where the set's tests are reported (COCO files are often one long line).
        message = f"{self.path}: {key} (image id {image_id!r}): {note}"
        try:
            warnings.warn_explicit(LargeImageWarning(message), LargeImageWarning, str(self.manifest), 1)
        except LargeImageWarning:
            raise self.error(key, note, image_id=image_id) from None

    def images(self, references: dict[int | str, list[str]]) -> tuple[GoldenImage, ...]:
        from pytest_vleval.cases.golden import GoldenImage

        images: list[GoldenImage] = []
        for index, image_id in enumerate(self.order):
            if not references[image_id]:
                raise self.error(
                    f"images[{index}]",
                    f"image {self.file_names[image_id]!r} has no references (no annotation with this image_id)",
                    image_id=image_id,
                )
            image_path = self.images_dir / self.file_names[image_id]
            self.check_image(f"images[{index}].file_name", image_id, image_path)
            images.append(GoldenImage(str(image_id), image_id, image_path, tuple(references[image_id])))
        if not images:
            raise self.error("images", "is empty: a golden set needs at least one image")
        return tuple(images)


def read_coco(
    references_path: Path, images_dir: Path, manifest: Path, roots: Sequence[Path] | None = None
) -> tuple[GoldenImage, ...]:
    """The set's images with their reference captions, in the order of the file's ``images``; each image is
    checked (:func:`~pytest_vleval.cases.images.check_image`), inside `roots` (resolved) unless None."""
    reader = _Reader(references_path, images_dir, manifest, roots)
    document = reader.document()
    for index, entry in enumerate(document["images"]):
        reader.image_entry(index, entry)
    references: dict[int | str, list[str]] = {image_id: [] for image_id in reader.order}
    for index, entry in enumerate(document["annotations"]):
        reader.annotation(index, entry, references)
    return reader.images(references)
