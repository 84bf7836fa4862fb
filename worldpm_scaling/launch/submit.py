"""Sweep → submitit jobs: executor parameters from the plan, sbatch rendering, skip/resume, state.

`slurm_parameters(run, cluster)` is pure (RunSpec resources + profile → submitit's SLURM parameters)
and `render_sbatch` turns it into the exact script sbatch would get (golden-tested). `launch()` is the
I/O edge: it skips FINISHED cells, submits the rest as one job array, and appends one line per cell
to `<sweep out_dir>/launches.jsonl`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ClusterSpec, RunSpec
from ..models import missing_bases
from ..plan import Plan
from .records import launches, read_state  # noqa: F401 — launches re-exported


def slurm_parameters(run: RunSpec, cluster: ClusterSpec) -> dict:
    """submitit `SlurmExecutor.update_parameters` arguments for one cell."""
    r = run.resources
    gpu = cluster.gpu_type != "cpu"
    p = {
        "job_name": f"{run.sweep}-{run.model.name}",
        "partition": cluster.partition,
        "account": cluster.account,
        "qos": cluster.qos,
        "constraint": cluster.constraint,
        "time": r.time_limit_minutes,
        "nodes": r.nodes,
        "ntasks_per_node": r.gpus_per_node,
        "cpus_per_task": r.cpus_per_task,
        "gpus_per_node": r.gpus_per_node if gpu else None,
        "mem": f"{int(r.mem_gb_per_task * r.gpus_per_node)}GB" if r.mem_gb_per_task else None,
        "signal_delay_s": cluster.signal_delay_s,
        "setup": list(cluster.setup) or None,
        # one rank that dies ends the step at once (SLURM's KillWait), instead of its peers idling in a
        # collective for the group timeout (≥ 30 min on every GPU of the cell)
        "srun_args": ["--kill-on-bad-exit=1"],
        "array_parallelism": cluster.array_parallelism,
        "additional_parameters": {"requeue": True, **dict(cluster.sbatch_extra)},
    }
    return {k: v for k, v in p.items() if v is not None}


def render_sbatch(
    run: RunSpec, cluster: ClusterSpec, *, folder: str = "%j", array: int | None = None, python: str = "python"
) -> str:
    """The sbatch script submitit would submit for this cell (or an array of `array` cells)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = slurm_parameters(run, cluster)
    command = f"{python} -u -m submitit.core._submit {folder}"
    script = _make_sbatch_string(command=command, folder=folder, map_count=array, **params)
    if not Path(folder).is_absolute():  # submitit resolves the folder; keep what the caller gave
        script = script.replace(f"{Path.cwd()}/", "")
    return script


@dataclass
class Submitted:
    cell_id: str
    job_id: str
    index: int


def make_executor(kind: str, folder: Path, cluster: ClusterSpec, run: RunSpec):
    import submitit

    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=20)
        ex.update_parameters(**slurm_parameters(run, cluster))
        return ex
    auto = submitit.AutoExecutor(folder=str(folder), cluster=kind)
    auto.update_parameters(
        timeout_min=run.resources.time_limit_minutes, tasks_per_node=1, cpus_per_task=run.resources.cpus_per_task
    )
    return auto


class BaseCheckpointError(ValueError):
    """`wps launch` refuses: a cell's pretrained base folder is missing or is not its catalogue shape."""


def pending_cells(plan: Plan) -> tuple[list[RunSpec], list[RunSpec]]:
    """(cells to submit, cells already FINISHED). A cell whose status.json cannot be read is pending
    here; the pre-flight check (launch/preflight.py) refuses it before anything is submitted."""
    todo: list[RunSpec] = []
    done: list[RunSpec] = []
    for r in plan.runs:
        (done if read_state(r.out_dir).get("status") == "FINISHED" else todo).append(r)
    return todo, done


def launch(plan: Plan, *, executor: str | None = None, dry_run: bool = False, check: bool = True) -> list:
    """Submit every unfinished cell; returns submitit jobs (or rendered scripts when dry_run).

    Before anything is submitted, the pre-flight check (`preflight.py`: data, tokenizer, eval files,
    bases, tracking, output folder, cells' state) must pass, else PreflightError names what is not
    ready. A dry run renders the scripts whatever is missing: the preview of a sweep whose inputs are
    not on this machine yet (`wps launch --dry-run` prints the readiness table beside it)."""
    from .job import CellJob

    spec = plan.sweep
    kind = executor or spec.cluster.executor
    from .ranks import check_profile_interface

    check_profile_interface(spec.cluster)  # before anything is submitted or rendered
    todo, _ = pending_cells(plan)
    if not todo:
        return []
    bad = missing_bases(plan.runs)
    bad = {r.cell_id: bad[r.cell_id] for r in todo if r.cell_id in bad}
    if bad and not dry_run:  # before anything is submitted: a job would die loading its base
        reasons = sorted(set(bad.values()))
        raise BaseCheckpointError(
            "; ".join(reasons) + f" ({len(bad)} cell(s); put the Qwen2.5 base folders "
            "under cluster.models_dir or $WPS_MODELS_DIR, or set init: random)"
        )
    if check and not dry_run:
        from .preflight import preflight, require_ready

        require_ready(preflight(plan))
    out = Path(spec.output_dir)
    if not dry_run:
        _prepare_tracking(spec)
    if dry_run:
        if kind != "slurm":
            return [
                f"# {kind} executor: {r.cell_id} ({r.model.name}) would run `wps train` in a subprocess" for r in todo
            ]
        groups = _groups(todo)
        return [render_sbatch(g[0], spec.cluster, folder=str(out / "jobs" / "%j"), array=len(g)) for g in groups]
    jobs = []
    for group in _groups(todo):
        ex = make_executor(kind, out / "jobs" / "%j", spec.cluster, group[0])
        with ex.batch():
            submitted = [ex.submit(CellJob(r.to_json())) for r in group]
        jobs += submitted
        with open(out / "launches.jsonl", "a") as f:
            for r, j in zip(group, submitted):
                f.write(
                    json.dumps(
                        {
                            "cell_id": r.cell_id,
                            "index": r.index,
                            "job_id": j.job_id,
                            "executor": kind,
                            "folder": str(ex.folder if hasattr(ex, "folder") else out / "jobs"),
                            "time": time.time(),
                        }
                    )
                    + "\n"
                )
    return jobs


def _prepare_tracking(spec) -> None:
    """Create/migrate a sqlite MLflow store once, here: array tasks starting together would race
    on its schema migration (measured: one of two tasks dies with alembic CommandError)."""
    import os

    uri = spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    if spec.tracking.backend == "mlflow" and uri.startswith("sqlite:///"):
        from mlflow.tracking import MlflowClient

        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        MlflowClient(uri).search_experiments(max_results=1)


def _groups(runs: list[RunSpec]) -> list[list[RunSpec]]:
    """One job array per distinct resource shape (an array shares one sbatch header); the array's
    time limit is the longest of its cells'."""
    from dataclasses import replace

    groups: dict = {}
    for r in runs:
        # only the sbatch header decides a group; each job's batch layout and timings ride in its RunSpec
        key = replace(
            r.resources,
            time_limit_minutes=0,
            grad_accum=0,
            micro_batch_pairs=None,
            step_seconds=None,
            checkpoint_seconds=None,
        )
        groups.setdefault(key, []).append(r)
    out = []
    for g in groups.values():
        longest = max(x.resources.time_limit_minutes for x in g)
        out.append([replace(x, resources=replace(x.resources, time_limit_minutes=longest)) for x in g])
    return out
