"""MlflowTracker against a real `mlflow server`: run layout, secrets, resume without duplicates."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.fixtures.mlflow_server import REPO_ROOT, point_value, unique_name, worker_cmd
from worldpm_scaling.config import TrackingSpec
from worldpm_scaling.track import open_tracker, query
from worldpm_scaling.track.mlflow_tracker import MlflowRun

pytestmark = pytest.mark.integration


def assert_exact(uri: str, run_id: str, steps: int, metrics: int) -> None:
    """Every metric m<i> has each step 1..steps exactly once, with the value the worker logged."""
    keys = [f"m{i}" for i in range(metrics)]
    hist = query.histories(uri, [(run_id, k) for k in keys])
    for i, k in enumerate(keys):
        got = [s for s, _v, _t in hist[(run_id, k)]]
        assert got == list(range(1, steps + 1)), (
            k,
            len(got),
            sorted(set(range(1, steps + 1)) - set(got))[:10],
            len(got) - len(set(got)),
        )
        assert all(v == point_value(s, i) for s, v, _t in hist[(run_id, k)]), k


def test_sweep_parent_and_cell_children(mlflow_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("WPS_TEST_API_TOKEN", "tok-very-secret-123")
    sweep = unique_name("layout")
    tr = open_tracker(TrackingSpec(uri=mlflow_server.url, flush_every_s=0.5), spool_dir=tmp_path / "spool")
    parent = tr.start_sweep(sweep, params={"description": "layout test"})
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text("name: x\n")
    parent.log_artifact(str(spec_file))
    params = {
        "model.name": "tiny-xs",
        "train.lr": 0.001,
        "tracking.uri": "postgresql://u:hunter2@db/mlflow",
        "db.password": "hunter2",
        "leak": "tok-very-secret-123",
        "long": "x" * 7000,
    }
    cells = []
    for cid in ("c0", "c1"):
        run = tr.start_cell(
            sweep, cid, name=f"tiny-{cid}", parent_run_id=parent.run_id, params=params, tags={"extra": "yes"}
        )
        run.log_metrics({"train/loss": 0.7, "train/acc": 0.5}, step=1)
        run.log_metrics({"train/loss": 0.6, "train/acc": 0.6}, step=2)
        run.finish("FINISHED")
        cells.append(run.run_id)
    runs = query.sweep_runs(mlflow_server.url, sweep)
    assert [r.role for r in runs] == ["sweep", "cell", "cell"]
    p, c0, c1 = runs
    assert p.run_id == parent.run_id and p.parent_run_id is None
    assert {c0.run_id, c1.run_id} == set(cells)
    for c, cid in ((c0, "c0"), (c1, "c1")):
        assert c.name == f"tiny-{cid}" and c.cell_id == cid and c.parent_run_id == parent.run_id
        assert c.status == "FINISHED" and c.last_step == 2 and c.metrics["train/loss"] == pytest.approx(0.6)
        assert c.tags["slurm_job_id"] == "4242" and c.tags["host"] and c.tags["extra"] == "yes"
        assert c.tags["git_commit"]  # the tests run inside the repository
        assert c.params["model.name"] == "tiny-xs" and c.params["train.lr"] == "0.001"
        assert len(c.params["long"]) == 6000
        # secrets: never a param, tag or artifact
        assert "db.password" not in c.params and "leak" not in c.params
        blob = json.dumps([c.params, c.tags])
        assert "hunter2" not in blob and "tok-very-secret-123" not in blob
        assert c.params["tracking.uri"] == "postgresql://u:***@db/mlflow"
    arts = tr.store.client.list_artifacts(parent.run_id)
    assert [a.path for a in arts] == ["sweep.yaml"]
    url = query.experiment_url(mlflow_server.url, sweep)
    assert url.startswith(mlflow_server.url) and url.endswith("/runs")


def test_reattach_by_cell_id_never_logs_a_step_twice(mlflow_server, tmp_path):
    sweep = unique_name("resume")
    spec = TrackingSpec(uri=mlflow_server.url, flush_every_s=0.5)
    tr = open_tracker(spec, spool_dir=tmp_path / "spool")
    parent = tr.start_sweep(sweep)
    a = tr.start_cell(sweep, "cell", name="cell", parent_run_id=parent.run_id, params={"lr": 1})
    for s in range(1, 101):
        a.log_metrics({f"m{i}": point_value(s, i) for i in range(3)}, step=s)
    a.finish("KILLED")
    assert query.find_cell_runs(mlflow_server.url, sweep)["cell"].status == "KILLED"
    # A new process (new tracker) resumes from an older checkpoint: steps 61..100 are dropped.
    tr2 = open_tracker(spec, spool_dir=tmp_path / "spool2")
    b = tr2.start_cell(sweep, "cell", name="cell", parent_run_id=parent.run_id, params={"lr": 1, "new": 2})
    assert b.run_id == a.run_id and b.last_step() == 100
    assert query.find_cell_runs(mlflow_server.url, sweep)["cell"].status == "RUNNING"
    for s in range(61, 151):
        b.log_metrics({f"m{i}": point_value(s, i) for i in range(3)}, step=s)
    b.log_metrics({"m0": -1.0}, step=150)  # the same step again: dropped
    b.finish("FINISHED")
    assert_exact(mlflow_server.url, a.run_id, 150, 3)
    info = query.find_cell_runs(mlflow_server.url, sweep)["cell"]
    assert info.status == "FINISHED" and info.params == {"lr": "1", "new": "2"}
    assert len(query.sweep_runs(mlflow_server.url, sweep)) == 2


def test_sigkilled_job_resumes_into_the_same_run(mlflow_server, tmp_path):
    sweep = unique_name("sigkill")
    ckpt = tmp_path / "ckpt"
    kw = dict(
        uri=mlflow_server.url,
        sweep=sweep,
        cell="k",
        steps=600,
        metrics=10,
        spool=tmp_path / "spool",
        checkpoint=ckpt,
        ckpt_every=50,
        sleep=0.01,
        flush_every_s=1.0,
    )
    log = open(tmp_path / "w1.log", "w")
    p = subprocess.Popen(worker_cmd(**kw), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (ckpt.exists() and int(ckpt.read_text()) >= 200):
            assert p.poll() is None, (tmp_path / "w1.log").read_text()
            time.sleep(0.05)
        assert ckpt.exists(), "worker never checkpointed"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    killed_at = int(ckpt.read_text())
    assert killed_at < 600
    first = query.find_cell_runs(mlflow_server.url, sweep)["k"]
    assert first.status == "RUNNING"  # SIGKILL: nobody could say otherwise
    assert first.last_step >= killed_at  # flushed before every checkpoint
    r = subprocess.run(worker_cmd(**kw), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    start = json.loads(r.stdout.splitlines()[0])
    assert start["run_id"] == first.run_id and start["resume_from"] == killed_at
    runs = query.find_cell_runs(mlflow_server.url, sweep)
    assert len(query.sweep_runs(mlflow_server.url, sweep, include_parent=False)) == 1
    assert runs["k"].status == "FINISHED"
    assert_exact(mlflow_server.url, first.run_id, 600, 10)


def test_unreachable_at_start_spools_then_attaches(mlflow_server, tmp_path):
    """A compute node that cannot reach the server: the run lives in the spool; `open_tracker` with
    the same spool later (or `wps sync`) creates it on the server with every point exactly once."""
    from worldpm_scaling.track.server import free_port
    from worldpm_scaling.track.sync import sync

    sweep = unique_name("offline")
    dead = f"http://127.0.0.1:{free_port()}"
    tr = open_tracker(
        TrackingSpec(uri=dead, flush_every_s=0.2, system_metrics=False),  # exact counts below
        spool_dir=tmp_path / "spool",
    )
    parent = tr.start_sweep(sweep)
    run = tr.start_cell(sweep, "off", name="off", parent_run_id=parent.run_id, params={"a": 1})
    assert isinstance(run, MlflowRun) and run.run_id.startswith("spool:")
    for s in range(1, 301):
        run.log_metrics({f"m{i}": point_value(s, i) for i in range(4)}, step=s)
    run.finish("FINISHED", wait_s=0)
    assert (tmp_path / "spool" / "cell-off.jsonl").exists()
    rep = sync(tmp_path / "spool", mlflow_server.url)
    assert rep.sent == 1200
    cells = query.find_cell_runs(mlflow_server.url, sweep)
    assert cells["off"].status == "FINISHED" and cells["off"].params["a"] == "1"
    parent_info = [r for r in query.sweep_runs(mlflow_server.url, sweep) if r.role == "sweep"]
    assert len(parent_info) == 1 and cells["off"].parent_run_id == parent_info[0].run_id
    assert_exact(mlflow_server.url, cells["off"].run_id, 300, 4)


def test_racing_jobs_elect_exactly_one_sweep_parent(mlflow_server):
    """16 jobs released at one instant all ask for the sweep's parent: one run is created and all
    get its id (CI once saw two parents from create-then-keep-the-oldest)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from worldpm_scaling.track.mlflow_store import Store
    from worldpm_scaling.track.sync import sweep_run

    for _round in range(3):
        sweep = unique_name("elect")
        Store(mlflow_server.url).experiment_id(sweep)  # the experiment exists; the race is for the run
        gate = threading.Barrier(16)

        def job(_i):
            store = Store(mlflow_server.url)
            gate.wait()  # noqa: B023 — the pool below finishes within this round
            return sweep_run(store, sweep)  # noqa: B023 — the same

        with ThreadPoolExecutor(16) as ex:
            ids = list(ex.map(job, range(16)))
        parents = [r for r in query.sweep_runs(mlflow_server.url, sweep) if r.role == "sweep"]
        assert len(parents) == 1 and set(ids) == {parents[0].run_id}


def test_election_survives_a_winner_that_died_before_recording(mlflow_server):
    """A lock experiment without the run id (its winner was killed in between): the next job waits
    its bounded time, then creates the parent; later jobs find that one."""
    from worldpm_scaling.track.mlflow_store import Store
    from worldpm_scaling.track.sync import LOCK_TAG, elect_run, sweep_run

    sweep = unique_name("deadlock")
    store = Store(mlflow_server.url)
    exp = store.experiment_id(sweep)
    store.client.create_experiment(f"wps-lock/{exp}/sweep/{sweep}")  # the dead winner's lock, no tag
    t0 = time.monotonic()
    filt = f"tags.sweep = '{sweep}' and tags.`wps.role` = 'sweep'"
    rid = elect_run(
        store,
        exp,
        filt,
        f"wps-lock/{exp}/sweep/{sweep}",
        lambda: store.create_run(exp, name=sweep, tags={"sweep": sweep, "wps.role": "sweep"}),
        wait_s=1.0,
    )
    assert 1.0 <= time.monotonic() - t0 < 10
    assert sweep_run(store, sweep) == rid
    lock = store.client.get_experiment_by_name(f"wps-lock/{exp}/sweep/{sweep}")
    assert LOCK_TAG not in (lock.tags or {})
    assert [r.run_id for r in query.sweep_runs(mlflow_server.url, sweep) if r.role == "sweep"] == [rid]
