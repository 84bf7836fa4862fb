"""Offline spool + `wps sync` against a real server; flush on SIGTERM chained to earlier handlers."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

from tests.fixtures.mlflow_server import REPO_ROOT, unique_name, worker_cmd
from tests.integration.test_track_mlflow import assert_exact
from worldpm_scaling.cli import main as wps
from worldpm_scaling.track import query
from worldpm_scaling.track.spool import Spool

pytestmark = pytest.mark.integration


def spool_sweep(tmp_path, sweep: str, cells=("a", "b"), steps=200, metrics=5, finish="FINISHED"):
    """An offline sweep (backend `spool`), each cell in its own spool folder like the launcher's."""
    for c in cells:
        r = subprocess.run(
            worker_cmd(
                backend="spool",
                sweep=sweep,
                cell=c,
                steps=steps,
                metrics=metrics,
                spool=tmp_path / "out" / c / "spool",
                finish=finish,
                flush_every_s=0.2,
            ),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr


def counts(url: str, sweep: str, metrics: int) -> dict[str, int]:
    out = {}
    for cid, info in query.find_cell_runs(url, sweep).items():
        hist = query.histories(url, [(info.run_id, f"m{i}") for i in range(metrics)])
        out[cid] = sum(len(h) for h in hist.values())
    return out


def test_wps_sync_twice_equals_once(mlflow_server, tmp_path, capsys):
    sweep = unique_name("sync")
    spool_sweep(tmp_path, sweep)
    url = mlflow_server.url
    assert wps(["sync", str(tmp_path / "out"), "--uri", url]) == 0
    first = capsys.readouterr().out
    assert "2000 points sent" in first
    once = counts(url, sweep, 5)
    assert once == {"a": 1000, "b": 1000}
    runs_once = query.sweep_runs(url, sweep)
    # again, re-checking every point against the server: nothing new
    assert wps(["sync", str(tmp_path / "out"), "--uri", url]) == 0
    assert "0 points sent, 2000 already on the server" in capsys.readouterr().out
    # a copy without the replay cursors (e.g. rsync'd from a node) and --resume-cursor: still nothing new
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "out", copy)
    for p in copy.rglob("*.cursor"):
        p.unlink()
    assert wps(["sync", str(copy), "--uri", url, "--resume-cursor"]) == 0
    assert "0 points sent" in capsys.readouterr().out
    assert counts(url, sweep, 5) == once
    runs_twice = query.sweep_runs(url, sweep)
    assert [(r.run_id, r.status) for r in runs_twice] == [(r.run_id, r.status) for r in runs_once]
    assert [r.role for r in runs_twice] == ["sweep", "cell", "cell"]
    for info in query.find_cell_runs(url, sweep).values():
        assert info.status == "FINISHED" and info.parent_run_id == runs_twice[0].run_id
        assert_exact(url, info.run_id, 200, 5)


def test_sync_appends_only_what_is_new_after_more_offline_work(mlflow_server, tmp_path, capsys):
    """A requeued offline job adds steps to the same spool: the next sync sends just those."""
    sweep = unique_name("sync-more")
    spool_sweep(tmp_path, sweep, cells=("a",), steps=100, metrics=3, finish="KILLED")
    assert wps(["sync", str(tmp_path / "out"), "--uri", mlflow_server.url]) == 0
    assert query.find_cell_runs(mlflow_server.url, sweep)["a"].status == "KILLED"
    spool_sweep(tmp_path, sweep, cells=("a",), steps=250, metrics=3)  # resumes after step 100 (spool)
    capsys.readouterr()
    assert wps(["sync", str(tmp_path / "out"), "--uri", mlflow_server.url]) == 0
    assert "450 points sent, 300 already on the server" in capsys.readouterr().out
    info = query.find_cell_runs(mlflow_server.url, sweep)["a"]
    assert info.status == "FINISHED"
    assert_exact(mlflow_server.url, info.run_id, 250, 3)


def test_sync_bad_input_is_a_named_error(tmp_path, capsys):
    assert wps(["sync", str(tmp_path / "missing")]) == 2
    assert "missing: no such spool folder" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cell-x.meta.json").write_text("{not json")
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    assert wps(["sync", str(bad), "--uri", dead]) == 2
    assert "not answering /health" in capsys.readouterr().err


SIGTERM_JOB = r"""
import os, signal, sys, time
from worldpm_scaling.config import TrackingSpec
from worldpm_scaling.track import open_tracker
seen = []
signal.signal(signal.SIGTERM, lambda s, f: (seen.append(s), print("previous handler ran", flush=True), sys.exit(3)))
from worldpm_scaling.track.mlflow_tracker import install_signal_flush
install_signal_flush()  # explicit: a tracker never installs handlers on its own (the cell's owner does)
tr = open_tracker(TrackingSpec(backend="spool", flush_every_s=3600, flush_every_points=10**9), spool_dir=sys.argv[1])
run = tr.start_cell("sw", "sig", name="sig")
for s in range(1, 101):
    run.log_metrics({"m0": s * 100.0}, step=s)
print("ready", flush=True)
time.sleep(60)
"""


def test_sigterm_flushes_then_chains_to_the_previous_handler(tmp_path):
    """submitit installs its own SIGTERM/USR2 handlers: ours flushes first, then calls theirs."""
    p = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_JOB, str(tmp_path / "spool")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        assert not (tmp_path / "spool" / "cell-sig.jsonl").exists()  # buffered, not yet flushed
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert "previous handler ran" in out and p.returncode == 3
    pts, _ = Spool(tmp_path / "spool").read("cell-sig")
    assert [s for _k, _v, _t, s in pts] == list(range(1, 101))
    assert Spool(tmp_path / "spool").meta("cell-sig")["status"] == "KILLED"  # exited unfinished


def test_sigterm_with_default_handler_flushes_and_dies_by_the_signal(tmp_path):
    code = SIGTERM_JOB.replace(
        'signal.signal(signal.SIGTERM, lambda s, f: (seen.append(s), print("previous handler ran", flush=True), sys.exit(3)))',
        "",
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "spool")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == -signal.SIGTERM
    pts, _ = Spool(tmp_path / "spool").read("cell-sig")
    assert len(pts) == 100
