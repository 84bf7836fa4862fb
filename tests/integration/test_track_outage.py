"""Acceptance: the tracking server goes away for 60 s in the middle of a real training run.

`wps train` (the real Trainer, tiny model) is held right after step 4 is logged (faults.py's stop
action), the server is killed, and training goes on without it: every later point goes to the spool.
The server comes back 60 s later; whatever the job did not replay itself before it ended, `wps sync`
replays. Afterwards the MLflow run holds every step of every train and eval metric exactly once, with
the values of an uninterrupted run on the same server (1e-6), and the run is FINISHED.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.fixtures.mlflow_server import unique_name
from tests.fixtures.trainer_cell import COMPARED, EVAL_KEYS, STEPS, histories, start_server, write_sweep

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
OUTAGE_S = 60.0


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


@pytest.fixture
def outage_server(tmp_path):
    srv = start_server(tmp_path / "mlflow")
    yield srv
    srv.stop()


def test_server_down_60s_mid_training_loses_and_duplicates_nothing(
    outage_server, reference_histories, synth_data, tmp_path
):
    srv, want = outage_server, reference_histories
    name = unique_name("outage")

    sweep = write_sweep(tmp_path / "s.yaml", name, synth_data, srv.url, tmp_path / "out")
    log = open(tmp_path / "train.log", "w")
    p = subprocess.Popen(
        [sys.executable, "-m", "worldpm_scaling", "train", str(sweep), "--cell", "0"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env(WPS_FAULT="train.after_log:4", WPS_FAULT_ACTION="stop"),
    )
    try:
        end = time.monotonic() + 300
        while not _stopped(p.pid):
            assert p.poll() is None and time.monotonic() < end, (tmp_path / "train.log").read_text()[-3000:]
            time.sleep(0.1)
        srv.kill()
        down_at = time.monotonic()
        os.kill(p.pid, signal.SIGCONT)  # steps 5… train while the server is away
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        srv.start(wait_s=600)
        downtime = time.monotonic() - down_at
        p.wait(300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        log.close()
    text = (tmp_path / "train.log").read_text()
    assert p.returncode == 0 and f"FINISHED: {STEPS} steps" in text, text[-3000:]
    assert "spooling" in text, "the job never noticed the outage"
    spooled = sum(f.read_text().count("\n") for f in (tmp_path / "out").rglob("spool/*.jsonl"))
    assert spooled >= 10 * (STEPS - 4), f"only {spooled} points went to the spool"
    s = subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", "sync", str(tmp_path / "out"), "--uri", srv.url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert s.returncode == 0, s.stdout[-2000:] + s.stderr[-2000:]

    info, got = histories(srv.url, name, COMPARED + EVAL_KEYS)
    assert info.status == "FINISHED"
    for key in COMPARED:
        assert [st for st, _ in got[key]] == list(range(1, STEPS + 1)), key
    for key in COMPARED + EVAL_KEYS:
        assert [st for st, _ in got[key]] == [st for st, _ in want[key]], key
        assert max(abs(a - b) for (_, a), (_, b) in zip(got[key], want[key])) <= 1e-6, key
    print(f"outage {downtime:.0f} s; {spooled} points spooled, replayed exactly")
