"""Launching sweeps as submitit jobs (SLURM arrays, or local subprocesses), and their state."""

from .job import CellJob, read_marker
from .status import all_done, close_sweep_run, sweep_outcome, sweep_status
from .submit import launch, launches, pending_cells, render_sbatch, slurm_parameters

__all__ = [
    "CellJob",
    "close_sweep_run",
    "sweep_outcome",
    "launch",
    "launches",
    "pending_cells",
    "render_sbatch",
    "slurm_parameters",
    "sweep_status",
    "all_done",
    "read_marker",
]
