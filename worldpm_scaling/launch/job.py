"""What runs inside a submitted job: rebuild the RunSpec and hand it to the cell's owner (`cell.run_cell`).

`CellJob` is what submitit pickles: only the RunSpec's JSON (never a live model, never a secret). The
cell's lifecycle — ranks, network, signals, markers, tracking, training, requeue — is `run_cell`'s,
the same code `wps train` runs. The one thing left here is submitit's own USR2 path for a signal that
lands before `run_cell` has installed its handlers (during imports): nothing has trained, so the
job only records REQUEUED and lets submitit requeue it.
"""

from __future__ import annotations

import json
import os

import submitit

from ..config import RunSpec
from .cell import Requeued, run_cell
from .markers import read_marker, write_marker
from .ranks import RankSetupError, rank_env

__all__ = ["CellJob", "Requeued", "read_marker", "write_marker"]


class CellJob(submitit.helpers.Checkpointable):
    def __init__(self, run_json: str):
        self.run_json = run_json

    def __getstate__(self):
        return {"run_json": self.run_json}

    def __setstate__(self, state):
        self.__init__(state["run_json"])

    def __call__(self) -> dict:
        run = RunSpec.from_dict(json.loads(self.run_json))
        import torch

        torch.set_num_threads(max(1, run.resources.cpus_per_task))
        try:
            out = run_cell(run)
        except Requeued:
            raise
        except BaseException as e:  # a job that dies before training must still say so on disk
            if _rank() == 0 and read_marker(run.out_dir).get("status") != "FAILED":
                write_marker(run.out_dir, "FAILED", error=f"{type(e).__name__}: {e}")
            raise
        if out.status == "FAILED":
            raise RuntimeError(
                f"cell {run.cell_id} failed on rank {out.rank}: {type(out.error).__name__}: {out.error}"
            ) from out.error
        r = out.result
        return {
            "status": out.status,
            "steps": getattr(r, "steps", None),
            "pairs_seen": getattr(r, "pairs_seen", None),
            "final_loss": getattr(r, "final_loss", None),
        }

    def checkpoint(self, *args, **kwargs):
        """submitit's USR2 handler, before run_cell took the signals over: nothing trained yet."""
        run = RunSpec.from_dict(json.loads(self.run_json))
        if _rank() == 0:
            write_marker(run.out_dir, "REQUEUED", before_start=True)
        return submitit.helpers.DelayedSubmission(CellJob(self.run_json))


def _rank() -> int:
    """This task's rank as `run_cell` reads it (`ranks.rank_env`: torchrun's RANK, else an srun step's
    SLURM_PROCID, else 0). Where the layout itself is broken — the very error being reported — every
    task counts as rank 0: each writes the marker through its own temporary file, so one FAILED lands."""
    try:
        return rank_env(os.environ).rank
    except RankSetupError:
        return 0
