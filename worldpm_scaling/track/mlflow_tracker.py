"""MLflow behind the Tracker protocol: one experiment per sweep, a parent run per sweep, a child per cell.

Why it is built this way:
- Each run (track/mlflow_run.py) buffers its metrics and sends them from a background thread, falling
  back to the fsync'd spool while the server is away.
- Never twice: a requeued job reattaches to its cell's child run (tag `cell_id`) and starts from the
  server's per-key maxima (and the points an earlier attempt spooled).
- A server unreachable at start gives a run that lives in the spool until it can be created or
  reattached by `cell_id`; refused credentials at start are a named error, never a silent spool.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any, Mapping

from .flush_hooks import install_signal_flush
from .mlflow_run import SPOOL_PREFIX, MlflowRun
from .mlflow_store import Store, TrackingAuthError
from .secrets import scrub
from .source import source_tags, sweep_file
from .spool import Spool, cell_key, sweep_key
from .sync import attach

__all__ = [
    "SPOOL_PREFIX",
    "MlflowRun",
    "MlflowTracker",
    "SpoolTracker",
    "git_commit",
    "install_signal_flush",
    "job_tags",
]


def git_commit(cwd: str | None = None) -> str | None:
    """HEAD of the repository the job runs from (None outside git)."""
    try:
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd or os.getcwd()
        )
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def job_tags(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where this attempt runs: SLURM job id (array jobs as `<job>_<task>`), host, git commit."""
    env = os.environ if environ is None else environ
    tags = {"host": socket.gethostname()}
    if env.get("SLURM_ARRAY_JOB_ID"):
        tags["slurm_job_id"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    elif env.get("SLURM_JOB_ID"):
        tags["slurm_job_id"] = env["SLURM_JOB_ID"]
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


# -- trackers -----------------------------------------------------------------------------------------
class MlflowTracker:
    """Tracker over an MLflow URI (HTTP server or database); spools to `spool_dir` when it is away.

    `offline=True` never contacts a server (the `spool` backend): runs live in the spool until
    `wps sync DIR --uri …` replays them.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        experiment: str | None = None,
        spool_dir: str | os.PathLike | None = None,
        flush_every_s: float = 5.0,
        flush_every_points: int = 1000,
        offline: bool = False,
        start_timeout_s: float = 5.0,
        request_timeout_s: float = 15.0,
        finish_wait_s: float = 60.0,
        system_metrics: bool = False,
        system_metrics_interval_s: float = 10.0,
        source: bool = True,
    ):
        self.store = None if offline else Store(uri, timeout_s=request_timeout_s)
        self.uri = self.store.uri if self.store else None
        self.experiment = experiment
        self.spool = Spool(spool_dir) if spool_dir is not None else None
        self.start_timeout_s = start_timeout_s
        self._kw: dict[str, Any] = {
            "flush_every_s": flush_every_s,
            "flush_every_points": flush_every_points,
            "finish_wait_s": 0.0 if offline else finish_wait_s,
        }
        self._reachable: bool | None = None
        self._access_checked = False
        self.system_metrics = bool(system_metrics)
        """Sample MLflow's system metrics into each cell run (`open_tracker`: tracking.system_metrics)."""
        self.system_metrics_interval_s = float(system_metrics_interval_s)
        self.source = bool(source)
        """Tag runs with MLflow's source tags (command, git state) and log the sweep YAML to the parent."""

    def _online_now(self) -> bool:
        if self.store is None:
            return False
        if not self.store.is_http:
            return True
        ok = self.store.healthy(timeout_s=self.start_timeout_s)
        if ok and not self._access_checked:  # /health needs no credentials: ask once with them
            try:
                self.store.check_access()
            except TrackingAuthError:
                raise  # at start: a named error, never a silent run in the spool
            except Exception:  # noqa: BLE001 — went away between the two requests: spool below
                ok = False
            else:
                self._access_checked = True
        if not ok and self.spool is None:
            raise ConnectionError(f"MLflow server {self.store.safe_uri} unreachable and no spool folder given")
        if not ok and self._reachable is not False and self.spool is not None:
            print(
                f"warning: MLflow server {self.store.safe_uri} unreachable; spooling to {self.spool.dir} "
                "(replayed when it answers again, or with `wps sync`)",
                file=sys.stderr,
            )
        self._reachable = ok
        return ok

    def _open(self, meta: dict, key: str, role: str, params: Mapping[str, Any] | None) -> MlflowRun:
        online = self._online_now()  # first: refused credentials stop here, before anything is spooled
        if self.spool is not None:
            self.spool.update_meta(key, **meta)
            if params:
                self.spool.update_meta(key, params=scrub(params))
        run_id: str | None = None
        last: dict[str, int] = {}
        if online and self.store is not None:
            run_id, last = attach(self.store, {**meta, "params": scrub(params or {})}, self.spool, key)
        if self.spool is not None:  # points spooled by an earlier attempt count as logged too
            pts, _ = self.spool.read(key)
            for k, _v, _t, s in pts:
                last[k] = max(last.get(k, s), s)
        return MlflowRun(
            store=self.store, spool=self.spool, key=key, run_id=run_id, last_steps=last, role=role, **self._kw
        )

    def start_sweep(self, sweep: str, *, params: Mapping[str, Any] | None = None) -> MlflowRun:
        meta = {"role": "sweep", "sweep": sweep, "name": sweep, "experiment": self.experiment or sweep}
        run = self._open(meta, sweep_key(sweep), "sweep", params)
        if self.source:
            run.set_tags(source_tags())
            yaml_file = sweep_file()
            if yaml_file is not None:  # the spec as the user wrote it, beside the parent's params
                try:
                    run.log_artifact(yaml_file, "sweep")
                except Exception as e:  # noqa: BLE001 — no spool and no server: say so, keep training
                    print(f"warning: sweep spec {yaml_file} not logged: {e}", file=sys.stderr)
        return run

    def start_cell(
        self,
        sweep: str,
        cell_id: str,
        *,
        name: str,
        parent_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> MlflowRun:
        parent = parent_run_id if parent_run_id and not parent_run_id.startswith(SPOOL_PREFIX) else None
        src = source_tags() if self.source else {}
        meta = {
            "role": "cell",
            "sweep": sweep,
            "cell_id": cell_id,
            "name": name,
            "experiment": self.experiment or sweep,
            "parent_run_id": parent,
            "tags": scrub({**job_tags(), **src, **(tags or {})}, max_len=8000),
            "status": None,
        }
        run = self._open(meta, cell_key(cell_id), "cell", params)
        if self.system_metrics:
            from .system_metrics import start_system_metrics

            run._sysmon = start_system_metrics(run, interval_s=self.system_metrics_interval_s)
        return run


def SpoolTracker(folder: str | os.PathLike, *, experiment: str | None = None) -> MlflowTracker:
    """The `spool` backend: offline only; `wps sync FOLDER` sends the runs to a server later."""
    return MlflowTracker(None, experiment=experiment, spool_dir=folder, offline=True)
