"""Acceptance: the server goes away for 30 s in the middle of a run and comes back.

The job keeps training; its points go to the spool while the server is down and are replayed, in
order, once it answers again. Afterwards every point is there exactly once and the run FINISHED.
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

OUTAGE_S = 30.0


def test_server_down_30s_mid_run_loses_and_duplicates_nothing(fresh_mlflow_server, tmp_path):
    srv = fresh_mlflow_server
    sweep = unique_name("outage")
    steps = 2000
    cmd = worker_cmd(uri=srv.url, sweep=sweep, cell="o", steps=steps, metrics=10, spool=tmp_path / "spool",
                     sleep=0.04, flush_every_s=1.0)
    log = open(tmp_path / "w.log", "w")
    p = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        # wait until the run exists and has points on the server, then pull the plug
        deadline = time.monotonic() + 180
        run = None
        while time.monotonic() < deadline:
            assert p.poll() is None, (tmp_path / "w.log").read_text()
            run = query.find_cell_runs(srv.url, sweep).get("o")
            if run is not None and (run.last_step or 0) >= 50:
                break
            time.sleep(0.5)
        assert run is not None and run.last_step, "worker never reached the server"
        srv.kill()
        down_at = time.monotonic()
        time.sleep(OUTAGE_S)
        assert p.poll() is None, "the run ended during the outage; make it longer"
        srv.start(wait_s=180)
        downtime = time.monotonic() - down_at
        p.wait(600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        log.close()
    text = (tmp_path / "w.log").read_text()
    assert p.returncode == 0, text[-3000:]
    assert "spooling" in text and "is back" in text  # it did go offline and came back
    done = json.loads([line for line in text.splitlines() if '"event": "done"' in line][-1])
    assert done["online"] is True
    info = query.find_cell_runs(srv.url, sweep)["o"]
    assert info.status == "FINISHED"
    assert_exact(srv.url, info.run_id, steps, 10)
    spooled = (tmp_path / "spool" / "cell-o.jsonl").read_text().count("\n")
    assert spooled >= 10 * 20, "the outage should have spooled at least a few hundred points"
    print(f"outage {downtime:.0f} s; {spooled} points spooled and replayed; exact")
