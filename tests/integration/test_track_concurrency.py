"""Acceptance: many jobs logging to one real server at once, on SQLite and on PostgreSQL.

16 processes each log 1,000 steps × 10 metrics (160,000 points) concurrently through the tracker;
afterwards every (run, key, step) is on the server exactly once with the value that was logged.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.fixtures.mlflow_server import REPO_ROOT, unique_name, worker_cmd
from tests.integration.test_track_mlflow import assert_exact
from worldpm_scaling.track import query

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROCS, STEPS, METRICS = 16, 1000, 10


def run_concurrently(url: str, tmp_path, sweep: str) -> list[dict]:
    procs = []
    for n in range(PROCS):
        cmd = worker_cmd(
            uri=url,
            sweep=sweep,
            cell=f"p{n:02d}",
            steps=STEPS,
            metrics=METRICS,
            spool=tmp_path / f"spool{n}",
            flush_every_s=2.0,
        )
        log = open(tmp_path / f"w{n}.log", "w")
        procs.append((subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + 540
    try:
        for p, _ in procs:
            p.wait(max(1.0, deadline - time.monotonic()))
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            log.close()
    outs = []
    for n, (p, _) in enumerate(procs):
        text = (tmp_path / f"w{n}.log").read_text()
        assert p.returncode == 0, text[-3000:]
        outs.append(json.loads([line for line in text.splitlines() if '"event": "done"' in line][-1]))
    return outs


def check_all_points(url: str, sweep: str, outs: list[dict]) -> None:
    cells = query.find_cell_runs(url, sweep)
    assert sorted(cells) == [f"p{n:02d}" for n in range(PROCS)]
    assert len(query.sweep_runs(url, sweep, include_parent=False)) == PROCS  # no duplicate child runs
    assert len([r for r in query.sweep_runs(url, sweep) if r.role == "sweep"]) == 1  # racing parents converged
    for info in cells.values():
        assert info.status == "FINISHED"
        assert_exact(url, info.run_id, STEPS, METRICS)
    assert all(o["online"] for o in outs)  # nothing left behind in a spool


def test_16_processes_sqlite_every_point_exactly_once(mlflow_server, tmp_path):
    sweep = unique_name("conc-sqlite")
    t0 = time.monotonic()
    outs = run_concurrently(mlflow_server.url, tmp_path, sweep)
    wall = time.monotonic() - t0
    check_all_points(mlflow_server.url, sweep, outs)
    print(
        f"sqlite: {PROCS}x{STEPS}x{METRICS} points in {wall:.1f} s wall; "
        f"median in-loop logging time {sorted(o['log_s'] for o in outs)[PROCS // 2]:.2f} s"
    )


def test_16_processes_postgresql_every_point_exactly_once(mlflow_server_pg, postgres, tmp_path):
    sweep = unique_name("conc-pg")
    t0 = time.monotonic()
    outs = run_concurrently(mlflow_server_pg.url, tmp_path, sweep)
    wall = time.monotonic() - t0
    check_all_points(mlflow_server_pg.url, sweep, outs)
    # The backend really is PostgreSQL, and its password went nowhere near MLflow's params/tags.
    n = postgres.psql("SELECT count(*) FROM metrics", db=mlflow_server_pg.backend_uri.rsplit("/", 1)[1])
    assert int(n) >= PROCS * STEPS * METRICS
    for info in query.find_cell_runs(mlflow_server_pg.url, sweep).values():
        assert postgres.PASSWORD not in json.dumps([info.params, info.tags])
    print(f"postgresql: {PROCS}x{STEPS}x{METRICS} points in {wall:.1f} s wall")
