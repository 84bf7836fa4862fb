"""The cost of one cell: FLOPs, communication, evaluation, checkpoints, hours and its SLURM resources.

Training FLOPs C = 6·N·D, N non-embedding parameters, D tokens (Kaplan et al. 2020); optionally the
attention term 12·L·d·T per token (PaLM, Chowdhery et al. 2022, app. B). Communication, evaluation and
checkpoint costs as the package docstring (worldpm_scaling/plan/__init__.py) states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import ClusterSpec, Resources, SweepSpec, TrainSpec
from ..models import ModelShape
from .memory import HASH_BYTES_PER_S, Memory, PlanError, device_of, fit_micro, gpu_counts, min_gpus, per_rank_pairs


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


def training_flops(model: ModelShape, tokens: float, *, ctx_len: int, attention: bool = False) -> float:
    """6·N·D, plus 12·L·d·T per token when `attention`."""
    f = 6.0 * model.params_non_embedding * tokens
    if attention:
        f += attention_flops(model, tokens, ctx_len=ctx_len)
    return f


def attention_flops(model: ModelShape, tokens: float, *, ctx_len: int) -> float:
    return 12.0 * model.layers * model.hidden * ctx_len * tokens


def elem_bytes(train: TrainSpec) -> float:
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
    msg = elem_bytes(train) * model.params_reward_model * (gpus - 1) / gpus
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
    dev, cluster, train = device_of(spec.cluster), spec.cluster, spec.train
    tpp = float(spec.data.tokens_per_pair or 0)
    per_set = spec.eval.max_pairs_per_set or spec.eval.plan_pairs_per_set
    n_sets = len(spec.eval.sets)
    flops = 2.0 * model.params_non_embedding * n_milestones * n_sets * per_set * tpp
    seconds = flops / (gpus * dev.peak_flops * cluster.mfu)
    if train.zero_stage >= 3 and gpus > 1:
        batches = n_milestones * n_sets * math.ceil(math.ceil(per_set / gpus) / micro)
        gather = elem_bytes(train) * model.params_reward_model * (gpus - 1) / gpus
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
    dev = device_of(cluster)
    zero = train.zero_stage
    cands = gpu_counts(cluster)
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
            fitted = fit_micro(model, spec, g)
            if fitted is None:  # unreachable: memory per GPU never grows with G, and g ≥ min_gpus' count
                raise PlanError(f"{model.name} fits no micro-batch on {g} GPUs", path=path or "models")
            micro, mem = fitted
            accum = max(1, math.ceil(per_rank_pairs(train, g) / micro))
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
