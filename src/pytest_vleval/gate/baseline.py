"""Which saved run ``--vl-compare=REF`` names, read at configure time so that a bad reference fails before the run.
``latest`` is this machine's newest complete run; a reference that names an incomplete run (interrupted, collection
errors, no case ran: ``run.complete`` is false) is refused, since its missing cases would read as a changed suite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.options import RecordOptions
from pytest_vleval.records.run_info import incomplete_reason
from pytest_vleval.records.schema import RecordError, check_record
from pytest_vleval.records.storage import RunStorage, StorageError, read_json

__all__ = ["find_baseline"]


def find_baseline(config: pytest.Config, options: RecordOptions) -> tuple[Path, dict[str, Any], list[str]]:
    """The baseline's path and record, and notes on the newer incomplete runs ``latest`` passed over;
    a :class:`pytest.UsageError` naming the reference when there is none or it names an incomplete run."""
    ref = options.compare
    assert ref is not None
    candidates = [Path(config.invocation_params.dir) / ref, Path(config.rootpath) / ref]
    notes: list[str] = []
    try:
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            if ref.endswith(".json") or "/" in ref or os.sep in ref:
                raise StorageError(f"{ref}: no such file")
            storage = RunStorage(options.storage)
            if ref.strip() in ("", "latest"):
                path, skipped = storage.latest()
                notes = [
                    f"--vl-compare={ref}: passed over {run.path.name}, an incomplete run ({why})"
                    for run, why in skipped
                ]
            else:
                path = storage.find(ref)
        record = check_record(read_json(path), path)
    except (StorageError, RecordError) as exc:
        raise pytest.UsageError(f"--vl-compare={ref}: {exc}") from None
    reason = incomplete_reason(record)
    if reason is not None:
        raise pytest.UsageError(
            f"--vl-compare={ref}: {path} is an incomplete run ({reason}) and cannot be a baseline: its missing cases "
            "would read as a changed suite. Compare with another run (--vl-compare=NAME, a number or a JSON path), "
            "or re-run the whole suite and save it with --vl-save=NAME"
        )
    return path, record, notes
