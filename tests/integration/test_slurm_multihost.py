"""The two-host SLURM cluster on one box (slurm/local-cluster/multihost-start.sh, docs/multinode.md):
one job spans both hosts, its tasks reach a server on the bridge and each other over `eth0`, and
stopping the cluster leaves nothing behind (and leaves the one-host cluster alone)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from worldpm_scaling.track.server import free_port

ROOT = Path(__file__).resolve().parents[2]

ALL_REDUCE = """\
import os, socket, torch, torch.distributed as dist
rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
dist.init_process_group("gloo", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                        rank=rank, world_size=world)
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
hosts = [None] * world
dist.all_gather_object(hosts, socket.gethostname())
print(f"rank {rank} on {socket.gethostname()}: sum={t.item():g} hosts={','.join(hosts)}", flush=True)
dist.destroy_process_group()
"""


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else "(no output file)"


def test_one_job_runs_on_both_hosts_and_reaches_the_bridge(slurm_multihost, tmp_path):
    """`sbatch -N2` + `srun`: one task per host, each with its hostname and eth0 address, the project's
    venv and tree (same filesystem), and a server listening on the bridge address in the root namespace."""
    mh = slurm_multihost
    www = tmp_path / "www"
    www.mkdir()
    token = uuid.uuid4().hex
    (www / "token.txt").write_text(token)
    port = free_port(mh.bridge_ip)
    srv = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", mh.bridge_ip, str(port), "--directory", str(www)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex((mh.bridge_ip, port)) == 0:
                    break
            time.sleep(0.1)
        probe = (
            f"import urllib.request, worldpm_scaling, pathlib; "
            f"print(urllib.request.urlopen('http://{mh.bridge_ip}:{port}/token.txt', timeout=20).read().decode(), "
            f"pathlib.Path(worldpm_scaling.__file__).parents[1])"
        )
        (tmp_path / "probe.py").write_text(probe)
        wrap = (
            f'srun bash -c \'echo "$(hostname) $(ip -4 -o addr show eth0 | awk "{{print \\$4}}") '
            f"$({sys.executable} probe.py)\"'"
        )
        out = tmp_path / "out.txt"
        job = mh.sbatch("-N2", "--ntasks-per-node=1", "-o", str(out), "--wrap", wrap, cwd=tmp_path)
        state = mh.wait(job, timeout=180)
    finally:
        srv.kill()
        srv.wait()
    assert state == "COMPLETED", f"{state}\n{_read(out)}\n{mh.log_tail()}"
    got = sorted(line for line in out.read_text().splitlines() if line.startswith(mh.nodes))
    assert got == [f"{n} {mh.node_ips[n]}/24 {token} {ROOT}" for n in mh.nodes], _read(out)
    # node_exec sees what a job there sees: the host's name, its /etc/hosts, its eth0.
    first, second = mh.nodes
    r = mh.node_exec(second, ["bash", "-c", f"hostname; getent hosts {first}; ip -4 -o addr show eth0 | wc -l"])
    assert r.returncode == 0 and r.stdout.split() == [second, mh.node_ips[first], first, "1"], r


def test_gloo_all_reduce_crosses_hosts(slurm_multihost, tmp_path):
    """Two tasks on two hosts form one gloo group over eth0 (GLOO_SOCKET_IFNAME, MASTER_ADDR = first node)."""
    mh = slurm_multihost
    (tmp_path / "all_reduce.py").write_text(ALL_REDUCE)
    (tmp_path / "job.sh").write_text(f"""#!/bin/bash
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -1) MASTER_PORT=29517
export GLOO_SOCKET_IFNAME=eth0 OMP_NUM_THREADS=1
srun --kill-on-bad-exit=1 {sys.executable} all_reduce.py
""")
    out = tmp_path / "out.txt"
    job = mh.sbatch("-N2", "--ntasks-per-node=1", "--time=5", "-o", str(out), "job.sh", cwd=tmp_path)
    state = mh.wait(job, timeout=300)
    assert state == "COMPLETED", f"{state}\n{_read(out)}\n{mh.log_tail()}"
    got = sorted(line for line in out.read_text().splitlines() if line.startswith("rank "))
    hosts = ",".join(mh.nodes)
    assert got == [f"rank {r} on {n}: sum=3 hosts={hosts}" for r, n in enumerate(mh.nodes)], _read(out)


def _onehost_daemons() -> dict[str, int]:
    """Live daemons of the one-host cluster (slurm/local-cluster/start.sh), if it runs."""
    run = Path(os.environ.get("WPS_SLURM_DIR", "/tmp/wps-slurm")) / "run"
    pids = {}
    for f in run.glob("*.pid") if run.is_dir() else ():
        pid = f.read_text().strip()
        if pid.isdigit() and Path("/proc", pid).exists():
            pids[f.stem] = int(pid)
    return pids


def test_stop_ends_jobs_and_removes_namespaces_then_starts_again(slurm_multihost, tmp_path):
    """Stop with a job running on both hosts: its tasks, the daemons, namespaces, bridge and veths are gone,
    the one-host cluster's daemons are untouched; then the cluster starts again for later tests."""
    mh = slurm_multihost
    if not mh.ours:
        pytest.skip("the two-host cluster was started outside this session; not stopping it")
    job = mh.sbatch(
        "-N2", "--ntasks-per-node=1", "-o", str(tmp_path / "out.txt"), "--wrap", "srun sleep 600", cwd=tmp_path
    )
    mh.wait(job, states=("RUNNING",), timeout=120)
    tasks: dict[str, list[int]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(tasks) < len(mh.nodes):
        for n in mh.nodes:
            found = [p for p in mh.node_pids(n) if _cmdline(p).endswith("sleep 600")]
            if found:
                tasks[n] = found
        time.sleep(0.5)
    assert sorted(tasks) == sorted(mh.nodes), f"job tasks not seen on every host: {tasks}"
    inside = {p: _cmdline(p) for n in mh.netns for p in mh.node_pids(n)}  # daemons, slurmstepd, tasks
    onehost = _onehost_daemons()
    try:
        mh.stop()  # raises if a namespace, link or daemon of ours is left
        alive = {p: cmd for p, cmd in inside.items() if _cmdline(p) == cmd and cmd}
        assert not alive, f"processes of the hosts outlived the stop: {alive}"
        assert _onehost_daemons() == onehost, "stopping the two-host cluster touched the one-host cluster"
    finally:
        mh.start()
    idle = mh.slurm("sinfo", "-h", "-N", "-o", "%N %T").stdout.split("\n")
    assert sorted(line.strip() for line in idle if line.strip()) == [f"{n} idle" for n in mh.nodes]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
