"""A cell on several ranks through the one owner of its lifecycle (launch/cell.py), with real gloo ranks
of `wps train` on this host: the checkpoint clock is one decision (rank 0's), rank 0 picks the step
every rank resumes from, a rank that cannot load it stops all ranks with one named error, and an srun
step's SLURM ids make one multi-rank training (not several world-1 ones)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_ranks, subprocess_env
from worldpm_scaling.track.server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WPS = [sys.executable, "-m", "worldpm_scaling"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cellranks") / "synth"
    r = subprocess.run(
        [
            *WPS,
            "data",
            "synth",
            "--pairs",
            "400",
            "--seed",
            "2",
            "--eval-pairs-per-set",
            "8",
            "--vocab-size",
            "512",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    return out


def sweep(data: Path, tmp: Path, **train) -> Path:
    spec = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    spec.update(name="ranks", models=["tiny-xs"], seeds=[0], out_dir=str(tmp / "out"))
    spec.pop("cluster")
    spec["data"].update(
        source=str(data / "train.parquet"),
        tokenizer=str(data / "tokenizer.json"),
        pairs=256,
        tokens_per_pair=None,
        stats_file=str(data / "stats.json"),
    )
    spec["milestones"] = {"start_log2": 7}
    spec["eval"] = {"dir": str(data / "evals"), "max_pairs_per_set": 4}
    spec["train"].update(global_batch_pairs=8, micro_batch_pairs=4, zero_stage=0, **train)
    spec["tracking"] = {"backend": "spool", "system_metrics": False}
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_checkpoint_clock_is_rank_zeros_so_saves_follow_the_interval(data, tmp_path):
    """Finding #3: rank ≥ 1 never restarted its clock, so after one interval every step was a save
    (102 saves in 128 steps). Interval 0.3 s here (0.005 min) over 32 steps."""
    y = sweep(data, tmp_path, checkpoint_every_steps=None, checkpoint_every_minutes=0.005, keep_checkpoints=2)
    t0 = time.monotonic()
    ranks = run_ranks([*WPS, "train", str(y), "--cell", "0"], world=2, cwd=tmp_path, timeout=400)
    elapsed = time.monotonic() - t0
    assert all(rc == 0 for rc, _ in ranks), ranks[0][1][-3000:] + ranks[1][1][-3000:]
    log0 = ranks[0][1]
    saves = re.findall(r"rank 0: checkpoint of step (\d+) written", log0)
    steps = 32
    assert "FINISHED: 32 steps" in log0
    # a save every 0.3 s of a run of `elapsed` seconds, plus the final one — never one per step
    assert 2 <= len(saves) <= min(steps // 2, elapsed / 0.3 + 2), (len(saves), elapsed, saves)
    saves1 = re.findall(r"rank 1: checkpoint of step (\d+) written", ranks[1][1])
    assert saves1 == saves  # the same decision on both ranks


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    """A 2-rank cell trained to its end, checkpoints at steps 24, 28 and 32 kept."""
    tmp = tmp_path_factory.mktemp("restore")
    y = sweep(data, tmp, checkpoint_every_steps=4, keep_checkpoints=3)
    ranks = run_ranks([*WPS, "train", str(y), "--cell", "0"], world=2, cwd=tmp, timeout=400)
    assert all(rc == 0 for rc, _ in ranks), ranks[0][1][-3000:]
    return y


def test_every_rank_resumes_from_rank_zeros_step_whatever_its_own_listing(trained):
    """Rank 1 shown a stale listing (its newest checkpoint hidden, as an NFS attribute cache can) still
    loads rank 0's step: before, it resumed from step 28 while rank 0 resumed from 32."""
    ranks = run_ranks(
        [*WPS, "train", str(trained), "--cell", "0"],
        world=2,
        cwd=trained.parent,
        timeout=300,
        WPS_FAULT_HIDE="step_00000032.pt",
        WPS_FAULT_RANK="1",
    )
    for rc, log in ranks:
        assert rc == 0, log[-3000:]
        assert "resumed from checkpoint step 32" in log or "resumed from" in log and "step 32" in log, log[-2000:]
    assert "FINISHED: 32 steps" in ranks[0][1]


def test_a_rank_that_cannot_load_the_chosen_step_stops_every_rank_with_one_error(trained):
    ranks = run_ranks(
        [*WPS, "train", str(trained), "--cell", "0"],
        world=2,
        cwd=trained.parent,
        timeout=300,
        WPS_FAULT="ckpt.load",
        WPS_FAULT_ACTION="raise",
        WPS_FAULT_RANK="1",
    )
    for rc, log in ranks:
        assert rc == 1, log[-3000:]
        assert "cannot resume from step_00000032.pt (chosen by rank 0): rank 1: injected fault at ckpt.load" in log, (
            log[-3000:]
        )
    marker = (trained.parent / "out").rglob("status.json")
    text = next(marker).read_text()
    assert '"FAILED"' in text and "rank 1: injected fault" in text


def test_srun_ids_without_rank_variables_make_one_two_rank_training(data, tmp_path):
    """`srun -N2 wps train`: each task sees only SLURM's ids. Before, each trained the cell alone as a world
    of one (the second refused by the cell lock, or both writing the same checkpoints)."""
    y = sweep(data, tmp_path, checkpoint_every_steps=16)
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = subprocess_env(
            SLURM_JOB_ID="777",
            SLURM_STEP_NUM_TASKS="2",
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank),
            SLURM_STEP_NODELIST="localhost",
            SLURM_STEP_TASKS_PER_NODE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )  # a pre-set MASTER_PORT is kept
        procs.append(
            subprocess.Popen(
                [*WPS, "train", str(y), "--cell", "0"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "2 rank(s)" in logs[0] and "FINISHED: 32 steps, 256 pairs" in logs[0]
    (meta,) = list((tmp_path / "out").rglob("cell-*.meta.json"))
    assert '"world_size": "2"' in meta.read_text()


@pytest.mark.parametrize("sig,status", [("SIGTERM", "PREEMPTED"), ("SIGUSR2", "REQUEUED")])
def test_a_signal_before_training_starts_is_kept_and_acted_on(data, tmp_path, monkeypatch, sig, status):
    """Finding #11: a USR2 before the per-rank handlers existed, or a SIGTERM in a one-rank job, left the
    marker FAILED/RUNNING though SLURM requeued the job. Here the signal lands while the data opens."""
    import os
    import signal

    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.launch import cell
    from worldpm_scaling.launch.markers import read_marker
    from worldpm_scaling.plan import plan, select

    run = select(plan(load_sweep(sweep(data, tmp_path, checkpoint_every_steps=4))), "0")
    for k in [k for k in os.environ if k.startswith("SLURM_") or k in ("RANK", "WORLD_SIZE")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    opened = cell._open_data

    def opening(*a, **k):
        os.kill(os.getpid(), getattr(signal, sig))
        return opened(*a, **k)

    calls = []

    def check_call(argv, **kw):  # the SLURM boundary: record the exact call instead of requeueing
        calls.append(argv)
        return 0

    monkeypatch.setattr(cell, "_open_data", opening)
    monkeypatch.setattr(cell.subprocess, "check_call", check_call)
    before = signal.getsignal(signal.SIGTERM)
    if status == "REQUEUED":
        with pytest.raises(cell.Requeued):
            cell.run_cell(run)
        assert calls == [["scontrol", "requeue", "99"]]
    else:
        out = cell.run_cell(run)
        assert out.status == "PREEMPTED" and out.result is None and not out.trained_steps
        assert calls == []
    m = read_marker(run.out_dir)
    assert m["status"] == status and m["before_start"] is True, m
    assert not (Path(run.out_dir) / "checkpoints").exists() or not any((Path(run.out_dir) / "checkpoints").iterdir())
    assert signal.getsignal(signal.SIGTERM) == before  # the cell's handlers are removed on the way out
