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
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from .config import (
    ClusterSpec,
    Resources,
    RunSpec,
    SweepSpec,
    TrainSpec,
    canonical_json,
    cell_id_from_fragments,
    cell_id_of,
    model_identity,
    to_plain,
)
from .models import ModelShape, base_folder

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


@dataclass(frozen=True, kw_only=True)
class CellCost:
    pairs: int
    tokens: float
    flops: float
    """Training + evaluation FLOPs."""
    flops_attention: float
    """The attention term alone (included in `flops` only when asked)."""
    memory: Memory
    gpus: int
    nodes: int
    hours: float
    """Predicted wall-clock at the profile's MFU."""
    gpu_hours: float
    time_limit_minutes: int
    segments: int
    """SLURM allocations the cell needs at the partition's time limit (≥ 2 means requeues)."""
    micro_batch_pairs: int = 0
    """Pairs per rank per micro-step (the planner's choice under `auto`)."""
    compute_hours: float = 0.0
    """Training FLOPs ÷ (GPUs × peak × MFU)."""
    comm_hours: float = 0.0
    """ZeRO's collectives over the whole run (bytes per GPU ÷ bandwidth)."""
    eval_hours: float = 0.0
    """Milestone evaluations (sharded over the ranks), compute and parameter gathers."""
    comm_bytes_per_step: float = 0.0
    """Bytes each GPU moves per optimizer step."""
    step_seconds: float = 0.0
    """One optimizer step: accumulation × micro-step compute + communication."""
    checkpoint_seconds: float = 0.0
    """Save + verify one checkpoint."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    sweep: SweepSpec
    runs: tuple[RunSpec, ...]
    costs: tuple[CellCost, ...]
    grid_gpu_hours: float
    """What independent runs for every (model, milestone) would cost (grid mode)."""
    warnings: tuple[str, ...] = ()
    """Things that will not stop a launch but will hurt (e.g. a signal delay too short to save)."""

    @property
    def total_gpu_hours(self) -> float:
        return sum(c.gpu_hours for c in self.costs)

    @property
    def total_flops(self) -> float:
        return sum(c.flops for c in self.costs)

    @property
    def milestone_saving(self) -> float:
        """Grid-mode GPU-hours ÷ this plan's (1.0 when the sweep is already grid mode)."""
        return self.grid_gpu_hours / self.total_gpu_hours if self.total_gpu_hours else 1.0

    def rows(self) -> list[dict]:
        """One flat dict per cell: what `wps plan --format json|csv` prints."""
        out = []
        for r, c in zip(self.runs, self.costs):
            out.append(
                {
                    "index": r.index,
                    "cell_id": r.cell_id,
                    "model": r.model.name,
                    "params_non_embedding": r.model.params_non_embedding,
                    "params_total": r.model.params_total,
                    "seed": r.seed,
                    "pairs": c.pairs,
                    "milestones": len(r.milestones),
                    "tokens": int(c.tokens),
                    "flops": c.flops,
                    "zero_stage": r.resources.zero_stage,
                    "mem_gib_per_gpu": round(c.memory.total / GIB, 2),
                    "gpu_type": r.resources.gpu_type,
                    "gpus": c.gpus,
                    "nodes": c.nodes,
                    "micro_batch_pairs": c.micro_batch_pairs,
                    "grad_accum": r.resources.grad_accum,
                    "init": r.model.init,
                    "checkpoint": r.model.path,
                    "compute_hours": round(c.compute_hours, 4),
                    "comm_hours": round(c.comm_hours, 4),
                    "eval_hours": round(c.eval_hours, 4),
                    "hours": round(c.hours, 4),
                    "gpu_hours": round(c.gpu_hours, 4),
                    "step_seconds": round(c.step_seconds, 2),
                    "checkpoint_seconds": round(c.checkpoint_seconds, 2),
                    "time_limit_minutes": c.time_limit_minutes,
                    "segments": c.segments,
                }
            )
        return out

    def totals(self) -> dict:
        return {
            "cells": len(self.runs),
            "flops": self.total_flops,
            "gpu_hours": round(self.total_gpu_hours, 3),
            "grid_mode_gpu_hours": round(self.grid_gpu_hours, 3),
            "milestone_saving": round(self.milestone_saving, 3),
        }


# ---------------------------------------------------------------------------------------------
# cost pieces (pure)


def training_flops(model: ModelShape, tokens: float, *, ctx_len: int, attention: bool = False) -> float:
    """6·N·D, plus 12·L·d·T per token when `attention`."""
    f = 6.0 * model.params_non_embedding * tokens
    if attention:
        f += attention_flops(model, tokens, ctx_len=ctx_len)
    return f


def attention_flops(model: ModelShape, tokens: float, *, ctx_len: int) -> float:
    return 12.0 * model.layers * model.hidden * ctx_len * tokens


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
def _candidates_for(per: int, max_nodes: int) -> tuple[int, ...]:
    within = [g for g in (1, 2, 4, 8, 16) if g < per] + [per]
    return tuple(within + [per * n for n in range(2, max_nodes + 1)])


def _candidates(cluster: ClusterSpec) -> tuple[int, ...]:
    """GPU counts a cell may take: 1, 2, 4 … within a node, then whole nodes."""
    return _candidates_for(cluster.gpus_per_node, cluster.max_nodes)


def _device(cluster: ClusterSpec) -> GPUType:
    if cluster.gpu_type == "cpu":
        mem = (cluster.mem_gb_per_task or 8.0) * 1e9
        return GPUType("cpu", mem, cluster.cpu_gflops * 1e9)
    return GPUS[cluster.gpu_type]


def _per_rank(train: TrainSpec, gpus: int) -> int:
    return math.ceil(train.global_batch_pairs / gpus)


def fit_micro(model: ModelShape, spec: SweepSpec, gpus: int) -> tuple[int, Memory] | None:
    """(micro-batch pairs, memory per GPU) on `gpus` GPUs, or None when nothing fits.

    `train.micro_batch_pairs: auto` → the largest power of two ≤ the per-rank share of the global
    batch that fits; a number → that number (capped at the share, as the trainer caps it) if it fits."""
    train = spec.train
    dev_mem = _device(spec.cluster).memory_bytes * USABLE_FRACTION
    tpp = float(spec.data.tokens_per_pair or 0)
    share = _per_rank(train, gpus)

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
    dev = _device(cluster)
    zero = train.zero_stage
    cands = _candidates(cluster)
    # memory per GPU never grows with G, so the smallest G that fits is found by bisection
    lo, hi = 0, len(cands)
    while lo < hi:
        mid = (lo + hi) // 2
        if fit_micro(model, spec, cands[mid]) is not None:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(cands):
        g = cands[-1]
        m = train.micro_batch_pairs if isinstance(train.micro_batch_pairs, int) else 1
        mem = memory_per_gpu(
            model,
            train,
            gpus=g,
            zero_stage=zero,
            tokens_per_micro=min(m, _per_rank(train, g)) * float(spec.data.tokens_per_pair or 0),
        )
        raise PlanError(
            f"{model.name} at ZeRO-{zero} needs {mem.total / GIB:.1f} GiB per {dev.name} even on "
            f"{g} GPUs ({cluster.max_nodes} nodes × {cluster.gpus_per_node}) with {m}-pair micro-batches; raise "
            f"cluster.max_nodes, train.zero_stage, enable train.offload/activation_checkpointing, "
            f"or lower train.micro_batch_pairs",
            path=path or "models",
        )
    return cands[lo], fit_micro(model, spec, cands[lo])[1]  # type: ignore[index]


def _elem_bytes(train: TrainSpec) -> float:
    return 2.0 if train.precision == "bf16" else 4.0


def bandwidth_bytes_per_s(cluster: ClusterSpec, gpus: int) -> float:
    """Collective bandwidth per GPU: inter-node once a cell spans nodes, else intra-node."""
    gb = cluster.inter_node_gb_per_s if gpus > cluster.gpus_per_node else cluster.intra_node_gb_per_s
    return gb * 1e9


def comm_bytes_per_step(model: ModelShape, train: TrainSpec, *, gpus: int, zero_stage: int, accum: int) -> float:
    """Bytes each GPU moves per optimizer step (ring collectives: (G−1)/G of each message).

    ZeRO-3: parameter all-gather in forward and in backward + gradient reduce-scatter, every micro-step.
    ZeRO 0–2: one gradient all-reduce (reduce-scatter + all-gather) per optimizer step."""
    if gpus <= 1:
        return 0.0
    msg = _elem_bytes(train) * model.params_reward_model * (gpus - 1) / gpus
    return 3.0 * msg * accum if zero_stage >= 3 else 2.0 * msg


def checkpoint_bytes(model: ModelShape, train: TrainSpec) -> float:
    """Weights in the training dtype + fp32 master weights and Adam moments (the whole cell, all ranks)."""
    psi = model.params_reward_model
    return (2.0 + 12.0) * psi if train.precision == "bf16" else (4.0 + 8.0) * psi


def checkpoint_seconds(model: ModelShape, train: TrainSpec, cluster: ClusterSpec, gpus: int) -> float:
    """Save at the storage bandwidth, then read back and hash: each rank its own 1/G (in parallel)."""
    b = checkpoint_bytes(model, train)
    storage = cluster.storage_gb_per_s * 1e9
    return b / storage + max(b / storage, b / gpus / HASH_BYTES_PER_S)


def eval_cost(model: ModelShape, spec: SweepSpec, *, gpus: int, micro: int, n_milestones: int) -> tuple[float, float]:
    """(FLOPs, seconds) of all milestone evaluations: each rank scores 1/G of every set."""
    dev, cluster, train = _device(spec.cluster), spec.cluster, spec.train
    tpp = float(spec.data.tokens_per_pair or 0)
    per_set = spec.eval.max_pairs_per_set or spec.eval.plan_pairs_per_set
    n_sets = len(spec.eval.sets)
    flops = 2.0 * model.params_non_embedding * n_milestones * n_sets * per_set * tpp
    seconds = flops / (gpus * dev.peak_flops * cluster.mfu)
    if train.zero_stage >= 3 and gpus > 1:
        batches = n_milestones * n_sets * math.ceil(math.ceil(per_set / gpus) / micro)
        gather = _elem_bytes(train) * model.params_reward_model * (gpus - 1) / gpus
        seconds += batches * gather / bandwidth_bytes_per_s(cluster, gpus)
    return flops, seconds


def cost_cell(
    model: ModelShape,
    pairs: int,
    n_milestones: int,
    spec: SweepSpec,
    *,
    attention: bool = False,
    path: str = "",
    fit: tuple[int, Memory] | None = None,
    memo: dict | None = None,
) -> tuple[CellCost, Resources]:
    """Cost and resources of one run of `model` over `pairs` pairs evaluated `n_milestones` times.

    `fit` is `min_gpus(model, spec)`, passed in when the caller has it already; `memo` keeps what does
    not depend on the data size (micro-batch, memory, evaluation, per GPU count) across the cells of
    one plan.
    """
    memo = {} if memo is None else memo
    train, cluster = spec.train, spec.cluster
    tpp = float(spec.data.tokens_per_pair or 0)
    tokens = pairs * tpp * train.epochs
    flops_attn = attention_flops(model, tokens, ctx_len=train.ctx_len)
    train_flops = training_flops(model, tokens, ctx_len=train.ctx_len, attention=attention)
    dev = _device(cluster)
    zero = train.zero_stage
    cands = _candidates(cluster)
    floor = (fit or min_gpus(model, spec, path=path))[0]
    if cluster.min_gpus_per_cell is not None and floor < cluster.min_gpus_per_cell:
        if cluster.min_gpus_per_cell > cands[-1]:
            raise PlanError(
                f"min_gpus_per_cell {cluster.min_gpus_per_cell} exceeds the {cands[-1]} GPUs a cell can "
                f"have ({cluster.max_nodes} nodes × {cluster.gpus_per_node})",
                path="cluster.min_gpus_per_cell",
            )
        floor = next(g for g in cands if g >= cluster.min_gpus_per_cell)
    steps = max(1, math.ceil(pairs * train.epochs / train.global_batch_pairs))

    def on(g: int) -> dict:
        key = (model.name, g)
        if key not in memo:
            micro, mem = fit_micro(model, spec, g)  # type: ignore[misc]
            accum = max(1, math.ceil(_per_rank(train, g) / micro))
            comm_step = comm_bytes_per_step(model, train, gpus=g, zero_stage=zero, accum=accum)
            ef, es = eval_cost(model, spec, gpus=g, micro=micro, n_milestones=1)
            memo[key] = {
                "gpus": g,
                "micro": micro,
                "mem": mem,
                "accum": accum,
                "comm_step": comm_step,
                "bw": bandwidth_bytes_per_s(cluster, g),
                "eval_flops_1": ef,
                "eval_s_1": es,
                "rate": g * dev.peak_flops * cluster.mfu,
                "ckpt_s": checkpoint_seconds(model, train, cluster, g),
            }
        c = dict(memo[key])
        c["eval_flops"], c["eval_s"] = c["eval_flops_1"] * n_milestones, c["eval_s_1"] * n_milestones
        c["compute_s"] = train_flops / c["rate"]
        c["comm_s"] = steps * c["comm_step"] / c["bw"]
        c["hours"] = (c["compute_s"] + c["comm_s"] + c["eval_s"]) / 3600.0
        return c

    best = on(floor)
    if cluster.target_hours is not None and best["hours"] > cluster.target_hours:
        # the first count above the floor that meets the target, else the fastest one
        tried = [best] + [on(g) for g in cands if g > floor]
        best = next((c for c in tried if c["hours"] <= cluster.target_hours), min(tried, key=lambda c: c["hours"]))
    gpus, micro, accum, hours = best["gpus"], best["micro"], best["accum"], best["hours"]
    step_s = (best["compute_s"] + best["comm_s"]) / steps
    ckpt_s = best["ckpt_s"]
    per_node = min(gpus, cluster.gpus_per_node)
    nodes = math.ceil(gpus / per_node)
    wall_minutes = hours * 60.0 * cluster.time_margin + 10.0  # start-up, checkpoint, eval slack
    limit = int(min(math.ceil(wall_minutes), cluster.max_time_hours * 60))
    segments = max(1, math.ceil(wall_minutes / (cluster.max_time_hours * 60)))
    res = Resources(
        gpu_type=cluster.gpu_type,
        nodes=nodes,
        gpus_per_node=per_node,
        cpus_per_task=cluster.cpus_per_task,
        mem_gb_per_task=cluster.mem_gb_per_task,
        time_limit_minutes=limit,
        zero_stage=zero,
        grad_accum=accum,
        micro_batch_pairs=micro,
        step_seconds=round(step_s, 3),
        checkpoint_seconds=round(ckpt_s, 3),
        network_interface=cluster.network_interface,
    )
    cost = CellCost(
        pairs=pairs,
        tokens=tokens,
        flops=train_flops + best["eval_flops"],
        flops_attention=flops_attn,
        memory=best["mem"],
        gpus=gpus,
        nodes=nodes,
        hours=hours,
        gpu_hours=hours * gpus,
        time_limit_minutes=limit,
        segments=segments,
        micro_batch_pairs=micro,
        compute_hours=best["compute_s"] / 3600.0,
        comm_hours=best["comm_s"] / 3600.0,
        eval_hours=best["eval_s"] / 3600.0,
        comm_bytes_per_step=best["comm_step"],
        step_seconds=step_s,
        checkpoint_seconds=ckpt_s,
    )
    return cost, res


def train_of(spec: SweepSpec, model: ModelShape) -> TrainSpec:
    """The cell's hyper-parameters: the sweep's, with `lr_width_ref` resolved into the LR itself (so the
    trainer, the DeepSpeed config and the params in MLflow all carry the LR that really ran)."""
    t = spec.train
    if t.lr_width_ref is None:
        return t
    return replace(t, lr=t.lr * (t.lr_width_ref / model.hidden) ** t.lr_width_power, lr_width_ref=None)


def resolve_init(model: ModelShape, spec: SweepSpec, *, path: str = "") -> ModelShape:
    """The shape a cell trains: `init` decided and, for a pretrained base, its folder under the
    cluster's models directory (`path` stays None when no directory is set; launch refuses then).

    Random init only where asked (`init: random`) or where no released base exists (tiny shapes)."""
    init = model.init or spec.init
    if model.path and model.base is None:  # {name, path}: a local checkpoint named by the sweep
        if init == "random":
            return replace(model, init="random", path=None)
        return replace(model, init="pretrained")
    if init == "random" or (init is None and model.base is None):
        return replace(model, init="random", base=None, path=None)
    if model.base is None:
        raise PlanError(
            f"{model.name} has no released base checkpoint to start from; give "
            f"{{name, path}} of a local checkpoint or init: random",
            path=f"{path}.init" if path else "init",
        )
    folder = base_folder(model, spec.cluster.models_dir)
    return replace(model, init="pretrained", path=str(folder) if folder else None)


def signal_warnings(spec: SweepSpec, runs: tuple[RunSpec, ...]) -> list[str]:
    """Cells whose planned step + checkpoint save/verify cannot finish between SLURM's USR2 and the
    time limit (cluster.signal_delay_s)."""
    if spec.cluster.executor != "slurm":
        return []
    out, seen = [], set()
    delay = spec.cluster.signal_delay_s
    for r in runs:
        need = (r.resources.step_seconds or 0.0) + (r.resources.checkpoint_seconds or 0.0)
        if need > delay and r.model.name not in seen:
            seen.add(r.model.name)
            out.append(
                f"{r.model.name}: cluster.signal_delay_s is {delay} s, but finishing a step "
                f"({r.resources.step_seconds:.0f} s) and saving + verifying a checkpoint "
                f"({r.resources.checkpoint_seconds:.0f} s) takes {need:.0f} s: the requeue would "
                f"lose up to a step; raise signal_delay_s to ≥ {math.ceil(need * 1.2)}"
            )
    return out


def plan(spec: SweepSpec, *, attention: bool = False) -> Plan:
    """Expand a sweep into runs (milestone or grid mode) and price each one."""
    milestones = spec.milestone_pairs()
    runs: list[RunSpec] = []
    costs: list[CellCost] = []
    cache: dict[tuple[str, int, int], tuple[CellCost, Resources]] = {}
    fits: dict[str, tuple[int, Memory]] = {}
    memo: dict = {}
    # Cell ids hash RunSpec.identity(); the parts every cell shares are serialised once.
    shared = {
        "sweep": canonical_json(spec.name),
        "data": canonical_json(to_plain(spec.data)),
        "train": canonical_json(to_plain(spec.train)),
        "eval": canonical_json(to_plain(spec.eval)),
    }

    def priced(mi: int, model: ModelShape, pairs: int, ms: tuple[int, ...]) -> tuple[CellCost, Resources]:
        key = (model.name, pairs, len(ms))
        if key not in cache:
            if model.name not in fits:
                fits[model.name] = min_gpus(model, spec, path=f"models[{mi}]")
            cache[key] = cost_cell(model, pairs, len(ms), spec, attention=attention, fit=fits[model.name], memo=memo)
        return cache[key]

    for mi, model in enumerate(spec.models):
        model = resolve_init(model, spec, path=f"models[{mi}]")
        model_json = canonical_json(model_identity(model))
        train = train_of(spec, model)
        cells = (
            [(milestones[-1], milestones)]
            if spec.mode == "milestones"
            else [(p, milestones[: i + 1]) for i, p in enumerate(milestones)]
        )
        for pairs, ms in cells:
            cost, res = priced(mi, model, pairs, ms)
            ms_json = canonical_json(list(ms))
            for seed in spec.seeds:
                cid = cell_id_from_fragments(
                    {**shared, "model": model_json, "pairs": str(pairs), "milestones": ms_json, "seed": str(seed)}
                )
                runs.append(
                    RunSpec(
                        sweep=spec.name,
                        cell_id=cid,
                        index=len(runs),
                        model=model,
                        data=spec.data,
                        pairs=pairs,
                        milestones=ms,
                        train=train,
                        eval=spec.eval,
                        seed=seed,
                        tracking=spec.tracking,
                        resources=res,
                        out_dir=f"{spec.output_dir}/cells/{cid}",
                    )
                )
                costs.append(cost)
    if spec.mode == "grid":
        grid = sum(c.gpu_hours for c in costs)
    else:
        grid = 0.0
        for mi, model in enumerate(spec.models):
            for i, p in enumerate(milestones):
                grid += priced(mi, model, p, milestones[: i + 1])[0].gpu_hours * len(spec.seeds)
    return Plan(
        sweep=spec,
        runs=tuple(runs),
        costs=tuple(costs),
        grid_gpu_hours=grid,
        warnings=tuple(signal_warnings(spec, tuple(runs))),
    )


def select(p: Plan, cell: str) -> RunSpec:
    """A run by index (`3`) or cell id (or a unique prefix of at least 4 characters of one).

    Short digit strings are always indexes: `7` on a 3-cell sweep is an error, not the cell whose id
    happens to start with 7."""
    if cell.isdigit() and int(cell) < len(p.runs) and not any(r.cell_id == cell for r in p.runs):
        return p.runs[int(cell)]
    if cell.isdigit() and len(cell) < 4:
        raise PlanError(
            f"cell index {cell} is out of range: sweep {p.sweep.name!r} has {len(p.runs)} cells "
            f"(0–{len(p.runs) - 1}; `wps plan` lists them)",
            path="--cell",
        )
    hits = [r for r in p.runs if len(cell) >= 4 and r.cell_id.startswith(cell)]
    if len(hits) == 1:
        return hits[0]
    valid = ", ".join(f"{r.index}={r.cell_id}" for r in p.runs[:20])
    raise PlanError(
        f"{'ambiguous' if hits else 'no'} cell {cell!r} in sweep {p.sweep.name!r} "
        f"(cells: {valid}{' …' if len(p.runs) > 20 else ''})",
        path="--cell",
    )


def with_changes(run: RunSpec, **changes) -> RunSpec:
    """A copy of `run` with fields replaced and its cell id recomputed."""
    r = replace(run, **changes)
    return replace(r, cell_id=cell_id_of(r.identity()))
