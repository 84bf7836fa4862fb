"""The MLflow edge of analysis against a real local store (sqlite, no server): the loader, its Parquet
cache, and `wps analyze` logging report and figures to the sweep's parent run — with runs written by
the project's own MlflowTracker, the way training writes them."""

from __future__ import annotations

import numpy as np
import pytest

from worldpm_scaling import names
from worldpm_scaling.analysis import AnalysisInputError, load

pytestmark = [pytest.mark.integration]


def test_mlflow_loader_roundtrip(tmp_path):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp = c.create_experiment("sw", artifact_location=str(tmp_path / "art"))
    parent = c.create_run(exp, tags={"sweep": "sw"}, run_name="sw").info.run_id
    for i, n in enumerate((1000, 8000)):
        r = c.create_run(exp, tags={"sweep": "sw", "cell_id": f"c{i}", "mlflow.parentRunId": parent}).info.run_id
        c.log_param(r, "model.name", f"m{i}")
        c.log_param(r, "model.params_non_embedding", n)
        if i:
            c.log_param(r, "seed", "3")  # the cell's training seed (flat_params); c0 predates it: seed 0
        ms = []
        for s in range(1, 6):
            ms += [
                Metric("train/pairs_seen", 64 * s, 0, s),
                Metric("train/tokens_seen", 6400 * s, 0, s),
                Metric("eval/adversarial/loss", 0.7 - 0.01 * s - i * 0.01, 0, s),
            ]
        c.log_batch(r, metrics=ms)
    df = load.from_mlflow("sw", tracking_uri=uri, cache=tmp_path / "cache.parquet")
    assert list(df.columns) == load.ALL_COLUMNS and set(df["status"]) == {"RUNNING"}
    adv = df[(df.metric == "eval/adversarial/loss") & (df.model == "m1")].sort_values("step")
    assert adv["pairs"].tolist() == [64, 128, 192, 256, 320]
    assert df.groupby("model")["seed"].unique().map(list).to_dict() == {"m0": [0], "m1": [3]}
    assert adv["compute"].iloc[0] == pytest.approx(6 * 8000 * 6400)
    assert np.allclose(adv["value"], [0.68, 0.67, 0.66, 0.65, 0.64])
    assert (tmp_path / "cache.parquet").exists()
    assert df.attrs["left_out"] == 0
    # an edited sweep re-launched under its name: only the current plan's cells are analysed
    only = load.from_mlflow("sw", tracking_uri=uri, cells={"c1"})
    assert set(only["model"]) == {"m1"} and only.attrs["left_out"] == 1
    with pytest.raises(AnalysisInputError, match="none of them a cell of the sweep's current plan"):
        load.from_mlflow("sw", tracking_uri=uri, cells={"zz"})
    assert load.parent_run_id("sw", tracking_uri=uri) == parent
    with pytest.raises(AnalysisInputError, match="no MLflow experiment named 'nope'"):
        load.from_mlflow("nope", tracking_uri=uri)
    missing = tmp_path / "elsewhere.db"
    with pytest.raises(AnalysisInputError, match="no MLflow store"):
        load.from_mlflow("sw", tracking_uri=f"sqlite:///{missing}")
    assert not missing.exists()  # looking did not create an empty store


def test_cache_is_reused_only_when_every_run_finished(tmp_path, monkeypatch):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp = c.create_experiment("sw", artifact_location=str(tmp_path / "art"))
    r = c.create_run(exp, tags={"sweep": "sw", "cell_id": "c0"}).info.run_id
    c.log_param(r, "model.params_non_embedding", 1000)
    c.log_batch(r, metrics=[Metric("train/pairs_seen", 64, 0, 1), Metric("train/loss", 0.7, 0, 1)])
    cache = tmp_path / "cache.parquet"
    assert len(load.from_mlflow("sw", tracking_uri=uri, cache=cache)) == 2
    c.log_metric(r, "train/loss", 0.6, step=2)  # still running: the cache must not hide this point
    assert len(load.from_mlflow("sw", tracking_uri=uri, cache=cache)) == 3
    c.set_terminated(r)
    assert len(load.from_mlflow("sw", tracking_uri=uri, cache=cache)) == 3
    # finished and unchanged → served from the cache, no history fetched
    mtime = cache.stat().st_mtime_ns

    def no_fetch(*a, **k):
        raise AssertionError("history fetched although the cache is current")

    monkeypatch.setattr(MlflowClient, "get_metric_history", no_fetch)
    assert len(load.from_mlflow("sw", tracking_uri=uri, cache=cache)) == 3
    assert cache.stat().st_mtime_ns == mtime  # not rewritten


def test_wps_analyze_logs_to_parent_run(tmp_path, capsys, monkeypatch):
    """Runs logged through MlflowTracker (parent + cells), then `wps analyze` reads and logs back."""
    from mlflow.tracking import MlflowClient

    from tests.analysis_synth import sweep_frame
    from worldpm_scaling.cli import main
    from worldpm_scaling.track.mlflow_tracker import MlflowTracker

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    syn = sweep_frame(steps=200, spike_at=150)
    tracker = MlflowTracker(uri, flush_every_s=0.2)
    parent = tracker.start_sweep("synthetic")
    for cell, d in syn.groupby("cell"):
        m = d["model"].iloc[0]
        run = tracker.start_cell(
            "synthetic",
            cell,
            name=m,
            parent_run_id=parent.run_id,
            params={"model.name": m, "model.params_non_embedding": int(d["N"].iloc[0])},
        )
        for step, g in d.groupby("step"):
            pts = dict(zip(g["metric"], g["value"]))
            pts[names.TRAIN_PAIRS_SEEN] = float(g["pairs"].iloc[0])
            pts[names.TRAIN_TOKENS_SEEN] = float(g["tokens"].iloc[0])
            run.log_metrics(pts, step=int(step))
        run.finish("FINISHED")
    parent.finish("FINISHED")

    out = tmp_path / "out"
    assert main(["analyze", "synthetic", "--out", str(out), "--tracking-uri", uri, "--bootstrap", "100"]) == 0
    text = capsys.readouterr().out
    assert "adversarial" in text and "power-law" in text and f"logged to MLflow run {parent.run_id}" in text
    assert (out / "report.md").is_file() and (out / "runs.parquet").is_file()
    arts = {a.path for a in MlflowClient(uri).list_artifacts(parent.run_id, "analysis")}
    assert "analysis/report.md" in arts and "analysis/figures" in arts
    figs = {a.path for a in MlflowClient(uri).list_artifacts(parent.run_id, "analysis/figures")}
    assert "analysis/figures/loss_vs_pairs.png" in figs and "analysis/figures/grad_norm.pdf" in figs

    assert main(["analyze", "nope", "--out", str(out), "--tracking-uri", uri]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_failed_cell_and_missing_milestones_on_a_real_server(mlflow_server, tmp_path, capsys):
    """Issue 18 acceptance on a real `mlflow server`: one cell FAILED, one cell missing two milestones.
    The report lists both (reasons in report.md, the headline and report.json) and fits the rest;
    --include-unfinished fits the FAILED cell too."""
    import json

    from tests.analysis_synth import sweep_frame
    from tests.fixtures.mlflow_server import unique_name
    from worldpm_scaling.cli import main
    from worldpm_scaling.track.mlflow_tracker import MlflowTracker

    sweep = unique_name("analysis-status")
    syn = sweep_frame(steps=200, spike_at=None)
    gone = syn.metric.str.startswith("eval/") & (syn.cell == "c2") & syn.pairs.isin([2.0**9, 2.0**10])
    syn = syn[~gone]
    tracker = MlflowTracker(mlflow_server.url, flush_every_s=0.2)
    parent = tracker.start_sweep(sweep)
    for cell, d in syn.groupby("cell"):
        m = d["model"].iloc[0]
        run = tracker.start_cell(
            sweep,
            cell,
            name=m,
            parent_run_id=parent.run_id,
            params={"model.name": m, "model.params_non_embedding": int(d["N"].iloc[0])},
        )
        for step, g in d.groupby("step"):
            pts = dict(zip(g["metric"], g["value"]))
            pts[names.TRAIN_PAIRS_SEEN] = float(g["pairs"].iloc[0])
            pts[names.TRAIN_TOKENS_SEEN] = float(g["tokens"].iloc[0])
            run.log_metrics(pts, step=int(step))
        run.finish("FAILED" if cell == "c1" else "FINISHED")
    parent.finish("FINISHED")

    out = tmp_path / "out"
    assert (
        main(
            ["analyze", sweep, "--out", str(out), "--tracking-uri", mlflow_server.url, "--bootstrap", "50", "--no-log"]
        )
        == 0
    )
    head = capsys.readouterr().out
    assert "left out: 1 cell(s) not fitted: tiny-s c1 FAILED" in head
    assert "tiny-s α=" not in head and "tiny-m α=" in head and "tiny-xs α=" in head
    text = (out / "report.md").read_text()
    assert "| c1 | tiny-s | FAILED | run FAILED, not FINISHED" in text
    for cat in ("adversarial", "objective", "subjective"):
        assert f"| {cat} | tiny-m | 7 | missing milestone(s) 2^9, 2^10: fitted on 7 of 9 points |" in text
    rj = json.loads((out / "report.json").read_text())
    assert [c["cell"] for c in rj["left_out"]] == ["c1"]
    fitted = {(f["category"], f["model"]): f["n"] for f in rj["fits"]}
    assert fitted[("adversarial", "tiny-m")] == 7 and fitted[("adversarial", "tiny-xs")] == 9
    assert ("adversarial", "tiny-s") not in fitted

    assert (
        main(
            [
                "analyze",
                sweep,
                "--out",
                str(tmp_path / "all"),
                "--tracking-uri",
                mlflow_server.url,
                "--bootstrap",
                "20",
                "--no-log",
                "--include-unfinished",
            ]
        )
        == 0
    )
    assert "left out" not in capsys.readouterr().out
    rj = json.loads((tmp_path / "all" / "report.json").read_text())
    assert any(f["model"] == "tiny-s" for f in rj["fits"]) and any("FAILED: fitted anyway" in n for n in rj["notes"])
