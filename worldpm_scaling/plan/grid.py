"""The planner: SweepSpec → one priced RunSpec per cell (milestone or grid mode), and picking a cell."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import (
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
from ..models import ModelShape, base_folder
from .cost import CellCost, cost_cell
from .memory import GIB, Memory, PlanError, min_gpus


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
