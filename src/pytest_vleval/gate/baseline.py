"""Which saved run ``--vl-compare=REF`` names, read at configure time so that a bad reference fails before the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.options import RecordOptions
from pytest_vleval.records.schema import RecordError, check_record
from pytest_vleval.records.storage import RunStorage, StorageError, read_json

__all__ = ["find_baseline"]


def find_baseline(config: pytest.Config, options: RecordOptions) -> tuple[Path, dict[str, Any]]:
    """The baseline's path and record; a :class:`pytest.UsageError` naming the reference when there is none."""
    ref = options.compare
    assert ref is not None
    candidates = [Path(config.invocation_params.dir) / ref, Path(config.rootpath) / ref]
    try:
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            if ref.endswith(".json") or "/" in ref or os.sep in ref:
                raise StorageError(f"{ref}: no such file")
            path = RunStorage(options.storage).find(ref)
        return path, check_record(read_json(path), path)
    except (StorageError, RecordError) as exc:
        raise pytest.UsageError(f"--vl-compare={ref}: {exc}") from None
