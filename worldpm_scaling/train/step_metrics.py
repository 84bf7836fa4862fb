"""A step's numbers: what one optimizer step logs (loss, accuracy, grad norm, LR, progress,
throughput, MFU) and whether a non-finite loss or grad norm skips the step or stops the run.

The loop hands over the step's reduced sums (one device→host read-back a step); the FLOPs count
is PaLM's (Chowdhery et al. 2022, appendix B) with the attended (query, key) pairs counted exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import names
from ..config import RunSpec, TrainSpec
from .collate import Batch

log = logging.getLogger(__name__.rpartition(".")[0] + ".loop")  # the loop's logger: `wps train` shows it

CPU_PEAK_FLOPS = 50e9
"""Assumed peak FLOP/s of one CPU process for MFU (the default of ClusterSpec.cpu_gflops)."""


def flops_per_step(run: RunSpec, real_tokens: int, attn_units: int) -> float:
    """Training FLOPs: 6·N per token plus 12·L·d per attended (query, key) pair — PaLM (Chowdhery et
    al. 2022) appendix B's 6N + 12·L·d·T, with T·tokens replaced by the pairs actually attended."""
    m = run.model
    return 6.0 * m.params_non_embedding * real_tokens + 12.0 * m.layers * m.hidden * attn_units


def attention_units(b: Batch) -> int:
    """Σ query×key pairs the sequences of `b` need (causal halves counted in full, as PaLM does)."""
    if b.segments is not None:
        return sum((qe - qs) * ((qe - qs) + (pe - ps)) for qs, qe, ps, pe in b.segments)
    return int(b.real_tokens * b.input_ids.shape[1])  # padded rows: upper bound, a row's length per token


@dataclass(frozen=True)
class StepSums:
    """One step's statistics summed over its micro-batches and all ranks."""

    loss_sum: float
    correct: float
    pairs: float
    real_tokens: float
    capacity: float
    attn_units: float

    @property
    def loss(self) -> float:
        return self.loss_sum / self.pairs


def step_metrics(
    run: RunSpec,
    s: StepSums,
    *,
    grad_norm: float,
    lr: float,
    pairs_seen: int,
    tokens_seen: int,
    seconds: float,
    peak_flops: float,
    world: int,
) -> dict[str, float]:
    """The tracker's metrics of an applied step (names.py's keys)."""
    return {
        names.TRAIN_LOSS: s.loss,
        names.TRAIN_ACC: s.correct / s.pairs,
        names.TRAIN_GRAD_NORM: grad_norm,
        names.TRAIN_LR: lr,
        names.TRAIN_PAIRS_SEEN: pairs_seen,
        names.TRAIN_TOKENS_SEEN: tokens_seen,
        names.PERF_PAIRS_PER_S: s.pairs / seconds,
        names.PERF_TOKENS_PER_S: s.real_tokens / seconds,
        names.PERF_MFU: flops_per_step(run, int(s.real_tokens), int(s.attn_units)) / seconds / (peak_flops * world),
        names.PERF_REAL_TOKEN_FRAC: s.real_tokens / s.capacity,
    }


class NonFiniteLossError(RuntimeError):
    """Loss or grad norm became NaN/Inf; names the step. The last good checkpoint is kept."""


def nonfinite_guard(
    t: TrainSpec, *, loss: float, step: int, skipped: int, last_checkpoint: Path | None
) -> Callable[[float], bool]:
    """The engine's `allow(grad_norm)` for the step after `step`: True to apply it; False to skip it
    (`train.nonfinite: skip`, fewer than `max_skipped_batches` skipped so far); else NonFiniteLossError."""

    def allow(gn: float) -> bool:
        if math.isfinite(loss) and math.isfinite(gn):
            return True
        what = "loss" if not math.isfinite(loss) else "grad norm"
        if t.nonfinite == "skip" and skipped < t.max_skipped_batches:
            log.warning(
                "non-finite %s at step %d: batch skipped (%d/%d)", what, step + 1, skipped + 1, t.max_skipped_batches
            )
            return False
        raise NonFiniteLossError(
            f"non-finite {what} at step {step + 1} (loss={loss}, grad_norm={gn}); "
            f"last good checkpoint: {last_checkpoint or 'none'}"
        )

    return allow
