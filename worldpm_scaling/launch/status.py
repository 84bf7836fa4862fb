"""Where each cell of a sweep stands: scheduler state, MLflow run, last step, loss, pairs seen."""

from __future__ import annotations

import os
import subprocess

from .. import names
from ..plan import Plan
from .records import UNREADABLE, launches, read_state


def first_error_line(out_dir: str, job_id) -> tuple[str, str] | None:
    """(the first line that names an error in the job's log, the log's path), for a cell that failed:
    the reason a job died at start (a missing file, a bad base) without reading its log by hand. submitit
    logs sit in `<sweep out>/jobs/<job id>/<job id>_<task>_log.err`; `wps train` subprocesses log to the
    same folder."""
    import re
    from pathlib import Path

    jobs = Path(out_dir) / "jobs"
    if job_id is None or not jobs.is_dir():
        return None
    jid = str(job_id)
    base = jid.split("_")[0]
    logs = sorted(
        p
        for folder in {jobs / jid, jobs / base}
        if folder.is_dir()
        for p in folder.glob("*_log.err")
        if p.name.startswith(jid + "_") or p.name.startswith(jid)
    )
    named = re.compile(r"^(error: |[A-Za-z_][\w.]*(Error|Exception|Exit)\b: ?)")  # wps's error line, an exception's
    loose = re.compile(r"\b(error|failed)\b", re.IGNORECASE)
    fallback = None
    for log in logs:
        try:
            lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()]
        except OSError:
            continue
        for s in lines:
            if named.match(s):
                return s[:300], str(log)
            if fallback is None and s and loose.search(s) and not s.startswith(("Traceback", "submitit")):
                fallback = (s[:300], str(log))
    return fallback


TERMINAL = {
    "FINISHED",
    "FAILED",
    "KILLED",
    "CANCELLED",
    "COMPLETED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
}
"""PREEMPTED is terminal only once its job has ended without coming back (cancelled after the save):
while SLURM requeues it the cell shows REQUEUED (see `cell_state`). `wps launch` resumes either."""


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


_SACCT_AWAY: list[str] = []
"""Set once sacct timed out in this process: a status of a 24-cell sweep would otherwise wait 10 s per cell."""


def slurm_state(job_id: str) -> str | None:
    """State from sacct (needs slurmdbd); None where sacct is unavailable. After one timeout the others
    in this process are skipped (one warning): a dead slurmdbd must not make `wps status` hang for minutes."""
    if _SACCT_AWAY:
        return None
    try:
        r = subprocess.run(
            ["sacct", "-j", str(job_id), "-n", "-X", "-P", "-o", "State"], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        import sys

        _SACCT_AWAY.append(str(job_id))
        print(
            "warning: sacct did not answer within 10 s (slurmdbd down?); scheduler states are skipped and cells "
            "show their own status",
            file=sys.stderr,
        )
        return None
    except (OSError, subprocess.SubprocessError):
        return None
    states = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]  # "CANCELLED by 0" → CANCELLED
    return states[-1] if states else None


def _existing_store(uri: str | None) -> str | None:
    """The tracking URI (`resolve_uri`), or None for a SQLite file that does not exist yet: a status
    poll must never create (and race the jobs migrating) the database."""
    from ..track.mlflow_store import resolve_uri

    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///") and not os.path.exists(uri[len("sqlite:///") :]):
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
                out[cid] = {
                    "status": r.info.status,
                    "loss": m.get(names.TRAIN_LOSS),
                    "pairs": m.get(names.TRAIN_PAIRS_SEEN),
                    "run_id": r.info.run_id,
                }
        return out
    except Exception:  # noqa: BLE001 — status must still show the scheduler side
        return {}


def sweep_status(plan: Plan, *, uri: str | None = None, problems: list[str] | None = None) -> list[dict]:
    """One row per cell. State files that cannot be read are never fatal: a torn launches.jsonl line
    is skipped and an unreadable status.json shows as UNREADABLE; each is described in `problems`."""
    spec = plan.sweep
    problems = [] if problems is None else problems
    rec = launches(spec.output_dir, problems=problems)
    ml = mlflow_runs(spec.name, uri or spec.tracking.uri)
    rows = []
    for r in plan.runs:
        launch = rec.get(r.cell_id, {})
        marker = read_state(r.out_dir)
        if marker.get("status") == UNREADABLE:
            problems.append(
                f"cell {r.cell_id}: {marker['problem']}; shown as {UNREADABLE} (check the cell's "
                "checkpoints, then remove the file to let `wps launch` resume the cell)"
            )
        sched = None
        if launch.get("executor") == "slurm":
            sched = slurm_state(launch["job_id"])
        elif launch and not _pid_alive(launch["job_id"]):
            sched = "EXITED"
        m = ml.get(r.cell_id, {})
        state = cell_state(marker.get("status") or ("SUBMITTED" if launch else "NOT LAUNCHED"), sched)
        rows.append(
            {
                "index": r.index,
                "cell_id": r.cell_id,
                "model": r.model.name,
                "seed": r.seed,
                "pairs_budget": r.pairs,
                "job_id": launch.get("job_id"),
                "scheduler": sched or launch.get("executor", "-"),
                "state": state,
                "mlflow": m.get("status"),
                "pairs_seen": m.get("pairs") or marker.get("pairs_seen"),
                "loss": m.get("loss"),
                "steps": marker.get("steps"),
                "launched": bool(launch),
                "why": _why(state, marker, spec.output_dir, launch.get("job_id")),
            }
        )
    return rows


def _why(state: str, marker: dict, out_dir: str, job_id) -> str | None:
    """Why a cell ended badly, in one line: the error its job recorded, else the first error line of
    its log (a job that died before writing status.json, e.g. on a missing data file)."""
    if state not in ("FAILED", "EXITED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", UNREADABLE):
        return None
    if state == UNREADABLE:
        return marker.get("problem")
    if isinstance(marker.get("error"), str) and marker["error"]:
        return marker["error"][:300]
    found = first_error_line(out_dir, job_id)
    return f"{found[0]} (log: {found[1]})" if found else None


def cell_state(marker: str, sched: str | None) -> str:
    """What a cell shows, from its marker (written by the job's rank 0) and its scheduler state.

    A cell saved after SLURM's SIGTERM (PREEMPTED) or its own USR2 (REQUEUED) is REQUEUED while its job
    is pending or running again; once the job ended without coming back it is CANCELLED (a user's
    `scancel` also sends SIGTERM) or PREEMPTED: never KILLED or FAILED, since its checkpoint is whole
    and a relaunch resumes it."""
    state = sched or ""
    dead = bool(state) and state.split()[0] in _DEAD
    if marker in ("REQUEUED", "PREEMPTED"):
        if not dead:
            return "REQUEUED"
        return "CANCELLED" if state.startswith("CANCELLED") else "PREEMPTED"
    if dead and marker in ("RUNNING", "SUBMITTED"):
        return "CANCELLED" if state.startswith("CANCELLED") else ("FAILED" if state == "EXITED" else state.split()[0])
    return marker


def all_done(rows: list[dict]) -> bool:
    """No cell will change without a person: each has ended, is UNREADABLE, or was never launched (a
    model added to the sweep after its launch: waiting for it would wait for ever)."""
    return all(r["state"] in TERMINAL or r["state"] in (UNREADABLE, "NOT LAUNCHED") for r in rows)


def nothing_launched(rows: list[dict]) -> bool:
    """No cell has a launch record or a status of its own: a `--watch` would wait for ever."""
    return all(not r.get("launched") and r["state"] == "NOT LAUNCHED" for r in rows)


def sweep_outcome(rows: list[dict]) -> str | None:
    """The sweep's status once every cell has ended: FINISHED if all finished, FAILED if any failed,
    else KILLED (cancelled or killed cells); None while any cell is still pending or running."""
    states = [r["state"] for r in rows]
    if not states or any(s not in TERMINAL for s in states):  # UNREADABLE too: unknown is not an outcome
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
