"""bench/objective_onset.py judges a recipe by the trend class of each size's seed-mean curve, the
class `wps analyze` would give it in the demo's headline: here on planted cells, so a summary that
classified one seed (or the wrong category) would fail."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from objective_onset import summary

MS = [2**k for k in range(9, 14)]


def _cell(model: str, seed: int, adversarial: list[float]) -> dict:
    steps = 8
    return {
        "model": model,
        "seed": seed,
        "milestones": MS,
        "objective_acc": [0.5] * 5,
        "loss": {"adversarial": adversarial, "objective": [0.693] * 5, "subjective": [0.693, 0.70, 0.69, 0.70, 0.695]},
        "grad_norm": [1.0] * steps,
        "train_loss": [0.69] * steps,
        "pairs_seen": [16 * (i + 1) for i in range(steps)],
        "seconds": 1.0,
    }


def test_trend_lines_classify_the_seed_mean_per_category_and_size():
    power = [0.8 * (m / 512) ** -0.5 for m in MS]
    # seed 0 of `b` alone is flat; the mean of its two seeds falls as a power law
    cells = [
        _cell("a", 0, [0.7, 0.69, 0.7, 0.69, 0.7]),
        _cell("a", 1, [0.69, 0.7, 0.69, 0.7, 0.69]),
        _cell("b", 0, [0.69, 0.7, 0.69, 0.7, 0.69]),
        _cell("b", 1, [2 * p - 0.69 for p in power]),
    ]
    text = "\n".join(summary(cells, "planted"))
    assert "trend class of the seed-mean eval loss (wps analyze's classifier; seeds per size: 2):" in text
    lines = {
        ln.split()[0]: ln
        for ln in text.splitlines()
        if ln.startswith("  ") and ln.split()[0] in ("adversarial", "objective", "subjective")
    }
    assert "a flat" in lines["adversarial"] and "b power-law" in lines["adversarial"], lines["adversarial"]
    assert lines["subjective"].count("flat") == 2 and lines["objective"].count("flat") == 2
    mean_b = np.mean([[0.69, 0.7, 0.69, 0.7, 0.69], [2 * p - 0.69 for p in power]], axis=0)
    assert np.all(np.diff(mean_b) < 0)


def test_the_study_flags_emergence_with_the_windows_wps_analyze_uses():
    """The study once used the detector's default loss window (20 points) where the report uses
    run_windows (25 at 512 steps), so a demo run's emergence flag was missing from the study."""
    from objective_onset import spike_line

    from worldpm_scaling.analysis.spikes import detect_spikes, emergence_flags, run_windows

    assert run_windows(512) == (50, 25) and run_windows(40) == (10, 5) and run_windows(4000) == (50, 25)
    rng = np.random.default_rng(3)
    steps = 512
    g = np.exp(rng.normal(0, 0.1, steps))
    loss = 0.5 * np.exp(rng.normal(0, 0.005, steps))
    g[200] *= 20
    loss[212:] *= 0.8  # the drop starts 12 steps after the spike: in 14 of the next 25 points, 8 of the next 20
    r = {
        **_cell("b", 0, [0.7] * 5),
        "grad_norm": g.tolist(),
        "train_loss": loss.tolist(),
        "pairs_seen": (16.0 * np.arange(1, steps + 1)).tolist(),
    }
    assert "1 spikes at pairs 3216; 1 emergence flags (drop 20%)" in spike_line(r), spike_line(r)
    assert emergence_flags(detect_spikes(g), loss) == []  # the detector's default window misses it
