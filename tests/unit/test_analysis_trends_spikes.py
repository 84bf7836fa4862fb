import numpy as np
import pytest

from worldpm_scaling.analysis import AnalysisInputError, classify, detect_spikes, emergence_flags

pytestmark = pytest.mark.unit

X = 2.0 ** np.arange(6, 20)


@pytest.mark.parametrize("seed", range(5))
def test_trend_classes(seed):
    rng = np.random.default_rng(seed)
    noise = lambda: np.exp(rng.normal(0, 0.005, len(X)))
    assert classify(X, 2 * X**-0.1 * noise()).kind == "power-law"
    assert classify(X, 0.69 * noise()).kind == "flat"
    em = classify(X, np.where(X < 2**14, 0.69, 0.69 * (X / 2**14) ** -0.3) * noise())
    assert em.kind == "emergent" and 2**12 <= em.break_x <= 2**16
    assert em.delta_bic > 6


def test_a_hump_back_to_chance_is_not_emergent():
    """The demo's 4-seed mean of tiny-xs objective loss: it climbed above chance and fell back to it.
    A broken power law fits it (rise, then a drop) but the loss never improved: flat, not emergent.
    The same curve ending well below its start is emergent."""
    x = 2.0 ** np.arange(9, 14)
    hump = classify(x, [0.698, 0.740, 0.739, 0.778, 0.688])
    assert hump.kind == "flat" and hump.break_x is not None  # the broken fit won; the shape rule said no
    learned = classify(x, [0.721, 0.785, 0.791, 0.726, 0.342])  # tiny-s-2l in the same demo
    assert learned.kind == "emergent"


def test_planted_spikes_precision_recall():
    rng = np.random.default_rng(7)
    tp = fp = fn = 0
    for _ in range(40):
        n = 1500
        g = np.exp(rng.normal(0, 0.15, n)) * (1 + 0.3 * np.sin(np.arange(n) / 200))
        pos = set(rng.choice(np.arange(60, n - 5), 4, replace=False).tolist())
        for p in pos:
            g[p] *= rng.uniform(5, 20)
        found = {s.index for s in detect_spikes(g)}
        tp += len(found & pos)
        fp += len(found - pos)
        fn += len(pos - found)
    assert tp / (tp + fp) >= 0.95 and tp / (tp + fn) >= 0.95


def test_no_flags_on_clean_series():
    rng = np.random.default_rng(8)
    for _ in range(40):
        assert detect_spikes(np.exp(rng.normal(0, 0.2, 1500)) * np.linspace(2, 1, 1500)) == []


def test_emergence_needs_a_loss_drop():
    rng = np.random.default_rng(9)
    g = np.exp(rng.normal(0, 0.1, 400))
    g[300] *= 12
    loss = 0.6 * np.exp(rng.normal(0, 0.002, 400))
    sp = detect_spikes(g, pairs=np.arange(400) * 1000.0)
    assert [s.index for s in sp] == [300] and sp[0].pairs == 300000.0
    assert emergence_flags(sp, loss) == []
    loss[301:] *= 0.9
    em = emergence_flags(sp, loss)
    assert len(em) == 1 and em[0].drop == pytest.approx(0.1, abs=0.02)


def test_bad_series():
    with pytest.raises(AnalysisInputError, match="empty"):
        detect_spikes([])
    with pytest.raises(AnalysisInputError, match="NaN"):
        detect_spikes([1.0, np.nan, 2.0])
    with pytest.raises(AnalysisInputError, match="at least 5"):
        classify([1, 2, 3], [1, 1, 1])


def test_trend_thresholds_calibrated_at_demo_noise():
    """bench/trend_calibration.py in small: at the noise measured on the demo (σ ≈ 0.127 in log space),
    flat curves at 5 milestones are called flat ≥ 95% of the time (the old point bootstrap: ~91%) and
    emergent breaks at 8 milestones are recovered ≥ 90% (checked here with sampling slack)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from trend_calibration import planted

    rng = np.random.default_rng(2026)
    flat5 = np.mean([classify(*planted("flat", 5, 0.127, rng)[:2]).kind == "flat" for _ in range(400)])
    emerg8 = np.mean([classify(*planted("emergent", 8, 0.127, rng)[:2]).kind == "emergent" for _ in range(300)])
    power8 = np.mean([classify(*planted("power-law", 8, 0.127, rng)[:2]).kind == "power-law" for _ in range(200)])
    assert flat5 >= 0.93 and emerg8 >= 0.86 and power8 >= 0.93, (flat5, emerg8, power8)


def _run(spike_step=None, steps=256, seed=0):
    rng = np.random.default_rng(seed)
    pairs = 32.0 * np.arange(1, steps + 1)
    g = np.exp(rng.normal(0, 0.1, steps))
    loss = 0.5 * np.exp(rng.normal(0, 0.01, steps))
    if spike_step is not None:
        g[spike_step] *= 20
        loss[spike_step + 1 :] *= 0.8
    return pairs, g, loss


def test_break_evidence_sees_a_spike_at_the_break_and_says_none_elsewhere():
    from worldpm_scaling.analysis.spikes import break_evidence

    ms = 2.0 ** np.arange(9, 14)  # 512 … 8192 pairs, 32 pairs a step
    pairs, g, loss = _run(spike_step=179)  # pairs 5760, inside [4096, 8192]
    sp = detect_spikes(g, pairs=pairs)
    em = emergence_flags(sp, loss)
    assert len(sp) == 1 and len(em) == 1
    at = break_evidence("objective", "tiny-s", 5000.0, ms, pairs, g, loss, spikes=sp, emergences=em)
    assert (at.lo, at.hi) == (4096.0, 8192.0) and at.spikes == tuple(sp) and at.emergences == tuple(em)
    assert at.max_z > 7 and at.loss_after < 0.85 * at.loss_before
    assert "1 grad-norm spike(s) at 5760 pairs, 1 with an emergence flag" in at.sentence()
    early = break_evidence("objective", "tiny-s", 1500.0, ms, pairs, g, loss, spikes=sp, emergences=em)
    assert (early.lo, early.hi) == (1024.0, 2048.0) and early.spikes == () and early.max_z < 7
    assert "no grad-norm spike (max robust z" in early.sentence()
    # a break fitted at a milestone (exp(log 4096) is 4095.99…) opens the window at that milestone
    on = break_evidence(
        "objective", "tiny-s", float(np.exp(np.log(4096.0))) - 1e-9, ms, pairs, g, loss, spikes=sp, emergences=em
    )
    assert (on.lo, on.hi) == (4096.0, 8192.0) and on.spikes == tuple(sp)
    with pytest.raises(AnalysisInputError, match="milestones"):
        break_evidence("objective", "tiny-s", 1500.0, ms[:1], pairs, g, loss, spikes=sp, emergences=em)


def test_report_checks_each_emergent_break_against_the_grad_norm(tmp_path):
    from tests.analysis_synth import sweep_frame
    from worldpm_scaling.analysis.report import analyze

    # tiny-m's objective curve breaks at 2^11 pairs; 16.4 pairs a step, so step 180 is inside [2^11, 2^12]
    at = analyze(sweep_frame(spike_at=180), tmp_path / "a", bootstrap=50, figures=False)
    away = analyze(sweep_frame(spike_at=700), tmp_path / "b", bootstrap=50, figures=False)
    (b,), (c,) = at.break_evidence, away.break_evidence
    assert (b.category, b.model) == ("objective", "tiny-m") and len(b.spikes) == 1 and len(b.emergences) == 1
    assert c.spikes == () and len(away.spikes["tiny-m"]) == 1  # the spike is there, but not at the break
    assert b.sentence() in at.headline() and c.sentence() in (tmp_path / "b/report.md").read_text()
