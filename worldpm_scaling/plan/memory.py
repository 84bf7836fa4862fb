"""GPU memory per cell: the devices, the ZeRO memory model, the micro-batch and GPU count that fit.

Memory per GPU under ZeRO (Rajbhandari et al. 2020) with mixed-precision Adam: bf16 weights 2Ψ,
bf16 grads 2Ψ, fp32 master + moments 12Ψ, partitioned by stage over G data-parallel ranks; ZeRO-3
adds a gathered-layer buffer. Activations per token per layer ≈ 16d + 4·kv + 8·i bytes (bf16, fused
SDPA, SwiGLU); with full activation checkpointing only the layer inputs (2d bytes) are kept, plus
one layer recomputed at a time. A reward head emits one scalar, so there is no vocab-sized logit
tensor. Fixed overhead 2 GiB (CUDA context, communication buffers), 10% fragmentation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from ..config import ClusterSpec, SweepSpec, TrainSpec
from ..models import ModelShape

GIB = 1024**3


@dataclass(frozen=True)
class GPUType:
    name: str
    memory_bytes: float
    peak_flops: float
    """Dense bf16 peak, FLOP/s."""


# Vendor datasheets: A100 SXM 312 TFLOP/s bf16 dense; H100 SXM and H200 989 TFLOP/s bf16 dense.
GPUS: dict[str, GPUType] = {
    "A100-40G": GPUType("A100-40G", 40 * GIB, 312e12),
    "A100-80G": GPUType("A100-80G", 80 * GIB, 312e12),
    "H100-80G": GPUType("H100-80G", 80 * GIB, 989e12),
    "H200": GPUType("H200", 141 * GIB, 989e12),
}

OVERHEAD_BYTES = 2 * GIB
HASH_BYTES_PER_S = 1.0e9  # sha256 on one core (measured ~1.06 GB/s on this project's CPU box)
FRAGMENTATION = 1.10
USABLE_FRACTION = 0.92  # leave headroom below the card's capacity


class PlanError(ValueError):
    """A cell that cannot be planned (e.g. fits no GPU count); names the cell and the field."""

    def __init__(self, message: str, *, path: str = ""):
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.args[0]}" if self.path else self.args[0]


@dataclass(frozen=True, kw_only=True)
class Memory:
    """Bytes per GPU, by component."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    overhead: float

    @property
    def total(self) -> float:
        return (self.weights + self.grads + self.optimizer + self.activations) * FRAGMENTATION + self.overhead


def memory_per_gpu(
    model: ModelShape, train: TrainSpec, *, gpus: int, zero_stage: int, tokens_per_micro: float
) -> Memory:
    psi = model.params_reward_model
    if train.precision == "bf16":
        w, g, o = 2.0 * psi, 2.0 * psi, 12.0 * psi
    else:
        w, g, o = 4.0 * psi, 4.0 * psi, 8.0 * psi
    if zero_stage >= 1:
        o /= gpus
    if zero_stage >= 2:
        g /= gpus
    if zero_stage >= 3:
        w /= gpus
        w += 2 * 2.0 * model.params_per_layer  # gathered layer + prefetch
    if train.offload in ("optimizer", "optimizer+params"):
        o = 0.0
    if train.offload == "optimizer+params" and zero_stage >= 3:
        w = 2 * 2.0 * model.params_per_layer
    d, kv, i = model.hidden, model.kv_heads * model.head_dim, model.intermediate
    per_token_layer = 16 * d + 4 * kv + 8 * i
    if train.activation_checkpointing:
        act = tokens_per_micro * (2 * d * model.layers + per_token_layer)
    else:
        act = tokens_per_micro * per_token_layer * model.layers
    return Memory(weights=w, grads=g, optimizer=o, activations=act, overhead=OVERHEAD_BYTES)


@functools.lru_cache(maxsize=64)
def gpu_counts_for(per: int, max_nodes: int) -> tuple[int, ...]:
    within = [g for g in (1, 2, 4, 8, 16) if g < per] + [per]
    return tuple(within + [per * n for n in range(2, max_nodes + 1)])


def gpu_counts(cluster: ClusterSpec) -> tuple[int, ...]:
    """GPU counts a cell may take: 1, 2, 4 … within a node, then whole nodes."""
    return gpu_counts_for(cluster.gpus_per_node, cluster.max_nodes)


def device_of(cluster: ClusterSpec) -> GPUType:
    if cluster.gpu_type == "cpu":
        mem = (cluster.mem_gb_per_task or 8.0) * 1e9
        return GPUType("cpu", mem, cluster.cpu_gflops * 1e9)
    return GPUS[cluster.gpu_type]


def per_rank_pairs(train: TrainSpec, gpus: int) -> int:
    return math.ceil(train.global_batch_pairs / gpus)


def fit_micro(model: ModelShape, spec: SweepSpec, gpus: int) -> tuple[int, Memory] | None:
    """(micro-batch pairs, memory per GPU) on `gpus` GPUs, or None when nothing fits.

    `train.micro_batch_pairs: auto` → the largest power of two ≤ the per-rank share of the global
    batch that fits; a number → that number (capped at the share, as the trainer caps it) if it fits."""
    train = spec.train
    dev_mem = device_of(spec.cluster).memory_bytes * USABLE_FRACTION
    tpp = float(spec.data.tokens_per_pair or 0)
    share = per_rank_pairs(train, gpus)

    def mem(m: int) -> Memory:
        return memory_per_gpu(model, train, gpus=gpus, zero_stage=train.zero_stage, tokens_per_micro=m * tpp)

    if isinstance(train.micro_batch_pairs, int):
        m = min(train.micro_batch_pairs, share)
        mm = mem(m)
        return (m, mm) if mm.total <= dev_mem else None
    best = None
    m = 1
    while m <= share:
        mm = mem(m)
        if mm.total > dev_mem:
            break
        best = (m, mm)
        m *= 2
    return best


def min_gpus(model: ModelShape, spec: SweepSpec, *, path: str = "") -> tuple[int, Memory]:
    """The smallest GPU count (and its memory) that holds `model` — independent of the data size."""
    train, cluster = spec.train, spec.cluster
    dev = device_of(cluster)
    zero = train.zero_stage
    cands = gpu_counts(cluster)
    # memory per GPU never grows with G, so the smallest G that fits is found by bisection
    lo, hi = 0, len(cands)
    while lo < hi:
        mid = (lo + hi) // 2
        if fit_micro(model, spec, cands[mid]) is not None:
            hi = mid
        else:
            lo = mid + 1
    found = fit_micro(model, spec, cands[lo]) if lo < len(cands) else None
    if found is None:
        g = cands[-1]
        m = train.micro_batch_pairs if isinstance(train.micro_batch_pairs, int) else 1
        mem = memory_per_gpu(
            model,
            train,
            gpus=g,
            zero_stage=zero,
            tokens_per_micro=min(m, per_rank_pairs(train, g)) * float(spec.data.tokens_per_pair or 0),
        )
        raise PlanError(
            f"{model.name} at ZeRO-{zero} needs {mem.total / GIB:.1f} GiB per {dev.name} even on "
            f"{g} GPUs ({cluster.max_nodes} nodes × {cluster.gpus_per_node}) with {m}-pair micro-batches; raise "
            f"cluster.max_nodes, train.zero_stage, enable train.offload/activation_checkpointing, "
            f"or lower train.micro_batch_pairs",
            path=path or "models",
        )
    return cands[lo], found[1]
