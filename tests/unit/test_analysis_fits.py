import json

import numpy as np
import pytest

from tests.analysis_synth import planted_power
from worldpm_scaling.analysis import AnalysisInputError, fit_chinchilla, fit_power
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


@pytest.mark.parametrize("x,y,needle", [
    ([], [], "empty"),
    ([1, 2, np.nan, 4], [1, 2, 3, 4], "NaN"),
    ([1, 2, 0, 4], [1, 0.9, 0.8, 0.7], "must be positive"),
    ([1, 2], [1.0, 0.9], "cannot determine"),
    ([1, 2, 3, 4], [1, np.nan, 3, 4], "NaN"),
])
def test_bad_input_named(x, y, needle):
    with pytest.raises(AnalysisInputError, match=needle):
        fit_power(x, y, fix_E=0.0, bootstrap=10, x_name="compute")


def test_fit_cli_json_and_columns_with_spaces(tmp_path, capsys):
    from worldpm_scaling.cli import main

    rng = np.random.default_rng(3)
    x, y = planted_power(rng, alpha=0.2, noise=0.01)
    p = tmp_path / "runs.csv"
    p.write_text("training compute,test loss\n" + "\n".join(f"{a},{b}" for a, b in zip(x, y)))
    assert main(["fit", str(p), "--x", "training compute", "--y", "test loss", "--form", "power",
                 "--fix-E", "0", "--json"]) == 0
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
