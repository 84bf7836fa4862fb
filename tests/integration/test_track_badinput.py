"""Bad tracking input through the real CLI: named errors (exit 2) or a fast named warning, never
minutes of MLflow client retries or a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.mlflow_server import REPO_ROOT
from worldpm_scaling.track.server import free_port

pytestmark = pytest.mark.integration


def wps(*args, cwd, env=None, timeout=120):
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )
    return r, time.monotonic() - t0


def _sweep_with_uri(tmp_path: Path, uri: str) -> Path:
    text = (REPO_ROOT / "sweeps" / "demo.yaml").read_text()
    text = re.sub(r"(?m)^tracking:\n  backend: mlflow.*$", f"tracking:\n  backend: mlflow\n  uri: {uri}", text)
    assert f"uri: {uri}" in text
    text = text.replace("cluster: slurm/local.yaml", f"cluster: {REPO_ROOT / 'slurm' / 'local.yaml'}")
    text = re.sub(r"(?m)^out_dir: .*$", f"out_dir: {tmp_path / 'out'}", text)
    p = tmp_path / "demo.yaml"
    p.write_text(text)
    return p


def test_sync_to_a_bogus_uri_is_a_named_error(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "cell-c.meta.json").write_text('{"role": "cell", "sweep": "s", "cell_id": "c"}')
    r, _ = wps("sync", str(spool), "--uri", "bogus://x", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "bogus://x" in r.stderr and "unsupported scheme 'bogus'" in r.stderr and "Traceback" not in r.stderr


def test_status_against_a_dead_tracking_port_warns_fast(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    sweep = _sweep_with_uri(tmp_path, dead)
    r, wall = wps("status", str(sweep), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"tracking server {dead} is not answering" in r.stderr and r.stderr.count("is not answering") == 1
    assert (
        r.stdout.count("NOT LAUNCHED") == 24
    )  # the scheduler's side is still shown, one line per cell (3 sizes × 8 seeds)
    assert wall < 60, wall  # MLflow's client retried a dead port for ~4 minutes before


@pytest.mark.parametrize("interval", ["-3", "0", "nan"])
def test_status_watch_with_a_non_positive_interval_is_a_named_error(tmp_path, interval):
    r, _ = wps("status", str(REPO_ROOT / "sweeps" / "demo.yaml"), "--watch", "--interval", interval, cwd=tmp_path)
    assert r.returncode == 2 and "--interval must be a positive number of seconds" in r.stderr, r.stderr
