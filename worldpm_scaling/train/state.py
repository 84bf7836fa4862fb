"""Where a run is: the TrainState a checkpoint records beside the engine's, its RNG states, and the
checkpoint clock (when the next save is due).

Determinism is what makes resume exact: the data order is a seeded permutation and step k always
consumes pairs [k·B, (k+1)·B) of it (per rank), the LR is a pure function of k, and a checkpoint
holds model, optimizer, this state (counters, RNG states, the metrics of its step not yet logged), so
a resumed run draws exactly the curve an uninterrupted one would have — and never logs a step twice.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    """Where a run is, apart from the model and optimizer: what a checkpoint records beside the engine's
    state and `Trainer.load_state_dict` puts back (the data position is a pure function of `step`:
    step k consumes pairs [k·B, (k+1)·B) of the seeded order)."""

    step: int = 0
    pairs_seen: int = 0
    tokens_seen: int = 0
    next_milestone: int = 0
    """Index of the next milestone (pairs) not yet evaluated."""
    skipped: int = 0
    """Batches skipped for a non-finite loss or grad norm."""
    pending_metrics: dict[str, float] | None = None
    """Metrics of `step` not yet logged (a checkpoint taken between an update and its logging)."""
    evals_due: int = 0
    """Milestone evaluations owed at `step`."""
    logged_upto: int | None = None
    """Highest step already handed to the tracker: a resumed run never logs a step twice."""
    rng: dict[str, Any] | None = None
    """torch / numpy / python (and CUDA) RNG states at the last step boundary."""

    def state_dict(self) -> dict[str, Any]:
        """The fields by name, not copied (a checkpoint pickles them at once)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_state_dict(cls, st: dict[str, Any]) -> TrainState:
        """The fields a checkpoint recorded (extra keys, e.g. the cell id, are the caller's)."""
        return cls(**{f.name: st[f.name] for f in dataclasses.fields(cls) if f.name in st})


@dataclass
class TrainResult:
    status: str
    """FINISHED | FAILED | KILLED | PREEMPTED (saved at a step boundary; the job should requeue)"""
    steps: int
    pairs_seen: int
    tokens_seen: int
    final_loss: float | None
    checkpoint: Path | None


def capture_rng() -> dict[str, Any]:
    """torch / numpy / python (and CUDA) RNG states, as `restore_rng` puts them back."""
    st: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def restore_rng(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class CheckpointClock:
    """When a save is due: every `every_steps` steps, or `every_minutes` after the last save. The time
    clock is rank 0's alone (the loop agrees on it across ranks); every rank restarts it at each save."""

    def __init__(self, every_steps: int | None, every_minutes: float | None, rank: int):
        self.every_steps, self.every_minutes, self.rank = every_steps, every_minutes, rank
        self._since = time.monotonic()

    def restart(self) -> None:
        self._since = time.monotonic()

    def due(self, step: int) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.rank == 0 and self.every_minutes and time.monotonic() - self._since >= 60 * self.every_minutes)
