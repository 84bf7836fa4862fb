"""Distributed plumbing of the trainer: placement, the process group, rank agreement, teardown.

Order matters on a GPU node (several ranks per node, one GPU each):

1. `place()` reads RANK / WORLD_SIZE / LOCAL_RANK (torchrun and submitit's
   TorchDistributedEnvironment export them) and, on CUDA, calls `torch.cuda.set_device(LOCAL_RANK)`
   *before* anything touches CUDA or the process group — otherwise every rank's CUDA context and
   NCCL communicator land on cuda:0.
2. `init_group()` creates the default group with backend "cpu:gloo,cuda:nccl" on CUDA, so the
   loop's CPU control tensors (save/stop agreement, the logged-step broadcast, the checkpoint
   verification flag) go through gloo while device tensors (gradients, loss statistics) go through
   NCCL; gloo alone on CPU. The timeout comes from the run (`group_timeout`): a rank waiting in a
   collective while the others save and verify a checkpoint must not be killed by the watchdog.
3. `agree()`, `broadcast_int()`, `all_reduce_sum()`: the few collectives the loop makes.
4. `shutdown()`: a barrier (no rank leaves while another is still in a collective), the DeepSpeed
   engine's own teardown, then `destroy_process_group()`, so gloo/NCCL worker threads are joined
   before the interpreter exits (a process that exits with the group alive can abort with
   "terminate called without an active exception" when a joinable thread is destroyed).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

CUDA_BACKEND = "cpu:gloo,cuda:nccl"
CPU_BACKEND = "gloo"

MIN_TIMEOUT_S = 30 * 60
"""Floor of the group timeout (torch's NCCL default is 10 min; a milestone evaluation or a slow
filesystem can exceed that on its own)."""

CKPT_BYTES_PER_PARAM = 16
"""Bytes a ZeRO checkpoint holds per parameter: bf16 weights (2) + fp32 master (4) + Adam moments (8)
+ slack for the fp32/bf16 gradient-free metadata (2). Mixed-precision Adam's 16 B/param is the figure
of Rajbhandari et al. 2020 (ZeRO, §3.1)."""

NODE_WRITE_BYTES_PER_S = 0.5e9
"""Assumed per-node checkpoint bandwidth (write, then re-read to verify) of a shared filesystem;
deliberately low so the derived timeout errs long."""


class DistributedSetupError(RuntimeError):
    """The environment names an impossible placement (e.g. LOCAL_RANK beyond the visible GPUs)."""


@dataclass(frozen=True)
class Placement:
    rank: int
    world: int
    local_rank: int
    device: torch.device


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedSetupError(f"environment variable {name}={raw!r} is not an integer") from None


def place(device: str | torch.device | None = None) -> Placement:
    """This process's rank, world and device; binds the CUDA device first (step 1 above).

    `device`: None = this rank's GPU when CUDA is available, else the CPU; "cuda" without an index
    means this rank's GPU (cuda:LOCAL_RANK), never cuda:0 for everyone."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank if world > 1 else 0)
    if device is None:
        dev = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local)
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if dev.index >= n:
            raise DistributedSetupError(
                f"LOCAL_RANK={local} needs cuda:{dev.index}, but only {n} GPU(s) are "
                "visible (CUDA_VISIBLE_DEVICES / gpus_per_node)"
            )
        torch.cuda.set_device(dev)
    return Placement(rank=rank, world=world, local_rank=local, device=dev)


def backend_for(device: torch.device) -> str:
    return CUDA_BACKEND if device.type == "cuda" else CPU_BACKEND


def group_timeout(run) -> _dt.timedelta:
    """How long a collective may wait: long enough for the cell's checkpoint save + verification.

    MIN_TIMEOUT_S plus three times the planner's `run.resources.checkpoint_seconds` (its save +
    verify estimate for this cell) when the plan has it; otherwise the same from the model size:
    the checkpoint's bytes per node (CKPT_BYTES_PER_PARAM × parameters / nodes), written and read
    back once at NODE_WRITE_BYTES_PER_S."""
    res = getattr(run, "resources", None)
    planned = getattr(res, "checkpoint_seconds", None)
    if planned is None:
        params = run.model.params_reward_model
        nodes = max(1, int(getattr(res, "nodes", 1) or 1))
        planned = 2 * CKPT_BYTES_PER_PARAM * params / nodes / NODE_WRITE_BYTES_PER_S
    return _dt.timedelta(seconds=round(MIN_TIMEOUT_S + 3 * float(planned)))


def init_group(p: Placement, timeout: _dt.timedelta) -> bool:
    """Create the default process group for `p` (step 2 above); True if this call created it."""
    if p.world <= 1 or dist.is_initialized():
        return False
    dist.init_process_group(
        backend=backend_for(p.device),
        rank=p.rank,
        world_size=p.world,
        timeout=timeout,
        device_id=p.device if p.device.type == "cuda" else None,
    )
    return True


def init_deepspeed_comm(p: Placement, timeout: _dt.timedelta) -> None:
    """DeepSpeed's communication layer over the group `init_group` made (it adopts an existing
    default group). Needed before `deepspeed.zero.Init`, which reads the world size from it."""
    import deepspeed

    if p.world == 1:  # a single process without a launcher: a group of one on a free local port
        import socket

        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            port = sk.getsockname()[1]
        for k, v in (
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", str(port)),
            ("RANK", "0"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "1"),
        ):
            os.environ.setdefault(k, v)
    deepspeed.init_distributed(
        dist_backend=backend_for(p.device), auto_mpi_discovery=False, timeout=timeout, rank=p.rank, world_size=p.world
    )


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def agree(*flags: bool) -> tuple[bool, ...]:
    """Logical OR of each flag over all ranks (a CPU tensor: served by gloo on every backend)."""
    if not active():
        return tuple(bool(f) for f in flags)
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(x) for x in t.tolist())


def broadcast_int(value: int, src: int = 0) -> int:
    """Rank `src`'s value on every rank."""
    if not active():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64)
    dist.broadcast(t, src=src)
    return int(t.item())


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s `obj` (picklable) on every rank: one decision (which checkpoint to resume, which
    shards to seal) instead of each rank deciding from its own view of a shared filesystem."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In place, on the tensor's own device (NCCL for CUDA tensors, gloo for CPU ones)."""
    if active():
        dist.all_reduce(t)
    return t


def all_gather_objects(obj) -> list:
    """Every rank's `obj` (picklable), in rank order."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shutdown(engine=None, *, clean: bool = True) -> None:
    """Tear down in order (step 4 above). `clean=False` (an error path) skips the barrier: a rank
    that failed must not wait for peers that may never arrive."""
    if engine is not None:
        destroy = getattr(engine, "destroy", None)
        if destroy is not None:
            try:
                destroy()
            except Exception as e:  # noqa: BLE001 — teardown must reach destroy_process_group
                log.warning("engine teardown failed: %s", e)
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean:
        try:
            barrier()
        except Exception as e:  # noqa: BLE001 — teardown must reach destroy_process_group
            log.warning("barrier before teardown failed: %s", e)
    dist.destroy_process_group()
