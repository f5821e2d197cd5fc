"""Image resolution limits (``--vl-min-pixels`` / ``--vl-max-pixels``, a case file's ``min_pixels`` /
``max_pixels``).

The Qwen-VL family's image processors (Qwen2-VL, Qwen2.5-VL, Qwen3-VL: ``size`` with ``shortest_edge`` /
``longest_edge`` as pixel areas, and a ``merge_size``) take the limits themselves and resize with their own
``smart_resize``; every other model gets the image resized, keeping its aspect ratio, until its area is within
the limits, before its processor sees it. A 4000x3000 photo is ~12k vision tokens in Qwen2/2.5/3-VL at the
default limits, so runs that differ here are not comparable: the effective limits go into the record.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

__all__ = ["effective_size", "limited", "model_limits", "resize_within", "takes_limits"]


def takes_limits(processor: Any) -> bool:
    """Whether the processor's image processor takes pixel-area limits itself (the Qwen-VL family)."""
    image_processor = getattr(processor, "image_processor", processor)
    size = getattr(image_processor, "size", None)
    if size is None or not hasattr(image_processor, "merge_size"):
        return False  # elsewhere "shortest_edge" is a side length (CLIP), not an area
    try:
        return size["shortest_edge"] is not None and size["longest_edge"] is not None
    except (KeyError, TypeError):
        return False


def model_limits(processor: Any) -> tuple[int | None, int | None]:
    """The model's own (min_pixels, max_pixels); (None, None) for processors without such limits."""
    if not takes_limits(processor):
        return None, None
    size = getattr(processor, "image_processor", processor).size
    return int(size["shortest_edge"]), int(size["longest_edge"])


@contextlib.contextmanager
def limited(processor: Any, low: int | None, high: int | None) -> Iterator[None]:
    """Within the block, a Qwen-VL-family processor resizes (and counts tokens) under these limits; a limit left
    None keeps the model's own. Other processors are untouched (their images are resized instead)."""
    if (low is None and high is None) or not takes_limits(processor):
        yield
        return
    image_processor = getattr(processor, "image_processor", processor)
    own = image_processor.size
    own_low, own_high = model_limits(processor)
    image_processor.size = {"shortest_edge": low or own_low, "longest_edge": high or own_high}
    try:
        yield
    finally:
        image_processor.size = own


def effective_size(width: int, height: int, low: int | None, high: int | None) -> tuple[int, int]:
    """(width, height) scaled, aspect kept, so that the area lies within [low, high] (a None bound is open)."""
    area = width * height
    scale = 1.0
    if high is not None and area > high:
        scale = math.sqrt(high / area)
    elif low is not None and area < low:
        scale = math.sqrt(low / area)
    if scale == 1.0:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def resize_within(image: Any, low: int | None, high: int | None) -> Any:
    """A PIL image resized (bicubic, aspect kept) so that its area lies within the limits; the same image if it
    already does."""
    size = effective_size(image.width, image.height, low, high)
    if size == (image.width, image.height):
        return image
    from PIL import Image

    return image.resize(size, Image.Resampling.BICUBIC)
