"""Where each cell of a sweep stands: scheduler state, MLflow run, last step, loss, pairs seen."""

from __future__ import annotations

import os
import subprocess

from .. import names
from ..plan import Plan
from .job import read_marker
from .submit import launches

TERMINAL = {"FINISHED", "FAILED", "KILLED", "CANCELLED", "COMPLETED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


_DEAD = {"CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "EXITED", "BOOT_FAIL", "DEADLINE"}


def _pid_alive(pid) -> bool:
    """Local executor jobs are processes: gone without a final marker = died."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def slurm_state(job_id: str) -> str | None:
    """State from sacct (needs slurmdbd); None where sacct is unavailable."""
    try:
        r = subprocess.run(["sacct", "-j", str(job_id), "-n", "-X", "-P", "-o", "State"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    states = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]  # "CANCELLED by 0" → CANCELLED
    return states[-1] if states else None


def _existing_store(uri: str | None) -> str | None:
    """The tracking URI (`resolve_uri`), or None for a SQLite file that does not exist yet: a status
    poll must never create (and race the jobs migrating) the database."""
    from ..track.mlflow_store import resolve_uri

    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///"):]):
        return None
    return uri


def mlflow_runs(sweep: str, uri: str | None) -> dict[str, dict]:
    """cell_id → {status, step, loss, pairs} from the tracking server (empty if unreachable)."""
    uri = _existing_store(uri)
    if uri is None:
        return {}
    from ..track import answering

    if not answering(uri, doing="MLflow columns"):  # a dead port: warn once, don't retry for minutes
        return {}
    try:
        from mlflow.tracking import MlflowClient

        c = MlflowClient(uri)
        exp = c.get_experiment_by_name(sweep)
        if exp is None:
            return {}
        out = {}
        for r in c.search_runs([exp.experiment_id], filter_string=f"tags.sweep = '{sweep}'", max_results=5000):
            cid = r.data.tags.get("cell_id")
            if cid:
                m = r.data.metrics
                out[cid] = {"status": r.info.status, "loss": m.get(names.TRAIN_LOSS),
                            "pairs": m.get(names.TRAIN_PAIRS_SEEN), "run_id": r.info.run_id}
        return out
    except Exception:  # noqa: BLE001 — status must still show the scheduler side
        return {}


def sweep_status(plan: Plan, *, uri: str | None = None) -> list[dict]:
    spec = plan.sweep
    rec = launches(spec.output_dir)
    ml = mlflow_runs(spec.name, uri or spec.tracking.uri)
    rows = []
    for r in plan.runs:
        launch = rec.get(r.cell_id, {})
        marker = read_marker(r.out_dir)
        sched = None
        if launch.get("executor") == "slurm":
            sched = slurm_state(launch["job_id"])
        elif launch and not _pid_alive(launch["job_id"]):
            sched = "EXITED"
        m = ml.get(r.cell_id, {})
        state = marker.get("status") or ("SUBMITTED" if launch else "NOT LAUNCHED")
        if sched and sched.split()[0] in _DEAD and state in ("RUNNING", "SUBMITTED"):
            state = "CANCELLED" if sched.startswith("CANCELLED") else ("FAILED" if sched == "EXITED" else sched)
        rows.append({"index": r.index, "cell_id": r.cell_id, "model": r.model.name, "seed": r.seed, "pairs_budget": r.pairs,
                     "job_id": launch.get("job_id"), "scheduler": sched or launch.get("executor", "-"),
                     "state": state, "mlflow": m.get("status"), "pairs_seen": m.get("pairs") or marker.get("pairs_seen"),
                     "loss": m.get("loss"), "steps": marker.get("steps")})
    return rows


def all_done(rows: list[dict]) -> bool:
    return all(r["state"] in TERMINAL for r in rows)


def sweep_outcome(rows: list[dict]) -> str | None:
    """The sweep's status once every cell has ended: FINISHED if all finished, FAILED if any failed,
    else KILLED (cancelled or killed cells); None while any cell is still pending or running."""
    states = [r["state"] for r in rows]
    if not states or any(s not in TERMINAL for s in states):
        return None
    if all(s in ("FINISHED", "COMPLETED") for s in states):
        return "FINISHED"
    if any(s in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL") for s in states):
        return "FAILED"
    return "KILLED"


def close_sweep_run(plan: Plan, rows: list[dict], *, uri: str | None = None) -> str | None:
    """End the sweep's parent MLflow run with `sweep_outcome(rows)` once every cell has ended (the
    jobs only close their own cell runs; a relaunch sets the parent RUNNING again). Returns the
    status set, or None (nothing changed, cells still running, no MLflow tracking, server away)."""
    spec = plan.sweep
    status = sweep_outcome(rows)
    if status is None or spec.tracking.backend != "mlflow":
        return None
    uri = _existing_store(uri or spec.tracking.uri)
    if uri is None:
        return None
    from ..track import answering

    if not answering(uri, doing="closing the sweep's parent run"):
        return None
    try:
        from ..track.mlflow_store import Store
        from ..track.query import sweep_runs

        parents = [r for r in sweep_runs(uri, spec.name, experiment=spec.tracking.experiment) if r.role == "sweep"]
        changed = [r for r in parents if r.status != status]
        if changed:
            store = Store(uri)
            for r in changed:
                store.set_status(r.run_id, status)
        return status if changed else None
    except Exception:  # noqa: BLE001 — closing the parent is bookkeeping; never fail a status call on it
        return None
