"""Rank layout and network checks of a cell (launch/ranks.py), the one-writer markers (launch/markers.py)
and how `wps status` reads a preempted cell (launch/status.py): pure functions, checked here."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from worldpm_scaling.launch import markers
from worldpm_scaling.launch.ranks import (
    NetworkSetupError,
    RankSetupError,
    check_network,
    check_profile_interface,
    expand_nodelist,
    rank_env,
)
from worldpm_scaling.launch.status import TERMINAL, cell_state

SRUN_2x1 = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
    "SLURM_STEP_NODELIST": "wpsnode[1-2]",
    "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
    "SLURM_NTASKS": "2",
}


def test_nodelists_expand_in_order():
    assert expand_nodelist("wpsnode[1-2]") == ["wpsnode1", "wpsnode2"]
    assert expand_nodelist("gpu[007-009,12],login1") == ["gpu007", "gpu008", "gpu009", "gpu12", "login1"]
    assert expand_nodelist("a1") == ["a1"]


def test_an_srun_step_of_two_tasks_is_one_two_rank_group():
    """`srun -N2 wps train`: SLURM ids only (no RANK) — before, two unrelated world-1 trainings."""
    r = rank_env(SRUN_2x1)
    assert (r.rank, r.world, r.local_rank, r.local_world, r.source) == (1, 2, 0, 1, "srun")
    assert r.master_addr == "wpsnode1" and r.master_port == 20000 + 4242 % 40000
    assert r.env()["RANK"] == "1" and r.env()["WORLD_SIZE"] == "2" and r.env()["MASTER_ADDR"] == "wpsnode1"


def test_a_preset_master_port_is_kept_not_an_error():
    r = rank_env({**SRUN_2x1, "MASTER_PORT": "29555"})
    assert r.master_port == 29555


def test_a_batch_script_without_srun_is_one_process():
    env = {k: v for k, v in SRUN_2x1.items() if k != "SLURM_STEP_NUM_TASKS"}  # sbatch's own shell
    assert rank_env(env).world == 1


def test_torchrun_variables_win_and_must_be_complete():
    r = rank_env(
        {**SRUN_2x1, "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    )
    assert (r.rank, r.world, r.local_rank, r.source) == (3, 4, 1, "torchrun")
    with pytest.raises(RankSetupError, match="MASTER_ADDR"):
        rank_env({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1"})
    with pytest.raises(RankSetupError, match="outside WORLD_SIZE"):
        rank_env({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"})


def _loopback(name):
    return ["127.0.1.1"]


def test_a_multi_host_group_on_a_loopback_hostname_stops_naming_the_field():
    r = rank_env(SRUN_2x1)

    def debian_hosts(name):  # its own name on Debian's 127.0.1.1 line, the other host's real address
        return ["127.0.1.1"] if name == "wpsnode2" else ["10.213.7.11"]

    with pytest.raises(NetworkSetupError, match="cluster.network_interface") as e:
        check_network(r, None, interfaces=["lo", "eth0"], resolve=debian_hosts, hostname="wpsnode2")
    with pytest.raises(NetworkSetupError, match="cluster.network_interface"):  # rank 0's host, where the
        check_network(
            rank_env({**SRUN_2x1, "SLURM_PROCID": "0"}),
            None,
            interfaces=["lo"],  # master is itself
            resolve=lambda n: ["127.0.1.1"],
            hostname="wpsnode1",
        )
    assert "127.0.1.1" in str(e.value) and "wpsnode2" in str(e.value)
    check_network(r, "eth0", interfaces=["lo", "eth0"], resolve=_loopback, hostname="wpsnode2")  # named: fine
    check_network(r, None, interfaces=["lo"], resolve=lambda n: ["10.0.0.2"], hostname="wpsnode2")  # routable
    one_host = rank_env({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "5"})
    check_network(one_host, None, interfaces=["lo"], resolve=_loopback, hostname="box")  # all ranks on this host
    # a 2-task job on one node whose name resolves to loopback (the one-host CI cluster's `vm`): fine
    one_node = rank_env({**SRUN_2x1, "SLURM_STEP_NODELIST": "vm", "SLURM_PROCID": "0"})
    assert one_node.nodes == 1
    check_network(one_node, None, interfaces=["lo"], resolve=_loopback, hostname="vm")
    same_host = rank_env({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "vm", "MASTER_PORT": "5"})
    check_network(same_host, None, interfaces=["lo"], resolve=_loopback, hostname="vm")  # MASTER_ADDR → loopback


def test_an_interface_this_host_lacks_is_named():
    with pytest.raises(NetworkSetupError, match="'ib0' does not exist on host n1"):
        check_network(rank_env({}), "ib0", interfaces=["lo", "eth0"], resolve=_loopback, hostname="n1")
    prof = SimpleNamespace(name="p", network_interface="nosuch9")
    with pytest.raises(NetworkSetupError, match="cluster.network_interface 'nosuch9'"):
        check_profile_interface(prof, interfaces=["lo"], environ={})
    check_profile_interface(prof, interfaces=["lo"], environ={"WPS_SKIP_INTERFACE_CHECK": "1"})
    check_profile_interface(SimpleNamespace(name="p", network_interface="lo"), environ={})


def _start_rank(args):
    out, rank, n = args
    for _ in range(n):
        markers.write_rank_record(out, rank, status="STARTING", host="h", pid=os.getpid())
        # only rank 0 writes status.json in a job; here every rank does, to load the atomic write itself
        markers.write_marker(out, "RUNNING", world=4)
    return True


def test_fifty_simultaneous_starts_of_four_ranks_write_their_markers(tmp_path):
    """Finding #2: every rank wrote status.json through one shared status.tmp; the loser died (~3%)."""
    ctx = mp.get_context("fork")
    for i in range(50):
        out = str(tmp_path / f"c{i}")
        with ctx.Pool(4) as pool:
            assert all(pool.map(_start_rank, [(out, r, 3) for r in range(4)]))
        assert markers.read_marker(out)["status"] == "RUNNING"
        assert sorted(markers.read_rank_records(out)) == [0, 1, 2, 3]
        assert not list(Path(out).rglob("*.tmp"))


def test_a_lost_peer_is_named_by_rank_host_and_address():
    recs = {
        0: {"rank": 0, "host": "n1", "address": "10.213.7.2", "pid": 1},
        1: {"rank": 1, "host": "n2", "address": "10.213.7.3", "pid": 77},
    }
    err = "RuntimeError: [gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.213.7.3]:40321"
    assert markers.describe_lost_rank(err, recs, me=0) == "rank 1 on host n2 (10.213.7.3, pid 77)"
    assert markers.describe_lost_rank("something else", recs, me=0) is None


@pytest.mark.parametrize(
    "marker,sched,shown",
    [
        ("PREEMPTED", "PENDING", "REQUEUED"),
        ("PREEMPTED", "RUNNING", "REQUEUED"),
        ("REQUEUED", "REQUEUED", "REQUEUED"),
        ("PREEMPTED", "CANCELLED by 0", "CANCELLED"),
        ("REQUEUED", "CANCELLED", "CANCELLED"),
        ("PREEMPTED", "TIMEOUT", "PREEMPTED"),
        ("PREEMPTED", "EXITED", "PREEMPTED"),
        ("RUNNING", "CANCELLED by 0", "CANCELLED"),
        ("RUNNING", "NODE_FAIL", "NODE_FAIL"),
        ("RUNNING", "EXITED", "FAILED"),
        ("FINISHED", None, "FINISHED"),
    ],
)
def test_a_preempted_cell_is_requeued_while_its_job_lives_never_killed(marker, sched, shown):
    assert cell_state(marker, sched) == shown
    assert (shown in TERMINAL) == (shown not in ("REQUEUED", "RUNNING"))


def test_the_first_rank_of_every_other_node_samples_its_node_into_rank_zeros_run(monkeypatch):
    """System metrics from every node (before: rank 0's node only), over HTTP into rank 0's run, keyed by host."""
    from worldpm_scaling.launch import cell
    from worldpm_scaling.track import system_metrics

    started = []
    monkeypatch.setattr(
        system_metrics,
        "start_system_metrics",
        lambda run, *, interval_s, node_id: started.append((run.run_id, node_id)) or "mon",
    )
    hosts = ["n1", "n1", "n2", "n2"]

    def run(uri="http://10.0.0.1:5000", backend="mlflow", on=True):
        return SimpleNamespace(
            tracking=SimpleNamespace(uri=uri, backend=backend, system_metrics=on, system_metrics_interval_s=5.0)
        )

    def ranks(r):
        return rank_env({"RANK": str(r), "WORLD_SIZE": "4", "MASTER_ADDR": "n1", "MASTER_PORT": "1"})

    got = {r: cell._node_system_metrics(run(), ranks(r), hosts, "RUN1") for r in range(4)}
    assert got == {0: None, 1: None, 2: "mon", 3: None} and started == [("RUN1", "n2")]
    assert cell._node_system_metrics(run(uri="sqlite:///x.db"), ranks(2), hosts, "RUN1") is None  # no store of its own
    assert cell._node_system_metrics(run(on=False), ranks(2), hosts, "RUN1") is None


@pytest.mark.parametrize("dry", [True, False])
def test_wps_launch_refuses_a_profile_interface_this_host_lacks(tmp_path, capsys, dry):
    from worldpm_scaling.cli import main

    root = Path(__file__).resolve().parents[2]
    prof = tmp_path / "p.yaml"
    prof.write_text((root / "slurm" / "local-cluster.yaml").read_text() + "network_interface: nosuch9\n")
    y = tmp_path / "s.yaml"
    y.write_text(
        f"name: nif\nmodels: [tiny-xs]\ndata: {{source: x.parquet, pairs: 256, tokens_per_pair: 100}}\n"
        f"milestones: {{start_log2: 6}}\ntrain: {{global_batch_pairs: 32, micro_batch_pairs: 16}}\n"
        f"tracking: {{backend: none}}\nout_dir: {tmp_path / 'out'}\n"
    )
    rc = main(["launch", str(y), "--cluster", str(prof), *(["--dry-run"] if dry else [])])
    err = capsys.readouterr().err
    assert rc == 2 and "cluster.network_interface 'nosuch9'" in err and "does not exist on this host" in err, err
    assert not (tmp_path / "out").exists()  # nothing submitted, rendered or written
