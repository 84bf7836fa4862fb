"""`wps ui` serves the project's store; headless Chromium renders the sweep's runs table with the
cell runs nested under the parent (the same capture that made docs/mlflow_ui.png)."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.fixtures.mlflow_server import REPO_ROOT, unique_name
from worldpm_scaling.track.mlflow_tracker import MlflowTracker
from worldpm_scaling.track.server import healthy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _ctrl_c_default() -> None:
    """In the child before exec: Ctrl-C as in a terminal. A job started with `&` from a
    non-interactive shell inherits SIGINT ignored, and Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen) -> None:
    """After a failure: SIGTERM first, so `wps ui` takes its server down; SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("screenshot_ui", REPO_ROOT / "scripts" / "screenshot_ui.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_wps_ui_serves_the_sweep_and_the_page_lists_cell_runs(tmp_path):
    sweep = unique_name("ui")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # jobs that wrote straight into the SQLite store (no server): the default single-user setup
    tr = MlflowTracker(store, spool_dir=tmp_path / "spool", flush_every_s=0.5)
    parent = tr.start_sweep(sweep)
    names = []
    for i, model in enumerate(("tiny-xs", "tiny-s", "tiny-m")):
        name = f"{model}-8192-s0"
        run = tr.start_cell(sweep, f"c{i}", name=name, parent_run_id=parent.run_id, params={"model.name": model})
        run.log_metrics({"train/loss": 0.69 - 0.01 * i}, step=1)
        run.finish("FINISHED")
        names.append(name)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worldpm_scaling",
            "ui",
            "--store",
            store,
            "--sweep",
            sweep,
            "--artifacts",
            str(tmp_path / "art"),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_default,
    )
    try:
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"(http://127\.0\.0\.1:\d+)/#/experiments/(\d+)/runs", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert healthy(m.group(1))
        text = _screenshot_module().capture_runs_table(line, [sweep, *names], tmp_path / "shot.png")
        for n in [sweep, *names]:
            assert n in text
        assert (tmp_path / "shot.png").stat().st_size > 10_000
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the server goes down with it
        assert proc.wait(60) == 130
        time.sleep(0.5)
        assert not healthy(m.group(1), timeout_s=1.0)
    finally:
        _stop(proc)


def test_wps_ui_sigterm_takes_the_server_down(tmp_path):
    """`kill` (SIGTERM) of `wps ui` must not orphan the mlflow server, which runs in its own session."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worldpm_scaling",
            "ui",
            "--store",
            f"sqlite:///{tmp_path / 'm.db'}",
            "--artifacts",
            str(tmp_path / "art"),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), (
            url,
            proc.stderr.read() if proc.poll() is not None else "",
        )
        assert healthy(url)
        proc.terminate()
        assert proc.wait(60) == 128 + signal.SIGTERM
        time.sleep(0.5)
        assert not healthy(url, timeout_s=1.0)
    finally:
        _stop(proc)


def test_wps_ui_help_teaches_postgresql():
    r = subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", "ui", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert r.returncode == 0 and "postgresql://" in r.stdout and "examples:" in r.stdout


def test_headless_chromium_shows_cells_datasets_models_and_category_curves(mlflow_server, tmp_path):
    """A synthetic sweep logged with the project's tracker into a real `mlflow server`: headless
    Chromium renders every cell run's name in the runs table with its dataset (name and digest) and
    the registered model, and the chart view draws each cell's eval/<category>/loss against
    train/pairs_seen with the values logged."""
    shot = _screenshot_module()
    sweep = unique_name("charts")
    url, run_names, curves = shot.demo_sweep(
        mlflow_server.url, sweep, workdir=tmp_path, batch=512, system_metrics=False
    )
    parents = shot.parent_run_ids(url, sweep)
    assert len(parents) == 1 and len(run_names) == 4
    text = shot.capture_runs_table(
        url,
        run_names,
        tmp_path / "table.png",
        state=shot.ui_state(expanded=parents, columns=shot.TABLE_COLUMNS),
        expect=["eval/adversarial/loss", "Dataset", "Models"],
    )
    for n in run_names:
        assert n in text
    from worldpm_scaling.track.datasets import file_digest

    digest, _ = file_digest(tmp_path / "data" / "demo" / "train.jsonl")
    assert f"demo/train.jsonl ({digest})" in text and f"{sweep}-reward-model" in text
    plots = shot.capture_charts(
        url, shot.CATEGORY_CHARTS, "train/pairs_seen", expanded=parents, traces=3, out=tmp_path / "charts.png"
    )
    assert [p["title"] for p in plots] == shot.CATEGORY_CHARTS
    for p, key in zip(plots, shot.CATEGORY_CHARTS):
        got = {t["name"]: (t["x"], t["y"]) for t in p["traces"]}
        for cell in run_names[1:]:
            xs, ys = zip(*curves[(cell, key)])
            assert tuple(got[cell][0]) == xs and got[cell][1] == pytest.approx(list(ys)), (key, cell, got[cell])
    assert (tmp_path / "table.png").stat().st_size > 10_000 and (tmp_path / "charts.png").stat().st_size > 10_000
