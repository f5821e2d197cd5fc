"""Public path of the COCO caption metrics, kept for user code: the implementation lives in
:mod:`pytest_vleval.scoring.captions` (with ``java.py``, ``ptb_fallback.py`` and ``caption_inputs.py`` beside it)."""

from __future__ import annotations

from pytest_vleval.scoring import captions as _captions
from pytest_vleval.scoring.captions import *  # noqa: F403
from pytest_vleval.scoring.java import LOCALE_FLAGS, NASHORN_REMOVED_IN, SpiceSetup

__all__ = [*_captions.__all__, "LOCALE_FLAGS", "NASHORN_REMOVED_IN", "SpiceSetup"]
