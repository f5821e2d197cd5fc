"""What the prediction pass did, per model and for the batch-invariance check, in plain types for the record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_vleval.predict.generation import InvarianceDifference

__all__ = ["ModelRun", "difference_entry"]


@dataclass
class ModelRun:
    """What the prediction pass did for one model, for the progress bar and the summary."""

    total: int = 0  # cases planned
    cached: int = 0
    generated: int = 0
    batches: int = 0
    seconds: float = 0.0  # spent generating
    failed: list[str] = field(default_factory=list)  # "file::case: reason" of cases the model failed
    oom_batch: int | None = None  # a batch size that ran out of memory
    batch_cap: int | None = None  # the largest size that fitted after it

    @property
    def done(self) -> int:
        return self.cached + self.generated

    def to_dict(self) -> dict[str, Any]:
        return {
            "planned": self.total,
            "cached": self.cached,
            "generated": self.generated,
            "batches": self.batches,
            "seconds": self.seconds,
            "failed": list(self.failed),
            "oom_batch": self.oom_batch,
            "batch_cap": self.batch_cap,
        }


def difference_entry(difference: InvarianceDifference) -> dict[str, Any]:
    got, want = difference.answers_at_turn()
    return {
        "model": difference.label,
        "case": f"{difference.case.path.name}::{difference.case.id}",
        "turn": difference.turn + 1,
        "batch_size": difference.batch_size,
        "batched": got,
        "alone": want,
    }
