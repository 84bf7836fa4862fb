"""A sweep on the real local SLURM cluster against an authenticated `mlflow server --app-name basic-auth`
(issue 35's acceptance): every metric of every cell logged exactly once, through a 30 s outage of the
server and `wps sync`; the canary password nowhere in the sweep's folder (pickled jobs, sbatch scripts,
logs, markers, spools), the MLflow store or artifacts, an exported model folder, or the CLI's output.
The jobs get their credentials from the environment the user submitted with, as on a real cluster."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.fixtures.mlflow_server import AuthServer
from worldpm_scaling import names
from worldpm_scaling.cli import main as wps
from worldpm_scaling.config import load_sweep
from worldpm_scaling.launch import launch, sweep_status
from worldpm_scaling.plan import plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENT_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def _scan(paths: list[Path], secret: str) -> list[str]:
    hits = []
    for root in paths:
        for f in [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]:
            if secret.encode() in f.read_bytes():
                hits.append(str(f))
    return hits


def _exact(uri: str, sweep: str, cells: list[str], steps: int) -> dict[str, int]:
    """Each cell's run holds every train/* key at steps 1…steps exactly once; returns points per cell."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(sweep)
    runs = {r.data.tags.get("cell_id"): r for r in c.search_runs([exp.experiment_id])}
    counts = {}
    for cid in cells:
        r = runs[cid]
        keys = [k for k in r.data.metrics if k.startswith("train/") or k.startswith("eval/")]
        assert names.TRAIN_LOSS in keys
        total = 0
        for k in keys:
            got = [m.step for m in c.get_metric_history(r.info.run_id, k)]
            assert len(got) == len(set(got)), f"{cid} {k}: steps logged twice"
            if k.startswith("train/"):
                assert sorted(got) == list(range(1, steps + 1)), (cid, k, sorted(got)[:5], len(got))
            total += len(got)
        counts[cid] = total
    return counts


@pytest.mark.timeout(2400)
def test_a_slurm_sweep_against_an_authenticated_server_logs_everything_once_and_leaks_nothing(
    slurm_cluster, make_sweep, mlflow_server_factory, tmp_path, monkeypatch, capsys
):
    auth = AuthServer(mlflow_server_factory(auth=True))
    canary = auth.passwords["alice"]
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # never the box's own ~/.mlflow/credentials
    for v in CLIENT_VARS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", canary)  # what sbatch hands the jobs (--export=ALL)
    y = make_sweep(
        pairs=256, batch=2, seeds=(0, 1), ckpt_steps=64, name="authsweep", cluster="slurm/local-cluster.yaml"
    )
    y.write_text(
        re.sub(
            r"(?m)^tracking: .*$",
            f'tracking: {{backend: mlflow, uri: "{auth.url}", flush_every_s: 0.5}}',
            y.read_text(),
        )
    )
    assert auth.url in y.read_text()
    p = plan(load_sweep(y))
    cells = [r.cell_id for r in p.runs]
    launch(p, executor="slurm")

    def logged() -> int:
        from mlflow.tracking import MlflowClient

        try:
            c = MlflowClient(auth.url)
            exp = c.get_experiment_by_name(p.sweep.name)
            runs = c.search_runs([exp.experiment_id]) if exp else []
            return min(
                (
                    len(c.get_metric_history(r.info.run_id, names.TRAIN_LOSS))
                    for r in runs
                    if r.data.tags.get("cell_id")
                ),
                default=0,
            )
        except Exception:  # noqa: BLE001 — the server is away during the outage
            return 0

    end = time.monotonic() + 900
    while logged() < 5:
        assert time.monotonic() < end, "the cells never logged 5 steps"
        time.sleep(1)
    auth.server.stop()  # 30 s outage while both cells train
    time.sleep(30)
    auth.server.start(wait_s=420)
    end = time.monotonic() + 1200
    while not all(r["state"] == "FINISHED" for r in sweep_status(p)):
        assert time.monotonic() < end, sweep_status(p)
        time.sleep(3)
    assert wps(["sync", p.sweep.output_dir, "--uri", auth.url]) == 0  # whatever the jobs could not send
    printed = capsys.readouterr()
    counts = _exact(auth.url, p.sweep.name, cells, steps=128)
    assert wps(["sync", p.sweep.output_dir, "--uri", auth.url]) == 0
    again = capsys.readouterr()
    assert "0 points sent" in again.out, again.out
    assert _exact(auth.url, p.sweep.name, cells, steps=128) == counts
    # an exported model of one cell
    export = tmp_path / "export"
    assert wps(["export", str(y), "--cell", cells[0], "--out", str(export)]) == 0
    exported = capsys.readouterr()
    (tmp_path / "printed.txt").write_text(
        "\n".join([printed.out, printed.err, again.out, again.err, exported.out, exported.err])
    )
    srv = auth.server
    store_db = Path(srv.backend_uri[len("sqlite:///") :])
    assert (
        _scan(
            [Path(p.sweep.output_dir), export, tmp_path / "printed.txt", store_db, srv.artifacts_dir, srv.log_path, y],
            canary,
        )
        == []
    )
    print(f"authenticated SLURM sweep: {len(cells)} cells, points per cell {counts}; canary found nowhere")
