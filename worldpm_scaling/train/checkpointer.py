"""The checkpoint protocol across ranks: what every rank does to save the training state with the
engine's, and to restore it, so that all ranks save and load the same step or all fail with one error.

Plain torch: rank 0 writes one verified file (checkpoint.save). DeepSpeed: a collective sharded save
into a temporary folder; rank 0 lists the shards once (a listing is one host's view of a shared
filesystem) and every rank hashes its share of that list in parallel; rank 0 seals the manifest. On
restore rank 0 picks the step (broadcast: a listing may be stale on another host); every rank loads
that step, or all raise the same CheckpointCorruptError — no rank is left waiting in a collective.
The files themselves (atomic writes, hashes, rotation) are checkpoint.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from .. import faults
from . import checkpoint as ckpt
from . import distributed as dist
from .engine import DeepSpeedEngine, TorchEngine

Engine = Union[TorchEngine, DeepSpeedEngine]


def step_path(ckpt_dir: Path, step: int, engine: Engine) -> Path:
    """Where the checkpoint of `step` lands (what ranks other than the writer record as written)."""
    return ckpt_dir / f"step_{step:08d}.{'ds' if isinstance(engine, DeepSpeedEngine) else 'pt'}"


def save(engine: Engine, state: dict[str, Any], ckpt_dir: Path, step: int, *, rank: int, world: int, keep: int) -> Path:
    """Save `state` (the TrainState's dict) with the engine's at `step`; collective under DeepSpeed."""
    faults.point("ckpt.before_save")
    if isinstance(engine, TorchEngine):  # rank 0 writes; every rank restarts its clock
        if rank == 0:
            return ckpt.save({**engine.state_dict(), **state}, ckpt_dir, step, keep=keep)
        return step_path(ckpt_dir, step, engine)
    tmp = ckpt.sharded_tmp(ckpt_dir, step)
    if rank == 0:
        ckpt.prepare_sharded_tmp(tmp)
    dist.barrier()
    engine.save(tmp, state)
    dist.barrier()
    # A failure anywhere is every rank's failure (one error, no rank left at a barrier).
    files = dist.broadcast_object(ckpt.list_shards(tmp) if rank == 0 else None)
    digests: dict[str, str]
    try:
        digests, err = ckpt.hash_listed(tmp, files, rank, world), ""
    except (OSError, ckpt.CheckpointCorruptError) as e:
        digests, err = {}, f"rank {rank}: {e}"
    parts: list[tuple[dict[str, str], str]] = dist.all_gather_objects((digests, err))
    errors = [e for _, e in parts if e]
    if errors:
        raise ckpt.CheckpointCorruptError(f"sharded save of step {step}: " + "; ".join(errors))
    merged = {k: v for part, _ in parts for k, v in part.items()}
    err = ""
    path = step_path(ckpt_dir, step, engine)
    if rank == 0:
        try:
            path = ckpt.seal_sharded(ckpt_dir, step, keep=keep, digests=merged)
        except ckpt.CheckpointCorruptError as e:
            err = str(e)
    err = dist.broadcast_object(err)
    if err:
        raise ckpt.CheckpointCorruptError(err)
    return path


def restore(
    engine: Engine, ckpt_dir: Path, *, rank: int, world: int, cell_id: str
) -> tuple[Path, dict[str, Any]] | None:
    """Load the checkpoint rank 0 picks into `engine`; returns its path and the saved training state
    (None: no checkpoint, a fresh start). Raises CheckpointCorruptError on every rank alike."""
    chosen = ckpt.latest(ckpt_dir) if rank == 0 else None
    chosen_name: str | None = dist.broadcast_object(str(chosen) if chosen is not None else None)
    if chosen_name is None:
        return None
    path = Path(chosen_name)
    sharded = path.is_dir()
    if sharded != isinstance(engine, DeepSpeedEngine):
        raise ckpt.CheckpointCorruptError(
            f"{path}: written by a {'DeepSpeed' if sharded else 'plain torch'} run, but this run uses "
            f"{engine.kind} (train.zero_stage / world size changed?)"
        )
    st: dict[str, Any]
    if isinstance(engine, DeepSpeedEngine):
        err = ""
        try:  # every rank verifies its share of the files, in parallel
            ckpt.verify_sharded(path, rank=rank, world=world)
        except ckpt.CheckpointCorruptError as e:
            err = str(e)
        errors = [e for e in dist.all_gather_objects(err) if e]
        if errors:
            raise ckpt.CheckpointCorruptError("; ".join(errors))
        st = engine.load(path)
    else:
        st, err = {}, ""
        try:
            faults.point("ckpt.load")
            st = ckpt.load(path)
        except (ckpt.CheckpointCorruptError, OSError) as e:  # loud, not a silent step back: the user decides
            older = [p for p in ckpt.list_checkpoints(ckpt_dir) if ckpt.step_of(p) < ckpt.step_of(path)]
            hint = f"; delete it to resume from {older[-1].name}" if older else "; delete it to start over"
            err = f"{e}{hint}"
        errors = [f"rank {r}: {e}" if world > 1 else e for r, e in enumerate(dist.all_gather_objects(err)) if e]
        if errors:  # every rank raises the same error: none is left waiting in a collective
            raise ckpt.CheckpointCorruptError(
                f"cannot resume from {path.name} (chosen by rank 0): " + "; ".join(errors) if world > 1 else errors[0]
            )
    if st.get("cell_id") != cell_id:
        raise ckpt.CheckpointCorruptError(f"{path}: belongs to cell {st.get('cell_id')}, not {cell_id}")
    if isinstance(engine, TorchEngine):
        engine.load_state_dict(st)
    return path, st
