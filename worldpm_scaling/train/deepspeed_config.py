"""DeepSpeed configs from a RunSpec: one pure function, and an offline check for N GPUs.

The config is what `deepspeed.initialize` receives on every rank of a cell. Batch arithmetic follows
the trainer: each of `world` ranks runs `accum` micro-batches of `micro_batch_pairs` per optimizer
step, so train_batch_size = micro × accum × world (≥ train.global_batch_pairs). Losses are already
scaled by the trainer, gradient clipping is DeepSpeed's (its grad norm is taken before clipping,
as train/grad_norm must be). The optimizer is the trainer's torch Adam(W) (a "client optimizer"),
so no `optimizer`/`scheduler` block: the LR schedule is a pure function of the step.

`validate(config, world_size)` runs DeepSpeed's own parser (`DeepSpeedConfig`) with the world size
mocked — no GPUs, no process group — and rejects top-level keys DeepSpeed would silently ignore.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any

from ..config import RunSpec

# Top-level keys this module writes; DeepSpeed ignores unknown ones silently, so we check ourselves.
KNOWN_KEYS = frozenset(
    {
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "bf16",
        "fp16",
        "zero_optimization",
        "zero_allow_untested_optimizer",
        "zero_force_ds_cpu_optimizer",
        "steps_per_print",
        "wall_clock_breakdown",
        "prescale_gradients",
        "communication_data_type",
        "seed",
    }
)

OFFLOADS = ("none", "optimizer", "optimizer+params")


class DeepSpeedConfigError(ValueError):
    """A generated (or user) DeepSpeed config that DeepSpeed would reject or misread; names the key."""


def batch_layout(run: RunSpec, world: int) -> tuple[int, int]:
    """(micro pairs per rank, micro-steps per optimizer step) for `world` ranks."""
    t = run.train
    per_rank = math.ceil(t.global_batch_pairs / world)
    micro = min(run.micro_batch_pairs, per_rank)  # the planner's choice (Resources) under `auto`
    return micro, max(1, math.ceil(per_rank / micro))


def deepspeed_config(
    run: RunSpec,
    *,
    world_size: int | None = None,
    zero_stage: int | None = None,
    offload: str | None = None,
    bf16: bool | None = None,
) -> dict[str, Any]:
    """The DeepSpeed config for `run` on `world_size` ranks (default: the planned GPU count).

    `zero_stage`/`offload` override the run's (train.zero_stage, train.offload); `bf16` defaults to
    train.precision == "bf16" on a GPU cluster (CPU/gloo runs fp32).
    """
    t = run.train
    world = world_size or run.resources.gpus
    stage = run.resources.zero_stage if zero_stage is None else zero_stage
    off = t.offload if offload is None else offload
    if stage not in (0, 1, 2, 3):
        raise DeepSpeedConfigError(f"train.zero_stage must be 0–3, got {stage}")
    if off not in OFFLOADS:
        raise DeepSpeedConfigError(f"train.offload must be one of {OFFLOADS}, got {off!r}")
    if off != "none" and stage == 0:
        raise DeepSpeedConfigError("train.offload needs ZeRO stage ≥ 1 (train.zero_stage)")
    if off == "optimizer+params" and stage != 3:
        raise DeepSpeedConfigError("train.offload 'optimizer+params' needs ZeRO stage 3 (train.zero_stage)")
    if bf16 is None:
        bf16 = t.precision == "bf16" and run.resources.gpu_type != "cpu"
    micro, accum = batch_layout(run, world)
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 1:
        zero.update(
            {
                "contiguous_gradients": True,
                "overlap_comm": stage >= 2,
                "reduce_bucket_size": 50_000_000,
                "allgather_bucket_size": 50_000_000,
            }
        )
    if stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": 50_000_000,
                "stage3_param_persistence_threshold": 100_000,
                "stage3_max_live_parameters": 1_000_000_000,
                "stage3_max_reuse_distance": 1_000_000_000,
                "stage3_gather_16bit_weights_on_model_save": False,
            }
        )
    if off in ("optimizer", "optimizer+params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if off == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    cfg: dict[str, Any] = {
        "train_batch_size": micro * accum * world,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": float(t.grad_clip) if t.grad_clip else 0.0,
        "bf16": {"enabled": bool(bf16)},
        "zero_optimization": zero,
        # the trainer's torch Adam(W) is the optimizer; with offload DeepSpeed would swap in its own
        # CPU Adam unless told not to (docs/measurements.md)
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "seed": run.seed,
    }
    return cfg


@contextmanager
def _mock_world(world_size: int):
    """DeepSpeedConfig asks deepspeed.comm for rank and world size; answer without a process group."""
    from deepspeed.runtime import config as ds_config

    dist = ds_config.dist
    saved = dist.get_world_size, dist.get_rank
    dist.get_world_size = lambda *a, **k: world_size
    dist.get_rank = lambda *a, **k: 0
    try:
        yield
    finally:
        dist.get_world_size, dist.get_rank = saved


def validate(cfg: dict[str, Any], world_size: int) -> None:
    """DeepSpeed's own parser on `cfg` for `world_size` ranks, offline; raises DeepSpeedConfigError."""
    unknown = sorted(set(cfg) - KNOWN_KEYS)
    if unknown:
        raise DeepSpeedConfigError(f"unknown top-level DeepSpeed key(s) {unknown} (DeepSpeed would ignore them)")
    from deepspeed.runtime.config import DeepSpeedConfig

    with _mock_world(world_size):
        try:
            parsed = DeepSpeedConfig(dict(cfg))
        except Exception as e:  # noqa: BLE001 — DeepSpeed raises assertion/pydantic/value errors
            raise DeepSpeedConfigError(f"DeepSpeed rejects the config for {world_size} ranks: {e}") from None
    if parsed.world_size != world_size:
        raise DeepSpeedConfigError(f"DeepSpeed saw world size {parsed.world_size}, not {world_size}")
    if (
        parsed.train_batch_size != cfg["train_batch_size"]
        or parsed.train_micro_batch_size_per_gpu * parsed.gradient_accumulation_steps * world_size
        != cfg["train_batch_size"]
    ):
        raise DeepSpeedConfigError("train_batch_size ≠ micro × accum × world")
    if parsed.zero_optimization_stage != cfg["zero_optimization"]["stage"]:
        raise DeepSpeedConfigError("zero_optimization.stage was not read back")


def golden(sweep_file: str = "sweeps/worldpm.yaml", model: str = "qwen2.5-72b") -> dict:
    """Every stage/offload variant for one cell of a sweep (what tests/golden pins)."""
    from ..config import load_sweep
    from ..plan import plan

    run = next(r for r in plan(load_sweep(sweep_file)).runs if r.model.name == model)
    variants = [
        (0, "none"),
        (1, "none"),
        (1, "optimizer"),
        (2, "none"),
        (2, "optimizer"),
        (3, "none"),
        (3, "optimizer"),
        (3, "optimizer+params"),
    ]
    cfgs = {
        f"zero{s}" + ("" if o == "none" else f"_offload_{o}"): deepspeed_config(run, zero_stage=s, offload=o)
        for s, o in variants
    }
    return {
        "cell": {"model": run.model.name, "gpus": run.resources.gpus, "grad_accum": run.resources.grad_accum},
        "configs": cfgs,
    }


if __name__ == "__main__":  # python -m worldpm_scaling.train.deepspeed_config --golden  (from the repo root)
    import json
    import sys
    from pathlib import Path

    if sys.argv[1:] == ["--golden"]:
        out = Path("tests/golden/deepspeed_qwen2.5-72b.json")
        g = golden()
        for cfg in g["configs"].values():
            validate(cfg, g["cell"]["gpus"])
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(g, indent=2, sort_keys=True) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
