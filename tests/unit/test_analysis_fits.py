import json

import numpy as np
import pytest

from tests.analysis_synth import planted_power
from worldpm_scaling.analysis import AnalysisInputError, ChinchillaFit, fit_chinchilla, fit_power
from worldpm_scaling.analysis.fits import default_chinchilla_starts

pytestmark = pytest.mark.unit


def test_planted_exponent_recovered_and_covered_200_sets():
    """Issue 8: median |α̂ − α| ≤ 0.005 and the 90% interval covers α in ≥ 85% of 200 sets."""
    rng = np.random.default_rng(2026)
    errors, covered = [], 0
    for i in range(200):
        alpha = rng.uniform(0.05, 0.4)
        x, y = planted_power(rng, alpha=alpha, noise=0.03)
        f = fit_power(x, y, fix_E=0.0, bootstrap=1000, seed=i)
        errors.append(abs(f.alpha - alpha))
        covered += f.ci["alpha"].contains(alpha)
    assert np.median(errors) <= 0.005
    assert covered / 200 >= 0.85


def test_free_E_recovers_offset():
    rng = np.random.default_rng(1)
    x, y = planted_power(rng, alpha=0.3, noise=0.003, E=0.4, A=2.0, n=40)
    f = fit_power(x, y, bootstrap=100)
    assert f.alpha == pytest.approx(0.3, abs=0.02)
    assert f.E == pytest.approx(0.4, abs=0.02)
    assert f.ci["alpha"].lo <= f.alpha <= f.ci["alpha"].hi
    assert f.extrapolation_rel_error is not None and f.extrapolation_rel_error < 0.02


PLANT = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al.'s published fit, as a plant


def _grid(rng, noise=0.002):
    N = np.repeat(np.logspace(7, 10, 7), 7)
    D = np.tile(np.logspace(8, 11.5, 7), 7)
    L = PLANT["E"] + PLANT["A"] / N ** PLANT["alpha"] + PLANT["B"] / D ** PLANT["beta"]
    return N, D, L * np.exp(rng.normal(0, noise, len(L)))


def test_chinchilla_recovers_plant_from_several_start_grids():
    N, D, L = _grid(np.random.default_rng(0))
    full = default_chinchilla_starts()
    grids = [full, full[::7], [s for s in full if s[3] >= 1.0], [(8.0, 8.0, 0.3, 0.5, 0.5)]]
    fits = [fit_chinchilla(N, D, L, bootstrap=0, starts=g) for g in grids]
    for f in fits:
        assert f.alpha == pytest.approx(PLANT["alpha"], abs=0.02)
        assert f.beta == pytest.approx(PLANT["beta"], abs=0.02)
        assert f.E == pytest.approx(PLANT["E"], rel=0.02)
        assert np.log(f.A) == pytest.approx(np.log(PLANT["A"]), abs=0.3)
        assert np.log(f.B) == pytest.approx(np.log(PLANT["B"]), abs=0.3)
    for f in fits[1:]:  # start-independent: the same optimum
        assert f.alpha == pytest.approx(fits[0].alpha, abs=1e-3) and f.beta == pytest.approx(fits[0].beta, abs=1e-3)
    a, b = fits[0].frontier_exponents
    assert a + b == pytest.approx(1.0)
    n_opt, d_opt = fits[0].frontier(np.array([1e20, 1e22]))
    assert np.allclose(6 * n_opt * d_opt, [1e20, 1e22])


@pytest.mark.parametrize(
    "x,y,needle",
    [
        ([], [], "empty"),
        ([1, 2, np.nan, 4], [1, 2, 3, 4], "NaN"),
        ([1, 2, 0, 4], [1, 0.9, 0.8, 0.7], "must be positive"),
        ([1, 2], [1.0, 0.9], "cannot determine"),
        ([1, 2, 3, 4], [1, np.nan, 3, 4], "NaN"),
    ],
)
def test_bad_input_named(x, y, needle):
    with pytest.raises(AnalysisInputError, match=needle):
        fit_power(x, y, fix_E=0.0, bootstrap=10, x_name="compute")


def test_fit_cli_json_and_columns_with_spaces(tmp_path, capsys):
    from worldpm_scaling.cli import main

    rng = np.random.default_rng(3)
    x, y = planted_power(rng, alpha=0.2, noise=0.01)
    p = tmp_path / "runs.csv"
    p.write_text("training compute,test loss\n" + "\n".join(f"{a},{b}" for a, b in zip(x, y)))
    assert (
        main(
            ["fit", str(p), "--x", "training compute", "--y", "test loss", "--form", "power", "--fix-E", "0", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"E", "A", "alpha", "ci"} and out["alpha"] == pytest.approx(0.2, abs=0.01)
    assert out["ci"]["alpha"][0] <= out["alpha"] <= out["ci"]["alpha"][1]
    assert main(["fit", str(p), "--x", "nope", "--y", "test loss"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err


def test_fit_cli_chinchilla(tmp_path, capsys):
    from worldpm_scaling.cli import main

    N, D, L = _grid(np.random.default_rng(4))
    p = tmp_path / "nd.csv"
    p.write_text("N,D,loss\n" + "\n".join(f"{a},{b},{c}" for a, b, c in zip(N, D, L)))
    assert main(["fit", str(p), "--x", "N,D", "--y", "loss", "--form", "chinchilla", "--bootstrap", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"E", "A", "B", "alpha", "beta", "ci"}
    assert out["alpha"] == pytest.approx(0.34, abs=0.02)


# -- issue 18: identifiability, frontier intervals, IsoFLOP, bad CLI input ------------------------------


def test_identification_names_wide_or_pinned_exponents():
    from worldpm_scaling.analysis.fits import Interval, identification

    base = dict(E=0.2, A=20.0, B=4.0, n=45)
    tight = ChinchillaFit(
        **base, alpha=0.35, beta=0.3, ci={"alpha": Interval(0.33, 0.37), "beta": Interval(0.28, 0.32)}
    )
    assert identification(tight) == [] and tight.to_dict()["identified"] and tight.to_dict()["frontier"]
    wide = ChinchillaFit(**base, alpha=0.54, beta=0.3, ci={"alpha": Interval(0.11, 2.34), "beta": Interval(0.28, 0.32)})
    why = identification(wide)
    assert len(why) == 1 and "alpha interval [0.11, 2.34] spans 21.3x" in why[0]
    assert wide.to_dict()["frontier"] is None and not wide.to_dict()["identified"]
    touching = ChinchillaFit(
        **base, alpha=0.35, beta=0.3, ci={"alpha": Interval(0.33, 0.37), "beta": Interval(0.0, 0.5)}
    )
    assert "beta interval" in identification(touching)[0] and "touches the bound 0" in identification(touching)[0]
    assert "at its bound" in identification(ChinchillaFit(**base, alpha=5.0, beta=0.3))[0]
    assert "no interval" in identification(ChinchillaFit(**base, alpha=0.35, beta=0.3))[0]


def test_frontier_interval_covers_zero_for_flat_curves_and_not_for_scaling_ones():
    """Flat curves: the running-minimum frontier gave α > 0 with a tight interval; the envelope of
    curves bootstrapped per curve covers 0. A real power law in compute stays clear of 0."""
    from worldpm_scaling.analysis.fits import fit_frontier

    covered = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        curves = {
            f"m{i}": (6 * N * 160 * 2.0 ** np.arange(9, 14), 0.69 * np.exp(rng.normal(0, 0.05, 5)))
            for i, N in enumerate((3e4, 1.2e5, 9.9e5))
        }
        fr = fit_frontier(curves, bootstrap=300, seed=seed)
        covered += fr.fit.ci["alpha"].contains(0.0)
    assert covered >= 17, covered  # 90% intervals: ≥ 17 of 20
    rng = np.random.default_rng(0)
    c = {
        f"m{i}": (x := 6 * N * 160 * 2.0 ** np.arange(9, 14), 3.0 * (x / 1e9) ** -0.2 * np.exp(rng.normal(0, 0.02, 5)))
        for i, N in enumerate((3e4, 1.2e5, 9.9e5))
    }
    fr = fit_frontier(c, bootstrap=300)
    assert fr.fit.ci["alpha"].lo > 0.1 and fr.fit.alpha == pytest.approx(0.2, abs=0.03)


def test_isoflop_recovers_planted_exponent_and_flags_edge_budgets():
    from tests.analysis_synth import ISO_BUDGETS, isoflop_n_opt, isoflop_points
    from worldpm_scaling.analysis.fits import fit_isoflop

    t = isoflop_points(seed=1)
    f = fit_isoflop(t["C"], t["N"], t["loss"], bootstrap=500)
    assert f.a == pytest.approx(0.5, abs=0.02) and f.ci["a"].contains(0.5)
    assert f.b == pytest.approx(0.5, abs=0.02) and f.ci["b"].contains(0.5)
    flagged = [b.C for b in f.budgets if not b.used]
    assert flagged == [ISO_BUDGETS[0], ISO_BUDGETS[-1]]  # planted optimum at / beyond the edge of the sizes
    for b in f.budgets:
        if b.used:
            assert b.N_opt == pytest.approx(isoflop_n_opt(b.C), rel=0.1) and b.N_opt_ci.lo <= b.N_opt <= b.N_opt_ci.hi
        else:
            assert "edge" in b.flag
    assert f.points_used == sum(b.points for b in f.budgets if b.used)


def test_isoflop_needs_three_interior_budgets():
    from tests.analysis_synth import isoflop_points
    from worldpm_scaling.analysis.fits import fit_isoflop

    t = isoflop_points(budgets=np.array([6e10, 6e12, 6e18]))
    with pytest.raises(
        AnalysisInputError, match="needs 3 budgets with an interior loss minimum, got 1 of 3.*C=6e\\+10"
    ):
        fit_isoflop(t["C"], t["N"], t["loss"], bootstrap=10)


def test_fit_cli_isoflop_json(tmp_path, capsys):
    from tests.analysis_synth import isoflop_points
    from worldpm_scaling.cli import main

    p = tmp_path / "iso.csv"
    isoflop_points(seed=2).rename(columns={"C": "budget"}).to_csv(p, index=False)
    assert (
        main(["fit", str(p), "--form", "isoflop", "--x", "budget,N", "--y", "loss", "--bootstrap", "300", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert {"a", "b", "a_ci", "b_ci", "budgets", "points_used"} <= set(out)
    assert abs(out["a"] - 0.5) <= 0.02 and out["a_ci"][0] <= 0.5 <= out["a_ci"][1]
    assert {"C", "N_opt", "D_opt", "points", "used", "flag"} <= set(out["budgets"][0])
    edge = [b for b in out["budgets"] if not b["used"]]
    assert edge and all("edge" in b["flag"] for b in edge)
    assert out["points_used"] == sum(b["points"] for b in out["budgets"] if b["used"])
    # with a D column: D_opt from its own parabola, b agrees
    assert (
        main(["fit", str(p), "--form", "isoflop", "--x", "budget,N,D", "--y", "loss", "--bootstrap", "50", "--json"])
        == 0
    )
    assert abs(json.loads(capsys.readouterr().out)["b"] - 0.5) <= 0.02
    assert main(["fit", str(p), "--form", "isoflop", "--x", "budget", "--y", "loss"]) == 2
    assert "BUDGET,N[,D]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag,value,needle",
    [
        ("--level", "1.5", "--level must be between 0 and 1"),
        ("--level", "0", "--level must be between 0 and 1"),
        ("--bootstrap", "-1", "--bootstrap must be >= 0"),
    ],
)
def test_fit_cli_bad_level_and_bootstrap_named(tmp_path, capsys, flag, value, needle):
    from worldpm_scaling.cli import main

    p = tmp_path / "x.csv"
    p.write_text("x,y\n1,1\n2,0.9\n3,0.8\n4,0.7\n")
    assert main(["fit", str(p), "--x", "x", "--y", "y", flag, value]) == 2
    assert needle in capsys.readouterr().err


def test_fit_cli_chinchilla_not_identified_has_no_frontier(tmp_path, capsys):
    from worldpm_scaling.cli import main

    rng = np.random.default_rng(5)  # 3 sizes over 30x, noisy: the N exponent is not pinned
    N = np.repeat([1e5, 5.5e5, 3e6], 5)
    D = np.tile(160 * 2.0 ** np.arange(9, 14), 3)
    L = (0.2 + 20 * N**-0.35 + 4 * D**-0.3) * np.exp(rng.normal(0, 0.05, len(N)))
    p = tmp_path / "nd.csv"
    p.write_text("N,D,loss\n" + "\n".join(f"{a},{b},{c}" for a, b, c in zip(N, D, L)))
    assert (
        main(["fit", str(p), "--x", "N,D", "--y", "loss", "--form", "chinchilla", "--bootstrap", "20", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["identified"] is False and out["frontier"] is None and out["not_identified"]
    assert main(["fit", str(p), "--x", "N,D", "--y", "loss", "--form", "chinchilla", "--bootstrap", "20"]) == 0
    text = capsys.readouterr().out
    assert "not identified" in text and "no compute-optimal frontier" in text and "N_opt ∝" not in text


def test_fit_chinchilla_one_model_size_is_not_identified(tmp_path, capsys):
    """Issue 31: with one N the optimiser stops at its start and the refits (from that optimum) give
    zero-width intervals; `wps fit --form chinchilla` printed them and a compute-optimal frontier. The
    design rule (fits.design_identification) now says not identified, in text and JSON, with no frontier."""
    import pandas as pd

    from worldpm_scaling.cli import main

    D = np.logspace(8, 10, 8)
    p = tmp_path / "one_size.csv"
    pd.DataFrame({"N": 1e7, "D": D, "loss": PLANT["E"] + PLANT["A"] / 1e7**0.34 + PLANT["B"] / D**0.28}).to_csv(
        p, index=False
    )
    args = ["fit", str(p), "--x", "N,D", "--y", "loss", "--form", "chinchilla", "--bootstrap", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "not identified (1 distinct N value (the form needs 3))" in out and "compute-optimal frontier:" not in out
    assert main(args + ["--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["identified"] is False and d["frontier"] is None and "1 distinct N value" in d["not_identified"][0]
    f = fit_chinchilla(np.full(8, 1e7), D, PLANT["E"] + PLANT["B"] / D**0.28 + 0.1, bootstrap=10)
    assert (f.n_N, f.n_D) == (1, 8)
