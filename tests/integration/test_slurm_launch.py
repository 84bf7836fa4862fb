"""The launcher end to end with the real Trainer and MLflow (sqlite): local executor, then a real
SLURM cluster (array, USR2 preemption → checkpoint + requeue, scontrol requeue, scancel + relaunch).

A restart from step 0 draws the same curve (same seed, same data order) and the tracker drops the steps
it already has, so "steps contiguous, none twice" cannot tell it from a resume. The resume tests check
the checkpoint step the trainer continued from (the run's `resumed_from_step` tag, set by
Trainer._restore) against the checkpoints seen before the interruption, and every logged loss against
an uninterrupted in-process run of the same cell (1e-6). With WPS_TEST_DISABLE_RESTORE=1
(tests/conftest.py) they fail."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest

from worldpm_scaling import names
from worldpm_scaling.config import load_sweep
from worldpm_scaling.launch import launch, launches, sweep_status
from worldpm_scaling.launch.job import read_marker
from worldpm_scaling.plan import plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait(p, pred, timeout_s: float, every_s: float = 2.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        rows = sweep_status(p)
        if pred(rows):
            return rows
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s: {sweep_status(p)}")


def _finished(rows):
    return all(r["state"] == "FINISHED" for r in rows)


def _cell_run(p, run):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(p.sweep.tracking.uri)
    exp = c.get_experiment_by_name(p.sweep.name)
    (r,) = [r for r in c.search_runs([exp.experiment_id]) if r.data.tags.get("cell_id") == run.cell_id]
    assert r.info.status == "FINISHED"
    return c, r


def _steps(p, run) -> list[int]:
    c, r = _cell_run(p, run)
    return [m.step for m in c.get_metric_history(r.info.run_id, names.TRAIN_LOSS)]


_REFERENCE: dict[str, dict[int, float]] = {}


def _reference_losses(run, tmp_path) -> dict[int, float]:
    """train/loss of an uninterrupted run of this cell, here in-process (same threads as the job)."""
    if run.cell_id not in _REFERENCE:
        import torch

        from worldpm_scaling.track import InMemoryTracker
        from worldpm_scaling.train import Trainer

        before = torch.get_num_threads()
        torch.set_num_threads(max(1, run.resources.cpus_per_task))  # as the job does (launch/job.py)
        try:
            tr = InMemoryTracker().start_cell(run.sweep, run.cell_id, name="reference")
            Trainer(dataclasses.replace(run, out_dir=str(tmp_path / "reference")), tr).fit()
        finally:
            torch.set_num_threads(before)
        _REFERENCE[run.cell_id] = dict(tr.history(names.TRAIN_LOSS))
    return _REFERENCE[run.cell_id]


def _assert_resumed(p, run, tmp_path, *, at_least: int) -> int:
    """The cell resumed from a checkpoint at step ≥ `at_least` (> 0), and every logged loss — those
    trained after the restart included — equals the uninterrupted run's. Returns the resume step."""
    c, r = _cell_run(p, run)
    tag = r.data.tags.get("resumed_from_step")
    assert tag is not None, "the cell never resumed from a checkpoint (a restart from step 0?)"
    resumed = int(tag)
    assert resumed >= max(1, at_least), f"resumed from step {resumed}, but a checkpoint at {at_least} existed"
    got = {m.step: m.value for m in c.get_metric_history(r.info.run_id, names.TRAIN_LOSS)}
    want = _reference_losses(run, tmp_path)
    assert sorted(got) == sorted(want), (sorted(set(want) - set(got))[:10], sorted(set(got) - set(want))[:10])
    after = [s for s in got if s > resumed]
    assert after, f"nothing was trained after the resume at step {resumed}"
    diff = max(abs(got[s] - want[s]) for s in got)
    assert diff <= 1e-6, f"losses differ from the uninterrupted run by {diff:.2e}"
    return resumed


def _contiguous(steps: list[int]) -> None:
    assert steps, "no train/loss logged"
    assert len(steps) == len(set(steps)), f"steps logged twice: {sorted(steps)}"
    s = sorted(steps)
    assert s == list(range(s[0], s[-1] + 1)), f"gap in steps: {s}"


def test_local_executor_runs_sweep_without_slurm(make_sweep):
    p = plan(load_sweep(make_sweep(pairs=64)))
    (job,) = launch(p, executor="local")
    job.result()
    rows = _wait(p, _finished, 60)
    (run,) = p.runs
    assert rows[0]["pairs_seen"] == 64 and rows[0]["mlflow"] == "FINISHED"
    _contiguous(_steps(p, run))
    assert launch(p, executor="local") == [], "a finished cell is not launched again"


def test_demo_like_sweep_runs_as_array(slurm_cluster, make_sweep):
    p = plan(load_sweep(make_sweep(pairs=64, models=("tiny-xs",), seeds=(0, 1), cluster="slurm/local-cluster.yaml")))
    jobs = launch(p, executor="slurm")
    assert len(jobs) == 2 and len({j.job_id.split("_")[0] for j in jobs}) == 1, "one array"
    _wait(p, _finished, 420)
    for run in p.runs:
        _contiguous(_steps(p, run))
    rec = [json.loads(x) for x in (Path(p.sweep.output_dir) / "launches.jsonl").read_text().splitlines()]
    assert {r["cell_id"] for r in rec} == {r.cell_id for r in p.runs}


def _running_with_ckpt(p, run, timeout_s=300):
    ck = Path(run.out_dir) / "checkpoints"
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if ck.is_dir() and any(ck.glob("*.pt")) and read_marker(run.out_dir).get("status") == "RUNNING":
            return sorted(ck.glob("*.pt"))
        time.sleep(1)
    raise AssertionError(f"cell never checkpointed while running: {read_marker(run.out_dir)}")


def _ckpt_step(paths) -> int:
    return max(int(c.stem.split("_")[-1]) for c in paths)


def test_usr2_checkpoints_requeues_resumes(slurm_cluster, make_sweep, tmp_path):
    p = plan(load_sweep(make_sweep(pairs=1024, ckpt_steps=4, cluster="slurm/local-cluster.yaml")))
    (job,) = launch(p, executor="slurm")
    (run,) = p.runs
    seen = _ckpt_step(_running_with_ckpt(p, run))
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True, timeout=30)
    _wait(p, _finished, 420)
    _contiguous(_steps(p, run))
    _assert_resumed(p, run, tmp_path, at_least=seen)  # USR2 saved the step it was at: ≥ seen
    logs = "".join(f.read_text() for f in Path(p.sweep.output_dir, "jobs").rglob("*_log.err"))
    assert "SIGUSR2" in logs and "DUE TO JOB REQUEUE" in logs, "the job was not preempted and requeued"


def test_scancel_then_launch_again_resumes(slurm_cluster, make_sweep, tmp_path):
    """scancel sends SIGTERM too: 1,024 steps of 1 pair, so the trainer cannot finish inside the kill grace."""
    p = plan(load_sweep(make_sweep(pairs=1024, ckpt_steps=4, batch=1, cluster="slurm/local-cluster.yaml")))
    (job,) = launch(p, executor="slurm")
    (run,) = p.runs
    first = _running_with_ckpt(p, run)
    subprocess.run(["scancel", job.job_id], check=True, timeout=30)
    _wait(p, lambda rows: rows[0]["state"] == "CANCELLED", 120)
    (job2,) = launch(p, executor="slurm")
    assert job2.job_id != job.job_id and launches(p.sweep.output_dir)[run.cell_id]["job_id"] == job2.job_id
    _wait(p, _finished, 420)
    _contiguous(_steps(p, run))
    _assert_resumed(p, run, tmp_path, at_least=_ckpt_step(first))  # from the last periodic save, not 0


def test_scontrol_requeue_resumes_from_periodic_checkpoint(slurm_cluster, make_sweep, tmp_path):
    """SIGTERM requeue: submitit runs no checkpoint(); only the trainer's periodic saves survive.
    1,024 steps of 1 pair: on a fast CPU 128 steps of 8 finished inside srun's 12 s kill grace after the
    SIGTERM (measured: ~9 s), so the job completed and nothing had to resume."""
    p = plan(load_sweep(make_sweep(pairs=1024, ckpt_steps=4, batch=1, cluster="slurm/local-cluster.yaml")))
    (job,) = launch(p, executor="slurm")
    (run,) = p.runs
    ckpts = _running_with_ckpt(p, run)
    saved = _ckpt_step(ckpts)
    subprocess.run(["scontrol", "requeue", job.job_id], check=True, timeout=30)
    _wait(p, _finished, 420)
    _contiguous(_steps(p, run))
    _assert_resumed(p, run, tmp_path, at_least=saved)
    assert read_marker(run.out_dir)["pairs_seen"] == 1024


def test_two_task_job_trains_data_parallel_with_gloo(slurm_cluster, make_sweep, tmp_path):
    root = Path(__file__).resolve().parents[2]
    prof = tmp_path / "two-task.yaml"
    prof.write_text(
        (root / "slurm" / "local-cluster.yaml")
        .read_text()
        .replace("gpus_per_node: 1", "gpus_per_node: 2\nmin_gpus_per_cell: 2")
    )
    p = plan(load_sweep(make_sweep(pairs=64, cluster=str(prof))))
    (run,) = p.runs
    assert run.resources.gpus_per_node == 2
    (job,) = launch(p, executor="slurm")
    _wait(p, _finished, 420)
    _contiguous(_steps(p, run))
    logs = [f.read_text() for f in sorted(Path(p.sweep.output_dir, "jobs").rglob("*_log.out"))]
    assert len([x for x in logs if x.strip()]) == 2, "one log per task"
    out = subprocess.run(["sacct", "-j", job.job_id, "-n", "-P", "-o", "NTasks"], capture_output=True, text=True).stdout
    assert "2" in out.split()
