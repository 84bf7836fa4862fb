"""A cell on two hosts of a real SLURM cluster (slurm/local-cluster/multihost-start.sh: hosts wpsnode1 and
wpsnode2, each its own network/UTS namespace on a bridge, `network_interface: eth0`): ZeRO-2 on gloo with
its ranks on different hosts, preempted by `scancel --signal=USR2` and by `scontrol requeue` (SIGTERM),
resuming on both hosts each time with the uninterrupted curve to 1e-6 and never shown KILLED or FAILED;
a rank SIGKILLed on the second host ends the job, the cell FAILED naming that rank and host, and a
relaunch resumes it; 2 nodes × 2 tasks train and resume."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.cell_runs import cell_history, losses, wait_for
from worldpm_scaling.config import load_sweep
from worldpm_scaling.launch import launch, sweep_status
from worldpm_scaling.launch.markers import read_marker
from worldpm_scaling.plan import plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _profile(tmp: Path, tasks_per_node: int = 1) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    prof = tmp / f"mh{tasks_per_node}.yaml"
    text = (ROOT / "slurm" / "local-multihost.yaml").read_text()
    if tasks_per_node > 1:
        text = text.replace("gpus_per_node: 1", f"gpus_per_node: {tasks_per_node}").replace(
            "min_gpus_per_cell: 2", f"min_gpus_per_cell: {2 * tasks_per_node}"
        )
    prof.write_text(text)
    return prof


def _sweep(
    make_sweep,
    tmp: Path,
    name: str,
    *,
    tasks_per_node: int = 1,
    pairs: int = 1024,
    ckpt_steps: int = 10000,
    batch: int = 2,
):
    """One cell on both hosts; `batch` pairs a step over all ranks (1 per rank: ~0.1 s steps here, so a
    signal sent after a poll still lands mid-run)."""
    y = make_sweep(
        pairs=pairs, ckpt_steps=ckpt_steps, cluster=str(_profile(tmp, tasks_per_node)), name=name, batch=batch
    )
    y.write_text(y.read_text().replace("zero_stage: 0", "zero_stage: 2"))
    p = plan(load_sweep(y))
    (run,) = p.runs
    assert run.resources.nodes == 2 and run.resources.gpus_per_node == tasks_per_node, run.resources
    assert run.resources.network_interface == "eth0"
    return p, run


class StateWatch:
    """Every state `wps status` shows for the cell while the test runs (polled each second)."""

    def __init__(self, p):
        self.p, self.seen, self._stop = p, [], threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()

    def _poll(self):
        while not self._stop.is_set():
            try:
                s = sweep_status(self.p)[0]["state"]
                if not self.seen or self.seen[-1] != s:
                    self.seen.append(s)
            except Exception:  # noqa: BLE001 — a status read racing a write is retried next second
                pass
            time.sleep(1)

    def stop(self):
        self._stop.set()
        self._t.join(10)
        return self.seen


def _logs(p) -> str:
    return "\n".join(f.read_text(errors="replace") for f in Path(p.sweep.output_dir, "jobs").rglob("*_log.err"))


@pytest.fixture
def on_multihost(slurm_multihost, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_multihost.conf)  # submitit's sbatch and sacct read os.environ
    # the hosts' eth0 lives in their namespaces; this (submitting) namespace may have none, as a login node
    monkeypatch.setenv("WPS_SKIP_INTERFACE_CHECK", "1")
    return slurm_multihost


@pytest.mark.timeout(1800)
def test_two_host_cell_preempted_by_usr2_and_requeued_resumes_with_the_uninterrupted_curve(
    on_multihost, make_sweep, tmp_path
):
    mh = on_multihost
    p, run = _sweep(make_sweep, tmp_path / "pre", "mh-preempt")
    (job,) = launch(p, executor="slurm")
    watch = StateWatch(p)
    try:
        wait_for(lambda: len(cell_history(p, run)[1]) >= 6, 600, "6 logged steps", lambda: _logs(p)[-3000:])
        mh.slurm("scancel", "--signal=USR2", job.job_id)
        wait_for(
            lambda: read_marker(run.out_dir).get("status") == "REQUEUED",
            300,
            "the USR2 save + requeue",
            lambda: _logs(p)[-3000:],
        )
        first = read_marker(run.out_dir)["steps"]
        wait_for(
            lambda: len(cell_history(p, run)[1]) >= first + 6,
            600,
            "6 steps after the first resume",
            lambda: _logs(p)[-3000:],
        )
        mh.slurm("scontrol", "requeue", job.job_id)  # SIGTERM to every task, then SLURM requeues the job
        wait_for(
            lambda: (
                read_marker(run.out_dir).get("status") in ("PREEMPTED", "REQUEUED")
                and read_marker(run.out_dir).get("steps", first) > first
            ),
            300,
            "the SIGTERM save",
            lambda: _logs(p)[-3000:],
        )
        second = read_marker(run.out_dir)["steps"]
        wait_for(lambda: cell_history(p, run)[0] == "FINISHED", 900, "the cell to finish", lambda: _logs(p)[-3000:])
    finally:
        seen = watch.stop()
    assert not {"KILLED", "FAILED", "CANCELLED"} & set(seen), seen
    assert "REQUEUED" in seen, seen
    status, raw, tags = cell_history(p, run)
    hist = losses(raw)
    assert tags["hosts"] == ",".join(mh.nodes) and tags["nodes"] == "2", tags  # rank 0 on wpsnode1, rank 1 on wpsnode2
    assert tags.get("resumed_from_step") == str(second), (tags, first, second)
    assert 1 <= first < second < 512
    text = _logs(p)
    assert "caught SIGUSR2" in text and "caught SIGTERM" in text
    # the reference: the same cell uninterrupted, on the same two hosts
    ref_p, ref_run = _sweep(make_sweep, tmp_path / "ref", "mh-ref")
    launch(ref_p, executor="slurm")
    wait_for(lambda: cell_history(ref_p, ref_run)[0] == "FINISHED", 900, "the reference", lambda: _logs(ref_p)[-3000:])
    ref = losses(cell_history(ref_p, ref_run)[1])
    assert sorted(hist) == sorted(ref) == list(range(1, 513))
    diff = max(abs(hist[s] - ref[s]) for s in hist)
    assert diff <= 1e-6, diff
    print(
        f"two hosts: USR2 saved step {first}, SIGTERM saved step {second}; max |Δloss| vs uninterrupted {diff:.1e}; "
        f"states shown {seen}"
    )


def _rank_pid(mh, node: str) -> int | None:
    for pid in mh.node_pids(node):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "submitit.core._submit" in cmd and "srun" not in cmd.split()[0]:
            return pid
    return None


@pytest.mark.timeout(1500)
def test_a_rank_killed_on_the_second_host_fails_the_cell_naming_it_and_a_relaunch_resumes(
    on_multihost, make_sweep, tmp_path
):
    import os
    import signal

    mh = on_multihost
    p, run = _sweep(make_sweep, tmp_path / "kill", "mh-kill", ckpt_steps=4)  # 512 steps
    (job,) = launch(p, executor="slurm")
    wait_for(lambda: len(cell_history(p, run)[1]) >= 10, 600, "10 logged steps", lambda: _logs(p)[-3000:])
    pid = _rank_pid(mh, mh.nodes[1])
    assert pid is not None, mh.node_pids(mh.nodes[1])
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: read_marker(run.out_dir).get("status") == "FAILED", 120, "the FAILED marker", lambda: _logs(p)[-3000:]
    )
    mh.wait(job.job_id, timeout=120)
    ended = time.monotonic() - killed_at
    assert ended < 120, ended
    err = read_marker(run.out_dir)["error"]
    assert f"rank 1 on host {mh.nodes[1]}" in err, err
    assert sweep_status(p)[0]["state"] == "FAILED"
    (job2,) = launch(p, executor="slurm")  # the FAILED cell is submitted again and resumes
    wait_for(
        lambda: cell_history(p, run)[0] == "FINISHED", 900, "the relaunched cell to finish", lambda: _logs(p)[-3000:]
    )
    assert job2.job_id != job.job_id
    resumed = int(cell_history(p, run)[2]["resumed_from_step"])
    assert resumed >= 8 and resumed % 4 == 0, resumed
    print(
        f"SIGKILL of rank 1 on {mh.nodes[1]}: job ended in {ended:.0f} s; relaunch resumed from step {resumed}; "
        f"marker: {err[:200]}"
    )


@pytest.mark.timeout(1500)
def test_two_nodes_of_two_tasks_train_and_resume(on_multihost, make_sweep, tmp_path):
    mh = on_multihost
    p, run = _sweep(make_sweep, tmp_path / "2x2", "mh-2x2", tasks_per_node=2, pairs=512, batch=4)
    (job,) = launch(p, executor="slurm")
    wait_for(lambda: len(cell_history(p, run)[1]) >= 5, 600, "5 logged steps", lambda: _logs(p)[-3000:])
    mh.slurm("scancel", "--signal=USR2", job.job_id)
    wait_for(lambda: cell_history(p, run)[0] == "FINISHED", 900, "the cell to finish", lambda: _logs(p)[-3000:])
    _, hist, tags = cell_history(p, run)
    assert tags["world_size"] == "4" and tags["hosts"] == ",".join(h for h in mh.nodes for _ in range(2)), tags
    assert int(tags["resumed_from_step"]) >= 5 and sorted(hist) == list(range(1, 129))
