"""`wps predict` and analysis/predict.py: the two-step ladder prediction, its intervals, its refusals."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from tests.predict_synth import SIZES, draw_run, ladder_frame, law, target
from worldpm_scaling.analysis import AnalysisInputError
from worldpm_scaling.analysis.predict import _chin_fun_jac, _lm_batch, _sig_fun_jac, _step2_bounds, make_ladder, predict
from worldpm_scaling.cli import main

pytestmark = pytest.mark.unit


def _ladder(seed=0, **kw):
    df = ladder_frame(np.random.default_rng(seed), **kw)
    return df, make_ladder(df.N, df.D, df.loss, acc=df.acc, run=df.run)


def test_planted_ladder_predicts_the_held_out_target_within_its_interval():
    """4 sizes × 4 budgets, target 4x the largest N: accuracy within 2% of a held-out run, inside the
    90% interval, as are loss and the noiseless law; the step-1 exponents cover the plant."""
    rng = np.random.default_rng(3)
    df, lad = _ladder(3)
    Nt, Dt = target(SIZES[:4])
    _, L, a = draw_run(rng, Nt, Dt)
    p = predict(lad, Nt, Dt, bootstrap=300, seed=1)
    assert p.step1.form == "chinchilla" and p.bootstrap == 300
    assert abs(p.acc[0].pred - a[-1]) / a[-1] < 0.02
    assert p.acc[0].contains(a[-1]) and p.loss[0].contains(L[-1]) and p.loss[0].contains(float(law(Nt, Dt)))
    assert p.acc[0].lo < p.acc[0].pred < p.acc[0].hi and p.acc[0].hi - p.acc[0].lo < 0.1
    assert p.distance == pytest.approx({"N": 4.0, "D": 2.0, "compute": 8.0})
    assert p.step1.ci["alpha"].contains(0.32) and p.step2.ci["L0"].contains(0.45)


def test_batched_refit_reaches_the_scipy_optimum():
    """The vectorised Levenberg–Marquardt refits (one per bootstrap replicate) minimise the same objective
    as the scipy fits: from a perturbed start, with unit weights, they land on the same parameters."""
    from tests.predict_synth import LAW
    from worldpm_scaling.analysis.predict import _fit_step2

    df, lad = _ladder(5)
    s = lad.step1
    lN, lD, ly = np.log(lad.N[s]), np.log(lad.D[s]), np.log(lad.loss[s])
    plant = np.log([LAW["A"], LAW["B"], LAW["E"]]).tolist() + [LAW["alpha"], LAW["beta"]]
    res = optimize.minimize(
        lambda t: 0.5 * (_chin_fun_jac(lN, lD, ly)(t[None])[0] ** 2).sum(),
        plant,
        method="L-BFGS-B",
        bounds=[(None, None)] * 3 + [(0, 5)] * 2,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000},
    )
    th = res.x
    start = np.repeat(th[None, :], 3, 0) + np.array(
        [[0.3, -0.3, 0.05, 0.02, -0.02], [0, 0, 0, 0, 0], [-0.2, 0.2, 0, 0, 0.03]]
    )
    got = _lm_batch(
        _chin_fun_jac(lN, lD, ly),
        start,
        np.ones((3, len(ly))),
        [-np.inf] * 3 + [0, 0],
        [np.inf] * 3 + [5, 5],
        delta=None,
        iters=300,
    )
    r = lambda t: ((_chin_fun_jac(lN, lD, ly)(t[None])[0]) ** 2).sum()
    assert all(r(g) <= r(th) * (1 + 1e-3) for g in got)
    th2 = _fit_step2(lad.loss, lad.acc)
    got2 = _lm_batch(
        _sig_fun_jac(lad.loss, lad.acc),
        (th2 * np.array([1.1, 0.95, 0.8, 1.02]))[None],
        np.ones((1, len(lad.loss))),
        *_step2_bounds(lad.loss),
        delta=None,
        iters=200,
    )
    assert got2[0] == pytest.approx(th2, rel=2e-3)


def test_huber_resists_a_diverged_run_that_least_squares_follows():
    """One middle run's losses ×1.5 (a diverged run): the Huber fit's predicted loss stays within 3% of
    the law, the least-squares fit moves further (bench/results/predict_coverage.txt measures it on 100)."""
    df, _ = _ladder(2)
    bad = df.run == "s1x2"
    df.loc[bad, "loss"] *= 1.5
    lad = make_ladder(df.N, df.D, df.loss, run=df.run)
    Nt, Dt = target(SIZES[:4])
    truth = float(law(Nt, Dt))
    hub = predict(lad, Nt, Dt, bootstrap=0).loss[0].pred
    ls = predict(lad, Nt, Dt, bootstrap=0, delta=None).loss[0].pred
    assert abs(hub - truth) / truth < 0.03 and abs(ls - truth) > abs(hub - truth)


def test_two_sizes_fall_back_to_the_log_linear_form_and_say_so():
    df, _ = _ladder(1, sizes=SIZES[:2])
    lad = make_ladder(df.N, df.D, df.loss, run=df.run)
    p = predict(lad, *target(SIZES[:2]), bootstrap=50)
    assert p.step1.form == "loglinear" and p.loss is not None
    assert any("2 distinct N values (the form needs 3)" in n for n in p.notes)
    assert any("log-linear form" in n for n in p.notes)
    refused = predict(lad, *target(SIZES[:2]), bootstrap=50, form="chinchilla")
    assert refused.loss is None and not refused.step1.identified


def test_far_target_is_noted_with_its_distance():
    _, lad = _ladder(0)
    p = predict(lad, SIZES[3] * 50, 20 * SIZES[3] * 50, bootstrap=0)
    assert p.distance["N"] == pytest.approx(50.0)
    assert any(n.startswith("target far outside the ladder: 50x its largest N") for n in p.notes)


def test_make_ladder_names_bad_input():
    with pytest.raises(AnalysisInputError, match="'acc' must be an accuracy in \\[0, 1\\]"):
        make_ladder([1e6, 2e6], [1e8, 1e8], [0.5, 0.4], acc=[0.5, 1.2])
    with pytest.raises(AnalysisInputError, match="at least 2 runs, got 1 \\(column 'run'\\)"):
        make_ladder([1e6, 1e6], [1e8, 2e8], [0.5, 0.4], run=["a", "a"])
    with pytest.raises(AnalysisInputError, match="'N' must be positive"):
        make_ladder([0, 1e6], [1e8, 2e8], [0.5, 0.4])
    _, lad = _ladder(0)
    with pytest.raises(AnalysisInputError, match="target N must be positive"):
        predict(lad, -1.0, 1e9, bootstrap=0)
    with pytest.raises(AnalysisInputError, match="delta must be a number, None or 'auto', got 'huber'"):
        predict(lad, 1e9, 1e9, bootstrap=0, delta="huber")


# -- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def ladder_csv(tmp_path):
    df, _ = _ladder(0)
    p = tmp_path / "ladder.csv"
    df.to_csv(p, index=False)
    return p


def test_cli_table_json_has_the_documented_shape(ladder_csv, capsys):
    assert (
        main(
            [
                "predict",
                str(ladder_csv),
                "--x",
                "N,D",
                "--loss",
                "loss",
                "--acc",
                "acc",
                "--run",
                "run",
                "--at",
                "N=64e6,D=6.4e9",
                "--bootstrap",
                "100",
                "--json",
            ]
        )
        == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert set(d["loss"]) == {"pred", "lo", "hi"} and set(d["acc"]) == {"pred", "lo", "hi"}
    assert d["loss"]["lo"] < d["loss"]["pred"] < d["loss"]["hi"] and 0.5 < d["acc"]["pred"] < 1
    assert d["step1"]["form"] == "chinchilla" and d["step1"]["points"] == 16 and "alpha" in d["step1"]["ci"]
    assert set(d["step2"]) >= {"a", "b", "k", "L0", "ci"} and isinstance(d["notes"], list)


def test_cli_three_sizes_one_data_size_is_not_identified(tmp_path, capsys):
    """Acceptance: 3 sizes, one data size → 'not identified', no number (text and JSON)."""
    rows = [
        (f"r{i}{j}", N, 1e9, 0.3 + 5 * N**-0.3 * (1 + 0.01 * j))
        for i, N in enumerate([1e6, 4e6, 16e6])
        for j in range(3)
    ]
    p = tmp_path / "oneD.csv"
    pd.DataFrame(rows, columns=["run", "N", "D", "loss"]).to_csv(p, index=False)
    args = ["predict", str(p), "--x", "N,D", "--loss", "loss", "--at", "N=6.4e7,D=1e9", "--bootstrap", "50"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "loss: not identified" in out and "1 distinct D value" in out and "no prediction" in out
    assert "loss: 0." not in out and "acc:" not in out
    assert main(args + ["--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["loss"] is None and d["step1"]["identified"] is False


@pytest.mark.parametrize(
    "extra, msg",
    [
        (["--loss", "nope"], "no column 'nope'"),
        (["--at", "N=0,D=1e9"], "target N must be positive"),
        (["--at", "N=1e8,D=-5"], "target D must be positive"),
        (["--at", "N=1e8"], "needs both N and D"),
        (["--at", "X=1"], "--at takes N=<n>,D=<d>"),
        (["--acc", "bad_acc"], "'bad_acc' must be an accuracy in [0, 1]"),
        (["--run", "one_run"], "at least 2 runs, got 1"),
        (["--run", "missing"], "no column 'missing'"),
        (["--level", "1.5"], "--level must be between 0 and 1"),
    ],
)
def test_cli_bad_input_exits_2_with_a_named_error(ladder_csv, capsys, extra, msg):
    df = pd.read_csv(ladder_csv).assign(bad_acc=lambda d: d.acc * 2, one_run="x")
    df.to_csv(ladder_csv, index=False)
    base = {"--x": "N,D", "--loss": "loss", "--at": "N=64e6,D=6.4e9", "--bootstrap": "20"}
    args = ["predict", str(ladder_csv)]
    for k, v in base.items():
        if k not in extra:
            args += [k, v]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_cli_sweep_mode_predicts_the_largest_and_a_never_trained_target(tmp_path, capsys):
    from tests.predict_synth import demo_frame

    src = tmp_path / "runs.parquet"
    demo_frame().to_parquet(src)
    assert main(["predict", "demo", "--from", str(src), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "adversarial: tiny-sm (N=2.71e+05) from tiny-xxxs, tiny-xxs" in out and "verdict: predictable" in out
    assert "objective: tiny-sm" in out and "verdict: not predictable (actual better than predicted)" in out
    assert main(["predict", "demo", "--from", str(src), "--bootstrap", "20", "--target", "qwen2.5-1.5b", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    adv = next(r for r in d if r["name"] == "adversarial")
    assert adv["verdict"] == "predicted only" and adv["ladder"] == ["tiny-xxxs", "tiny-xxs", "tiny-sm"]
    assert [m["pairs"] for m in adv["milestones"]] == [512, 1024, 2048, 4096, 8192]
    assert main(["predict", "demo", "--from", str(src), "--target", "no-such-model"]) == 2
    assert "--target 'no-such-model': not a size of sweep" in capsys.readouterr().err


# -- the report ------------------------------------------------------------------------------------


def test_demo_report_predicts_the_largest_size_adversarial_predictable_objective_not(tmp_path):
    """The demo's recorded curves (the 24-cell recipe, bench/results/objective_onset.json): tiny-sm from
    tiny-xxxs and tiny-xxs. Adversarial loss lands inside the interval, the objective (learned by tiny-sm
    only, emergent) far below it: the paper's power law vs emergent, as a test."""
    from tests.predict_synth import demo_frame
    from worldpm_scaling.analysis.report import analyze

    rep = analyze(demo_frame(), tmp_path, bootstrap=200, figures=False)
    assert rep.predictions["adversarial"].verdict == "predictable"
    assert rep.predictions["objective"].verdict == "not predictable"
    assert rep.predictions["objective"].direction() == "better"
    text = rep.report_path.read_text()
    assert "## Predicting tiny-sm from the smaller sizes" in text and "→ predictable" in text
    head = rep.headline()
    assert "adversarial predict tiny-sm from 2 smaller sizes at 2^13 pairs" in head and "→ predictable" in head
    assert "objective   predict tiny-sm" in head and "→ not predictable (actual better than predicted)" in head
    j = json.loads(rep.json_path.read_text())["predictions"]
    assert j["adversarial"]["verdict"] == "predictable" and len(j["adversarial"]["milestones"]) == 5
    assert j["objective"]["milestones"][-1]["acc"] is not None  # the objective has accuracy: step 2 ran


def test_five_sizes_backtest_holds_out_each_size_from_the_third(tmp_path):
    from tests.analysis_synth import joint_sweep
    from worldpm_scaling.analysis.report import analyze

    rep = analyze(joint_sweep(5, noise=0.01, milestones=6, flat=False), tmp_path, bootstrap=30, figures=True)
    bt = rep.backtests["adversarial"]
    assert [b.target for b in bt] == ["size2", "size3", "size4"] and [len(b.ladder) for b in bt] == [2, 3, 4]
    assert bt[-1].prediction.step1.form == "chinchilla" and bt[0].prediction.step1.form == "loglinear"
    sp = rep.predictions["adversarial"]
    assert sp.verdict in ("predictable", "not predictable")
    assert abs(sp.prediction.loss[-1].pred - sp.actual_loss[-1]) / sp.actual_loss[-1] < 0.05
    assert "Backtest: each size from the third up" in rep.report_path.read_text()
    assert any(p.name == "prediction.png" for p in rep.figures)


def test_analyze_target_never_trained_is_predicted_in_the_report(tmp_path, capsys):
    """A sweep that plans small sizes and asks for a larger one (`wps analyze --target`): the report shows
    the prediction for it at the sweep's milestones, verdict 'predicted only'."""
    from tests.predict_synth import demo_frame

    src = tmp_path / "runs.parquet"
    demo_frame().to_parquet(src)
    out = tmp_path / "out"
    assert (
        main(
            ["analyze", "demo", "--from", str(src), "--out", str(out), "--bootstrap", "20", "--target", "qwen2.5-1.5b"]
        )
        == 0
    )
    head = capsys.readouterr().out
    assert "adversarial predict qwen2.5-1.5b from 3 smaller sizes at 2^13 pairs: loss" in head
    assert "→ predicted only" in head
    text = (out / "report.md").read_text()
    assert "## Predicting qwen2.5-1.5b from the smaller sizes" in text and "target far outside the ladder" in text
    j = json.loads((out / "report.json").read_text())["predictions"]["adversarial"]
    assert j["verdict"] == "predicted only" and j["target"] == "qwen2.5-1.5b"
    assert main(["analyze", "demo", "--from", str(src), "--out", str(out), "--target", "nope"]) == 2
    assert "--target 'nope'" in capsys.readouterr().err


def test_bootstrap_0_gives_no_interval_and_no_verdict(tmp_path):
    """Without replicates there is no interval: the verdict says so instead of 'not predictable'."""
    from tests.predict_synth import demo_frame
    from worldpm_scaling.analysis.report import analyze

    rep = analyze(demo_frame(), tmp_path, bootstrap=0, figures=False)
    assert {sp.verdict for sp in rep.predictions.values()} == {"no interval"}
    assert "0.1333 (no interval), actual 0.108 → no interval" in rep.headline()
    assert "**no**" not in rep.report_path.read_text().split("## Predicting")[1]
