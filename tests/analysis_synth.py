"""Synthetic sweeps with planted shapes, shared by analysis tests, the coverage study and docs figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from worldpm_scaling import names


def planted_power(rng, *, alpha: float, n: int = 30, noise: float = 0.02, A: float = 3.0, E: float = 0.0):
    x = np.logspace(15, 21, n)
    y = (E + A * (x / 1e15) ** -alpha) * np.exp(rng.normal(0.0, noise, n))
    return x, y


def sweep_frame(seed: int = 0, *, spike_at: int | None = 700, steps: int = 1000) -> pd.DataFrame:
    """A three-size sweep: adversarial power law for all, objective emergent for the largest, subjective flat."""
    rng = np.random.default_rng(seed)
    models = {"tiny-xs": 1.2e5, "tiny-s": 9.9e5, "tiny-m": 5.7e6}
    milestones = 2.0 ** np.arange(6, 15)
    rows = []
    tpp = 160.0
    for mi, (m, N) in enumerate(models.items()):
        cell = f"c{mi}"
        pairs_per_step = milestones[-1] / steps
        step_of = {p: int(round(p / pairs_per_step)) for p in milestones}
        for cat in names.CATEGORIES:
            for p in milestones:
                if cat == "adversarial":
                    v = 0.9 * (p / 64) ** -(0.05 + 0.02 * mi)
                elif cat == "objective":
                    v = 0.69 if (mi < 2 or p < 2**11) else 0.69 * (p / 2**11) ** -0.25
                else:
                    v = 0.69
                v *= np.exp(rng.normal(0, 0.004))
                rows.append((m, N, cell, step_of[p], p, names.eval_loss(cat), v))
                for s in ("offsetbias", "helpsteer2"):
                    rows.append((m, N, cell, step_of[p], p, names.eval_phi(s, "length"), 0.4 - 0.02 * np.log2(p) + 0.01 * mi))
        g = np.exp(rng.normal(0, 0.1, steps)) * (1 + mi)
        loss = 0.69 * np.exp(-np.arange(steps) / (4000 * (mi + 1))) * np.exp(rng.normal(0, 0.002, steps))
        if spike_at is not None and mi == 2:
            g[spike_at] *= 15
            loss[spike_at + 1:] *= 0.9
        for t in range(1, steps + 1):
            rows.append((m, N, cell, t, t * pairs_per_step, names.TRAIN_GRAD_NORM, g[t - 1]))
            rows.append((m, N, cell, t, t * pairs_per_step, names.TRAIN_LOSS, loss[t - 1]))
    df = pd.DataFrame(rows, columns=["model", "N", "cell", "step", "pairs", "metric", "value"])
    df["sweep"] = "synthetic"
    df["tokens"] = df["pairs"] * tpp
    df["compute"] = 6 * df["N"] * df["tokens"]
    return df[["sweep", "cell", "model", "N", "pairs", "tokens", "compute", "step", "metric", "value"]]
