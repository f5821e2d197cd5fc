"""Public path of golden caption-set manifests, kept for user code: the implementation lives in
:mod:`pytest_vleval.cases.golden`."""

from __future__ import annotations

from pytest_vleval.cases.golden import MANIFEST_KEYS, GoldenImage, GoldenSet, GoldenSetError, load_golden_set

__all__ = ["MANIFEST_KEYS", "GoldenImage", "GoldenSet", "GoldenSetError", "load_golden_set"]
