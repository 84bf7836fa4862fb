"""The Tracker protocol: the only thing training code knows about experiment tracking.

A sweep has one *parent* run; each cell has one *child* run, found again by its `cell_id` when a
requeued job restarts, so it never logs a step twice (`last_step` tells the trainer where to resume).
Implementations: MLflow (batched, background flush, spools when the server is away), Spool
(append-only local files replayed by `wps sync`), InMemory (tests).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Protocol, runtime_checkable

Status = Literal["FINISHED", "FAILED", "KILLED"]
STATUSES: tuple[str, ...] = ("FINISHED", "FAILED", "KILLED")
SYSTEM_PREFIX = "system/"
"""MLflow's system-metric keys (`system/cpu_utilization_percentage`, …): sample counters, not steps."""


@runtime_checkable
class Run(Protocol):
    """A handle on one tracked run (a sweep's parent or a cell's child)."""

    @property
    def run_id(self) -> str:
        """The backend's id of this run (read-only: MLflow's is fixed once the run exists)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record `metrics` at optimizer step `step`; steps ≤ an already-logged step are dropped."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record parameters (values are stringified); secrets are never passed here."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Record tags (slurm job id, host, git commit …)."""

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Upload a local file or folder."""

    def last_step(self) -> int | None:
        """The highest step already logged to this run (None if none): resume after it."""

    def flush(self) -> None:
        """Send everything buffered now (called on signals before checkpoint/requeue)."""

    def finish(self, status: Status = "FINISHED") -> None:
        """Flush and close the run with a truthful status."""


@runtime_checkable
class Tracker(Protocol):
    """Creates or reattaches runs."""

    def start_sweep(self, sweep: str, *, params: Mapping[str, Any] | None = None) -> Run:
        """The sweep's parent run (created once, reattached afterwards)."""

    def start_cell(
        self,
        sweep: str,
        cell_id: str,
        *,
        name: str,
        parent_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Run:
        """The cell's child run: reattached if one with this `cell_id` exists, else created."""
