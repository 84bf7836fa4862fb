"""analyze() end to end over a synthetic sweep with planted shapes: every figure rendered (Agg), report.md."""

import pytest

from tests.analysis_synth import sweep_frame
from worldpm_scaling.analysis.report import analyze

pytestmark = [pytest.mark.integration]


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
    assert "## Joint fit L(N, D)" in text and "not identified" in text  # flat categories say so
    # the planted adversarial loss has no N term (each size's own power law in pairs): its N exponent is
    # not pinned, so the joint fit is not identified and gives no frontier (it used to be drawn)
    assert not rep.joint_identified("adversarial") and "alpha interval" in rep.joint_caveats["adversarial"]
    assert rep.compute_fits["subjective"].ci["alpha"].contains(0.0)  # flat: no scaling with compute
    assert "compute-optimal, joint" not in (tmp_path / "figures" / "loss_vs_compute.svg").read_text()
    head = rep.headline()
    assert "adversarial" in head and "emergent" in head and "emergence flags" in head
    for stem in ("loss_vs_pairs", "loss_vs_compute", "grad_norm", "style_phi"):
        for ext in ("pdf", "svg", "png"):
            p = tmp_path / "figures" / f"{stem}.{ext}"
            assert p.stat().st_size > 5000, p
    # vector fonts in the PDF (Type 42, not Type 3)
    pdf = (tmp_path / "figures" / "loss_vs_pairs.pdf").read_bytes()
    assert b"/Subtype /Type3" not in pdf and (b"/Subtype /TrueType" in pdf or b"/CIDFontType2" in pdf)


def test_grid_sweep_isoflop_report_and_figure(tmp_path):
    """A grid-mode sweep (one cell per size × data budget) gets IsoFLOP profiles, a fit and a figure."""
    import json

    from tests.analysis_synth import grid_sweep

    rep = analyze(grid_sweep(), tmp_path, bootstrap=100)
    assert rep.mode == "grid"
    iso = rep.isoflop["adversarial"]
    assert abs(iso.a - 0.5) <= 0.02 and iso.ci["a"].contains(0.5)
    assert any(not b.used and "edge" in b.flag for b in iso.budgets)
    assert "adversarial IsoFLOP: N_opt ∝ C^0.50" in rep.headline()
    assert "## IsoFLOP profiles" in rep.report_path.read_text()
    j = json.loads(rep.json_path.read_text())["isoflop"]["adversarial"]
    assert {"a", "b", "a_ci", "b_ci", "budgets", "points_used"} <= set(j)
    for ext in ("pdf", "svg", "png"):
        assert (tmp_path / "figures" / f"isoflop.{ext}").stat().st_size > 5000
    # identified joint fit (planted α = β = 0.3): its compute-optimal line is drawn
    assert rep.joint_identified("adversarial")
    assert "compute-optimal, joint" in (tmp_path / "figures" / "loss_vs_compute.svg").read_text()
