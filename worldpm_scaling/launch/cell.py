"""One cell from start to end on this process (one rank of its job): the only owner of its lifecycle.

`wps train` and the launched SLURM/local job (`job.CellJob`) both call `run_cell`; nothing else wires
a cell. In order:

1. ranks: `ranks.rank_env` (torchrun's variables, else an srun step's mapped, else a world of one),
   exported for torch.distributed; the profile's `network_interface` exported as GLOO_SOCKET_IFNAME /
   NCCL_SOCKET_IFNAME and checked (`ranks.check_network`) before any rendezvous.
2. signals, installed once, here: USR2 (SLURM's time-limit warning, `scancel --signal=USR2`) → every
   rank saves the current step at the next step boundary and rank 0 requeues the job (REQUEUED);
   SIGTERM under SLURM (preemption, `scontrol requeue`, `scancel`) → every rank saves, the cell is
   PREEMPTED (SLURM requeues or cancels the job; a relaunch resumes); SIGTERM or Ctrl-C outside SLURM
   → save and stop (KILLED, the user's stop). A signal before training starts is kept and acted on
   as soon as the cell can act (no training step is started after it).
3. this rank's record (`ranks/<rank>.json`: host, address, pid), the per-rank cell lock, the data
   (tokenizer, training pairs, eval sets: opened once, here), the vocabulary check.
4. rank 0 only: the `status.json` marker (one writer) and the tracking store (`cell_tracking.py`: parent + child run,
   the hosts of the job in the run's tags); other ranks log into memory.
5. the Trainer (the step loop over its TrainState, checkpointed) — then the exit status, markers,
   the tracked run's end and, for USR2, the requeue.

A failure on any rank is the cell's FAILED with the error; a peer lost in a collective (its host
died, it was SIGKILLed) is named by rank, host and address from the ranks' records.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

from ..config import RunSpec
from . import markers

# under the names bench/tiny_path.py wraps and tests/unit/test_launch_ranks.py calls
from .cell_tracking import node_system_metrics as _node_system_metrics
from .cell_tracking import open_tracking as _open_tracking
from .cell_tracking import tag_hosts as _tag_hosts
from .ranks import (
    NetworkSetupError,
    Ranks,
    RankSetupError,
    check_network,
    interface_address,
    local_interfaces,
    rank_env,
    resolve_host,
)

if TYPE_CHECKING:  # torch and the model code load only when a cell trains
    from ..train import Trainer, TrainResult

log = logging.getLogger(__name__)

LOCK_NAME = ".wps-train.lock"

_Handler = Union[Callable[[int, Union[FrameType, None]], Any], int, signal.Handlers, None]
"""What `signal.signal` returns and takes back (typeshed's private `_HANDLER`)."""

TrackingBackend = Literal["mlflow", "spool", "memory", "none"]
"""TrackingSpec.backend's values (`wps train --tracking`)."""


class CellSetupError(ValueError):
    """The cell cannot start as configured (named field or file): bad input, exit 2 in the CLI."""


class CellBusyError(CellSetupError):
    """Another process already trains this rank of the cell (its lock is held)."""


class Requeued(SystemExit):
    """Rank 0 requeued the job after every rank saved; ends the task like submitit's handler (-1)."""


@dataclass
class CellOutcome:
    status: str
    """FINISHED | FAILED | KILLED | REQUEUED | PREEMPTED"""
    rank: int
    world: int
    result: TrainResult | None = None
    """train.TrainResult when the step loop ran to its end (finished, stopped or preempted)."""
    error: BaseException | None = None
    resumed_from_step: int | None = None
    trained_steps: list[int] = field(default_factory=list)
    checkpoint: Path | None = None


class _Signals:
    """The cell's signal handlers. Before the trainer exists a signal is only recorded; after, it is
    passed on (`request_preempt` / `request_stop`; a world of one also saves at once)."""

    def __init__(self, under_slurm: bool):
        self.under_slurm = under_slurm
        self.reason: str | None = None  # "requeue" (USR2) | "preempt" (SIGTERM under SLURM) | "stop"
        self.trainer: Trainer | None = None
        self._lock = threading.Lock()
        self._old: dict[int, _Handler] = {}
        self._interrupts = 0

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except (TypeError, ValueError):
                pass
        self._old.clear()

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:  # a second Ctrl-C: the user does not want to wait for the save
                raise KeyboardInterrupt
        if signum == signal.SIGUSR2:
            reason = "requeue"
        elif signum == signal.SIGTERM and self.under_slurm:
            reason = "preempt"
        else:
            reason = "stop"
        if self.reason is None or reason == "requeue":  # after a requeue of our own, SLURM's SIGTERM changes nothing
            self.reason = self.reason if self.reason == "requeue" else reason
        name = signal.Signals(signum).name
        print(
            f"caught {name}: saving the current step, then "
            + {
                "requeue": "requeueing the job",
                "preempt": "stopping (SLURM requeues or ends the job)",
                "stop": "stopping",
            }[self.reason],
            file=sys.stderr,
            flush=True,
        )
        tr = self.trainer
        if tr is None:
            return
        if tr.world == 1:
            tr.checkpoint_now()  # one process: save now (deferred if mid-update), then stop at the boundary
        if self.reason == "stop":
            tr.request_stop()
        else:
            tr.request_preempt()


def _lock(run: RunSpec, rank: int):
    """One trainer per rank of a cell: a second job (a second rank k) on a cell being trained refuses
    instead of spooling every step twice and rotating checkpoints under the first one."""
    import fcntl

    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (LOCK_NAME if rank == 0 else f"{LOCK_NAME}.rank{rank}")
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise CellBusyError(
            f"cell {run.cell_id} is already being trained (lock {path} held by pid {holder}); "
            "wait for it or stop it, then re-run"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _check_vocab(run: RunSpec, tok) -> None:
    """Token ids the model cannot embed fail here, named, not as an IndexError inside torch.embedding."""
    if tok is not None and tok.vocab_size > run.model.vocab:
        raise CellSetupError(
            f"data.tokenizer {run.data.tokenizer} has {tok.vocab_size:,} tokens but model "
            f"{run.model.name} embeds only {run.model.vocab:,} (ids ≥ {run.model.vocab:,} cannot be "
            "looked up): use a tokenizer that fits or a model with that vocabulary"
        )


def setup_ranks(run: RunSpec, environ=os.environ) -> Ranks:
    """Step 1: the rank layout exported for torch.distributed, the network interface exported and checked."""
    try:
        ranks = rank_env(environ)
    except RankSetupError as e:
        raise CellSetupError(str(e)) from None
    environ.update(ranks.env())
    iface = run.resources.network_interface
    if iface:
        environ.setdefault("GLOO_SOCKET_IFNAME", iface)
        environ.setdefault("NCCL_SOCKET_IFNAME", iface)
    host = socket.gethostname()
    try:
        check_network(
            ranks,
            iface or environ.get("GLOO_SOCKET_IFNAME") or None,
            interfaces=local_interfaces(),
            resolve=resolve_host,
            hostname=host,
        )
    except NetworkSetupError as e:
        raise CellSetupError(str(e)) from None
    return ranks


def _address(run: RunSpec) -> str | None:
    iface = run.resources.network_interface or os.environ.get("GLOO_SOCKET_IFNAME")
    if iface:
        return interface_address(iface)
    addrs = [a for a in resolve_host(socket.gethostname()) if ":" not in a]
    return addrs[0] if addrs else None


def run_cell(
    run: RunSpec,
    *,
    progress: Callable | None = None,
    job_id: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> CellOutcome:
    """Run `run` on this rank from start to end (module docstring). Raises CellSetupError for bad input
    found before anything trains; every other failure is returned as FAILED (with `error`)."""
    under_slurm = "SLURM_JOB_ID" in os.environ
    job_id = job_id or _slurm_job_id(os.environ)
    sig = _Signals(under_slurm)
    sig.install()
    try:
        return _run(run, sig, progress=progress, job_id=job_id, announce=announce)
    finally:
        sig.restore()


def _slurm_job_id(environ) -> str | None:
    """The id `squeue`/`sacct` show for this job: `<array>_<task>` for an array task, else the job id."""
    if environ.get("SLURM_ARRAY_JOB_ID") and environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"
    return environ.get("SLURM_JOB_ID")


def _run(run: RunSpec, sig: _Signals, *, progress, job_id, announce) -> CellOutcome:
    ranks = setup_ranks(run)
    rank, world = ranks.rank, ranks.world
    tok = _tokenizer(run)  # bad input fails before anything is written
    _check_vocab(run, tok)
    host = socket.gethostname()
    markers.write_rank_record(
        run.out_dir,
        rank,
        status="STARTING",
        host=host,
        address=_address(run),
        pid=os.getpid(),
        job_id=job_id,
        world=world,
    )
    lock = _lock(run, rank)
    child = None
    trainer = None
    node_metrics = None
    outcome = CellOutcome(status="FAILED", rank=rank, world=world)
    try:
        if rank == 0:
            markers.write_marker(run.out_dir, "RUNNING", job_id=job_id, world=world)
        if sig.reason is not None:  # stopped before anything was opened
            return _stopped_before_start(run, sig.reason, outcome, job_id)
        child = _open_tracking(run, rank, job_id)
        train_pairs, eval_sets = _open_data(run, tok, rank, world)
        from ..train import Trainer

        trainer = Trainer(
            run, child, train_pairs=train_pairs, eval_sets=eval_sets, tokenizer=tok, train_pairs_sharded=True
        )
        hosts, run_id = _tag_hosts(trainer, child, host)
        node_metrics = _node_system_metrics(run, ranks, hosts, run_id)
        sig.trainer = trainer
        if sig.reason is not None:
            trainer.close()
            return _stopped_before_start(run, sig.reason, outcome, job_id, child=child)
        if announce is not None and rank == 0:
            announce(
                f"cell {run.cell_id}: {run.model.name}, {run.pairs:,} pairs, {len(run.milestones)} milestones, "
                f"{run.train.collation} collation, {world} rank(s) → {run.out_dir}"
            )

        def on_step(tr, m):
            outcome.trained_steps.append(tr.step)
            if progress is not None:
                progress(tr, m)

        result = trainer.fit(progress=on_step)
        outcome.result, outcome.checkpoint = result, result.checkpoint
        outcome.resumed_from_step = trainer.resumed_from_step
        status = result.status
        if status == "PREEMPTED":
            status = "REQUEUED" if sig.reason == "requeue" else "PREEMPTED"
        elif status == "KILLED" and sig.reason in ("requeue", "preempt"):
            status = "REQUEUED" if sig.reason == "requeue" else "PREEMPTED"
        outcome.status = status
        markers.write_rank_record(run.out_dir, rank, status=status, step=result.steps)
        if rank == 0:
            extra = {"steps": result.steps, "pairs_seen": result.pairs_seen, "job_id": job_id, "world": world}
            if status in ("REQUEUED", "PREEMPTED"):
                child.flush()  # the run stays RUNNING: the requeued job continues it
            else:
                child.finish(status)
            markers.write_marker(run.out_dir, status, **extra)
        if status == "REQUEUED" and rank == 0:
            _requeue(job_id)
        return outcome
    except (CellSetupError, Requeued):
        raise
    except BaseException as e:
        outcome.error, outcome.status = e, "FAILED"
        if trainer is not None:
            outcome.resumed_from_step = trainer.resumed_from_step
            trainer.close(clean=False)
        msg = f"{type(e).__name__}: {e}"
        markers.write_rank_record(run.out_dir, rank, status="FAILED", error=msg[:2000])
        if rank == 0:
            lost = (
                markers.describe_lost_rank(msg, markers.read_rank_records(run.out_dir), me=rank) if world > 1 else None
            )
            if lost:
                msg = f"lost {lost}: {msg}"
            if child is not None:
                try:
                    child.finish("FAILED")
                except Exception:  # noqa: BLE001 — the marker below is what must be written
                    pass
            markers.write_marker(run.out_dir, "FAILED", error=msg[:4000], job_id=job_id, world=world)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return outcome
    finally:
        if node_metrics is not None:
            node_metrics.finish()
        lock.close()


def _tokenizer(run: RunSpec):
    from ..data import load_tokenizer

    return load_tokenizer(run.data.tokenizer)


def _open_data(run: RunSpec, tok, rank: int, world: int):
    """The training pairs (this rank's share) and the eval sets, opened once for the trainer."""
    from ..train import inputs

    return inputs.train_pairs(run, rank=rank, world=world), inputs.eval_sets(run, tok)


def _stopped_before_start(run: RunSpec, reason: str, outcome: CellOutcome, job_id, *, child=None) -> CellOutcome:
    """A signal (`reason`: _Signals.reason) arrived before the first step: record it, requeue for USR2."""
    status = {"requeue": "REQUEUED", "preempt": "PREEMPTED", "stop": "KILLED"}[reason]
    outcome.status = status
    markers.write_rank_record(run.out_dir, outcome.rank, status=status, step=None)
    if outcome.rank == 0:
        if child is not None:
            if status == "KILLED":
                child.finish(status)
            else:
                child.flush()  # the run stays RUNNING: the requeued or relaunched job continues it
        markers.write_marker(run.out_dir, status, job_id=job_id, world=outcome.world, before_start=True)
        if status == "REQUEUED":
            _requeue(job_id)
    return outcome


def _requeue(job_id: str | None) -> None:
    """Rank 0, every rank's checkpoint sealed: requeue this SLURM job and leave (submitit's way)."""
    slurm_id = os.environ.get("SLURM_JOB_ID")
    if not slurm_id:
        log.warning("preempted outside SLURM: checkpoint written, nothing to requeue")
        return
    # SLURM_JOB_ID is this array task's own id (scontrol takes it, as it takes ARRAY_TASK forms)
    print(f"requeueing job {job_id or slurm_id}: every rank saved", file=sys.stderr, flush=True)
    subprocess.check_call(["scontrol", "requeue", slurm_id], timeout=60)  # SLURM then ends this attempt
    raise Requeued(-1)


def with_tracking(run: RunSpec, backend: TrackingBackend | None) -> RunSpec:
    """`run` with its tracking backend replaced (`wps train --tracking`)."""
    if backend is None:
        return run
    return dataclasses.replace(run, tracking=dataclasses.replace(run.tracking, backend=backend))
