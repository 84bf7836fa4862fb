"""The learning-rate schedule: a pure function of the optimizer step (so it needs no checkpoint).

Default is the paper's: linear warmup over 10% of the steps, then constant (arXiv 2505.10527
appendix A.3; docs/paper_constants.md). Decaying schedules exist for grid mode.
"""

from __future__ import annotations

import math

from ..config import TrainSpec


def warmup_steps(train: TrainSpec, total_steps: int) -> int:
    if train.warmup_steps is not None:
        return train.warmup_steps
    return int(round(train.warmup_frac * total_steps))


def lr_at(step: int, total_steps: int, train: TrainSpec) -> float:
    """LR for the update that turns step `step` into `step + 1` (0-based)."""
    warm = warmup_steps(train, total_steps)
    if warm > 0 and step < warm:
        return train.lr * (step + 1) / warm
    if train.schedule == "constant" or total_steps <= warm:
        return train.lr
    frac = min(1.0, (step - warm) / max(1, total_steps - warm))
    floor = train.min_lr_frac * train.lr
    if train.schedule == "linear":
        return floor + (train.lr - floor) * (1 - frac)
    return floor + (train.lr - floor) * 0.5 * (1 + math.cos(math.pi * frac))
