"""Pure planning: SweepSpec → RunSpecs with a cost per cell, before a GPU-hour is spent.

Units are in the names: `pairs`, `tokens`, `flops`, `bytes`, `hours`. Nothing here touches the disk
or a scheduler, so planning a 10,000-cell grid is a pure-CPU affair (see bench/plan_speed.py).

Cost model (documented so a reader can check it):
- Training FLOPs C = 6·N·D, N non-embedding parameters, D tokens (Kaplan et al. 2020); optionally the
  attention term 12·L·d·T per token (PaLM, Chowdhery et al. 2022, app. B). Evaluation adds 2·N per
  scored token at every milestone.
- Memory per GPU under ZeRO (Rajbhandari et al. 2020) with mixed-precision Adam: bf16 weights 2Ψ,
  bf16 grads 2Ψ, fp32 master + moments 12Ψ, partitioned by stage over G data-parallel ranks; ZeRO-3
  adds a gathered-layer buffer. Activations per token per layer ≈ 16d + 4·kv + 8·i bytes (bf16, fused
  SDPA, SwiGLU); with full activation checkpointing only the layer inputs (2d bytes) are kept, plus
  one layer recomputed at a time. A reward head emits one scalar, so there is no vocab-sized logit
  tensor. Fixed overhead 2 GiB (CUDA context, communication buffers), 10% fragmentation.
- Micro-batch: with `train.micro_batch_pairs: auto` the largest power of two (≤ the per-rank share of
  the global batch) whose memory fits the GPU; Resources carry it.
- Communication per GPU (ring collectives move (G−1)/G of the message; Ψ reward-model parameters, b
  bytes per element of the training dtype): ZeRO-3 all-gathers the parameters in the forward and
  again in the backward and reduce-scatters the gradients, every micro-step: 3·b·Ψ·(G−1)/G; ZeRO 0–2
  all-reduce the gradients once per optimizer step: 2·b·Ψ·(G−1)/G. Divided by the profile's
  inter-node bandwidth when a cell spans nodes, else the intra-node one; no overlap with compute is
  assumed (an upper bound; DeepSpeed's prefetch hides part of it).
- Evaluation at each milestone: every rank scores 1/G of each set (2·N FLOPs per token), plus one
  parameter all-gather per evaluation micro-batch under ZeRO-3.
- Checkpoint: bf16 weights + fp32 optimizer state (14·Ψ bytes) written at the profile's storage
  bandwidth, then read back and hashed (each rank its own shards, ~1 GB/s per rank).
See docs/planner.md for a worked example.

Modules: plan/memory.py (devices, memory per GPU, the GPU count that fits), plan/cost.py (one cell's
FLOPs, hours and resources), plan/grid.py (the planner: cells, ids, prices, `select`).
"""

from .cost import (
    CellCost,
    attention_flops,
    bandwidth_bytes_per_s,
    checkpoint_bytes,
    checkpoint_seconds,
    comm_bytes_per_step,
    cost_cell,
    eval_cost,
    training_flops,
)
from .grid import Plan, plan, resolve_init, select, signal_warnings, train_of, with_changes
from .memory import (
    FRAGMENTATION,
    GIB,
    GPUS,
    HASH_BYTES_PER_S,
    OVERHEAD_BYTES,
    USABLE_FRACTION,
    GPUType,
    Memory,
    PlanError,
    fit_micro,
    memory_per_gpu,
    min_gpus,
)

__all__ = [
    "FRAGMENTATION",
    "GIB",
    "GPUS",
    "HASH_BYTES_PER_S",
    "OVERHEAD_BYTES",
    "USABLE_FRACTION",
    "CellCost",
    "GPUType",
    "Memory",
    "Plan",
    "PlanError",
    "attention_flops",
    "bandwidth_bytes_per_s",
    "checkpoint_bytes",
    "checkpoint_seconds",
    "comm_bytes_per_step",
    "cost_cell",
    "eval_cost",
    "fit_micro",
    "memory_per_gpu",
    "min_gpus",
    "plan",
    "resolve_init",
    "select",
    "signal_warnings",
    "train_of",
    "training_flops",
    "with_changes",
]
