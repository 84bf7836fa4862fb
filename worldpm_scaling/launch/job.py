"""What runs inside a job: rebuild the RunSpec, attach to the cell's tracked run, train.

`CellJob` is a submitit Checkpointable: on USR2 (preemption or the time limit) submitit calls
`checkpoint()`, which saves the trainer's state and requeues the same callable; on restart the
trainer resumes from the cell's latest checkpoint and the tracker from the run's last logged step.
A `status.json` marker in the cell folder records how the last attempt ended.

With several ranks (one task per GPU) a save is collective, so submitit's way — rank 0 saves inside
its USR2 handler and requeues at once — cannot work: the other ranks are mid-step. There every rank
installs its own USR2/SIGTERM handler that only asks the trainer to stop; at the next step boundary
the ranks agree (a request on any one rank suffices), all save that step together, and `fit()`
returns PREEMPTED (USR2) or KILLED (SIGTERM). Then rank 0 requeues the job (`scontrol requeue`, as
submitit does) and exits like submitit's handler; the other ranks return. The requeued job resumes
from that checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import submitit

from ..config import RunSpec

log = logging.getLogger(__name__)


class Requeued(SystemExit):
    """Rank 0 requeued the job after every rank saved; exits the task like submitit's handler (-1)."""


def write_marker(out_dir: str, status: str, **extra) -> None:
    p = Path(out_dir) / "status.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"status": status, "time": time.time(), **extra}))
    tmp.replace(p)


def read_marker(out_dir: str) -> dict:
    p = Path(out_dir) / "status.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


class CellJob(submitit.helpers.Checkpointable):
    def __init__(self, run_json: str):
        self.run_json = run_json
        self._trainer = None
        self._tracker_run = None

    def __getstate__(self):  # never pickle the live model into the requeued submission
        return {"run_json": self.run_json}

    def __setstate__(self, state):
        self.__init__(state["run_json"])

    def __call__(self) -> dict:
        run = RunSpec.from_dict(json.loads(self.run_json))
        try:
            return self._run(run)
        except Requeued:
            raise
        except BaseException as e:  # a job that dies before training must still say so on disk
            if int(os.environ.get("RANK", "0")) == 0 and read_marker(run.out_dir).get("status") != "FAILED":
                write_marker(run.out_dir, "FAILED", error=f"{type(e).__name__}: {e}")
            raise

    def _run(self, run: RunSpec) -> dict:
        import torch

        from ..track import open_tracker
        from ..train import Trainer

        env = submitit.JobEnvironment() if _in_submitit() else None
        if env is not None and env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        torch.set_num_threads(max(1, run.resources.cpus_per_task))
        rank = int(os.environ.get("RANK", "0"))
        tracker = open_tracker(run.tracking, spool_dir=f"{run.out_dir}/spool", experiment=run.sweep)
        if rank == 0:
            parent = tracker.start_sweep(run.sweep)
            child = tracker.start_cell(run.sweep, run.cell_id, name=f"{run.model.name}-{run.pairs}-s{run.seed}",
                                       parent_run_id=parent.run_id, params=run.flat_params(),
                                       tags={"slurm_job_id": env.job_id if env else "", "host": socket.gethostname(),
                                             "executor": os.environ.get("SUBMITIT_EXECUTOR", "")})
            from ..track.datasets import log_cell_inputs

            log_cell_inputs(child, run)  # training pairs and eval sets: the runs table's Dataset column
        else:
            from ..track import InMemoryTracker

            child = InMemoryTracker().start_cell(run.sweep, run.cell_id, name="rank")
        self._tracker_run = child
        write_marker(run.out_dir, "RUNNING", job_id=env.job_id if env else None)
        self._trainer = Trainer(run, child)
        if self._trainer.world > 1:
            self._install_rank_signal_handlers()
        try:
            result = self._trainer.fit()
        except BaseException as e:
            if rank == 0:
                child.finish("FAILED")
                write_marker(run.out_dir, "FAILED", error=f"{type(e).__name__}: {e}")
            raise
        if result.status == "PREEMPTED":
            if rank == 0:
                write_marker(run.out_dir, "REQUEUED", steps=result.steps, pairs_seen=result.pairs_seen)
                self._requeue(env)
            return {"status": result.status, "steps": result.steps, "pairs_seen": result.pairs_seen,
                    "final_loss": result.final_loss}
        if rank == 0:
            child.finish(result.status)
            write_marker(run.out_dir, result.status, steps=result.steps, pairs_seen=result.pairs_seen)
        return {"status": result.status, "steps": result.steps, "pairs_seen": result.pairs_seen,
                "final_loss": result.final_loss}

    def _install_rank_signal_handlers(self) -> None:
        """Replace submitit's USR2 (checkpoint + requeue on rank 0 only) and SIGTERM (ignored) handlers
        by ones that ask the trainer to save at the next step boundary, on every rank."""
        trainer = self._trainer

        def on_signal(signum, frame):
            name = signal.Signals(signum).name
            print(f"rank {trainer.rank}: caught {name}: every rank saves at the next step boundary"
                  + (", then the job requeues" if signum == signal.SIGUSR2 else ", then stops"),
                  file=sys.stderr, flush=True)
            if signum == signal.SIGUSR2:
                trainer.request_preempt()
            else:
                trainer.request_stop()

        signal.signal(signal.SIGUSR2, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    @staticmethod
    def _requeue(env) -> None:
        """Rank 0, every rank's checkpoint sealed: requeue this SLURM job and leave (submitit's way)."""
        job_id = env.job_id if env is not None else None
        if not job_id or "SLURM_JOB_ID" not in os.environ:
            log.warning("preempted outside SLURM: checkpoint written, nothing to requeue")
            raise Requeued(-1)
        print(f"requeueing job {job_id}: every rank saved", file=sys.stderr, flush=True)
        subprocess.check_call(["scontrol", "requeue", job_id], timeout=60)  # SLURM then ends this attempt
        raise Requeued(-1)

    def checkpoint(self, *args, **kwargs):
        if self._trainer is not None:
            self._trainer.checkpoint_now()
        if self._tracker_run is not None:
            try:  # we are inside submitit's USR2 handler: let the sender thread do the flushing
                flush = getattr(self._tracker_run, "flush_from_signal", None) or self._tracker_run.flush
                flush()
            except Exception:  # noqa: BLE001 — the spool keeps what the server did not take
                pass
        return submitit.helpers.DelayedSubmission(CellJob(self.run_json))


def _in_submitit() -> bool:
    return "SUBMITIT_EXECUTOR" in os.environ or "SLURM_JOB_ID" in os.environ
