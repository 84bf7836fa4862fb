import numpy as np
import pytest

from tests.analysis_synth import sweep_frame
from worldpm_scaling.analysis import AnalysisInputError
from worldpm_scaling.analysis.report import analyze


def test_report_finds_the_planted_shapes(tmp_path):
    rep = analyze(sweep_frame(), tmp_path, bootstrap=200)
    for m in ("tiny-xs", "tiny-s", "tiny-m"):
        assert rep.trends[("adversarial", m)].kind == "power-law"
        assert rep.trends[("subjective", m)].kind == "flat"
    assert rep.trends[("objective", "tiny-m")].kind == "emergent"
    assert rep.trends[("objective", "tiny-xs")].kind == "flat"
    # planted adversarial exponents 0.05, 0.07, 0.09 are recovered within their intervals
    for m, a in (("tiny-xs", 0.05), ("tiny-s", 0.07), ("tiny-m", 0.09)):
        f = rep.fits[("adversarial", m)]
        assert f.ci["alpha"].lo - 0.005 <= a <= f.ci["alpha"].hi + 0.005
    assert [s.step for s in rep.spikes["tiny-m"]] == [701]  # g[700] is step 701
    assert len(rep.emergences["tiny-m"]) == 1 and not rep.spikes["tiny-xs"]
    text = rep.report_path.read_text()
    assert "| adversarial | tiny-m |" in text and "emergence flag" in text and "Phi" in text
    head = rep.headline()
    assert "adversarial" in head and "emergent" in head and "emergence flags" in head
    for stem in ("loss_vs_pairs", "loss_vs_compute", "grad_norm", "style_phi"):
        for ext in ("pdf", "svg", "png"):
            p = tmp_path / "figures" / f"{stem}.{ext}"
            assert p.stat().st_size > 5000, p
    # vector fonts in the PDF (Type 42, not Type 3)
    pdf = (tmp_path / "figures" / "loss_vs_pairs.pdf").read_bytes()
    assert b"/Subtype /Type3" not in pdf and (b"/Subtype /TrueType" in pdf or b"/CIDFontType2" in pdf)


def test_empty_frame_is_named_error(tmp_path):
    with pytest.raises(AnalysisInputError, match="empty"):
        analyze(sweep_frame().iloc[:0], tmp_path)


def test_mlflow_loader_roundtrip(tmp_path):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from worldpm_scaling.analysis import load

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp = c.create_experiment("sw", artifact_location=str(tmp_path / "art"))
    parent = c.create_run(exp, tags={"sweep": "sw"}, run_name="sw").info.run_id
    for i, n in enumerate((1000, 8000)):
        r = c.create_run(exp, tags={"sweep": "sw", "cell_id": f"c{i}", "mlflow.parentRunId": parent}).info.run_id
        c.log_param(r, "model.name", f"m{i}")
        c.log_param(r, "model.params_non_embedding", n)
        ms = []
        for s in range(1, 6):
            ms += [Metric("train/pairs_seen", 64 * s, 0, s), Metric("train/tokens_seen", 6400 * s, 0, s),
                   Metric("eval/adversarial/loss", 0.7 - 0.01 * s - i * 0.01, 0, s)]
        c.log_batch(r, metrics=ms)
    df = load.from_mlflow("sw", tracking_uri=uri, cache=tmp_path / "cache.parquet")
    assert list(df.columns) == load.COLUMNS
    adv = df[(df.metric == "eval/adversarial/loss") & (df.model == "m1")].sort_values("step")
    assert adv["pairs"].tolist() == [64, 128, 192, 256, 320]
    assert adv["compute"].iloc[0] == pytest.approx(6 * 8000 * 6400)
    assert np.allclose(adv["value"], [0.68, 0.67, 0.66, 0.65, 0.64])
    assert (tmp_path / "cache.parquet").exists()
    assert load.parent_run_id("sw", tracking_uri=uri) == parent
    with pytest.raises(AnalysisInputError, match="no MLflow experiment named 'nope'"):
        load.from_mlflow("nope", tracking_uri=uri)
