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
                    rows.append(
                        (m, N, cell, step_of[p], p, names.eval_phi(s, "length"), 0.4 - 0.02 * np.log2(p) + 0.01 * mi)
                    )
        g = np.exp(rng.normal(0, 0.1, steps)) * (1 + mi)
        loss = 0.69 * np.exp(-np.arange(steps) / (4000 * (mi + 1))) * np.exp(rng.normal(0, 0.002, steps))
        if spike_at is not None and mi == 2:
            g[spike_at] *= 15
            loss[spike_at + 1 :] *= 0.9
        for t in range(1, steps + 1):
            rows.append((m, N, cell, t, t * pairs_per_step, names.TRAIN_GRAD_NORM, g[t - 1]))
            rows.append((m, N, cell, t, t * pairs_per_step, names.TRAIN_LOSS, loss[t - 1]))
    return _frame(rows, "synthetic", tpp)


def _frame(rows, sweep: str, tpp: float) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["model", "N", "cell", "step", "pairs", "metric", "value"])
    df["sweep"] = sweep
    df["tokens"] = df["pairs"] * tpp
    df["compute"] = 6 * df["N"] * df["tokens"]
    df["status"] = "FINISHED"
    return df[["sweep", "cell", "model", "N", "pairs", "tokens", "compute", "step", "metric", "value", "status"]]


JOINT = dict(E=0.2, A=20.0, B=4.0, alpha=0.35, beta=0.3)
"""The planted L(N, D) = E + A/N^α + B/D^β (D in tokens) of `joint_sweep`: both terms move the loss."""


def joint_loss(N, D, p=JOINT):
    return p["E"] + p["A"] * np.asarray(N, float) ** -p["alpha"] + p["B"] * np.asarray(D, float) ** -p["beta"]


def joint_sweep(
    sizes: int = 5, *, noise: float = 0.002, milestones: int = 9, seed: int = 0, span: float = 100.0, flat: bool = True
) -> pd.DataFrame:
    """Milestone-mode sweep whose adversarial loss follows JOINT, `sizes` sizes log-spaced over `span`
    from 1e5 parameters, milestones 2^6 …; with `flat`, subjective too, flat (0.69). Multiplicative noise."""
    rng = np.random.default_rng(seed)
    tpp = 160.0
    rows = []
    for i, N in enumerate(np.logspace(5, 5 + np.log10(span), sizes)):
        m = f"size{i}"
        for k, p in enumerate(2.0 ** np.arange(6, 6 + milestones)):
            rows.append(
                (
                    m,
                    N,
                    f"c{i}",
                    k + 1,
                    p,
                    names.eval_loss("adversarial"),
                    joint_loss(N, p * tpp) * np.exp(rng.normal(0, noise)),
                )
            )
            if flat:
                rows.append(
                    (m, N, f"c{i}", k + 1, p, names.eval_loss("subjective"), 0.69 * np.exp(rng.normal(0, noise)))
                )
    return _frame(rows, f"joint{sizes}", tpp)


ISO = dict(E=0.2, A=30.0, B=30.0, alpha=0.3, beta=0.3)
"""α = β: the compute-optimal N_opt ∝ C^(β/(α+β)) = C^0.5 exactly."""


ISO_SIZES = np.logspace(5, 9, 17)
ISO_BUDGETS = 6 * 10.0 ** (2 * np.array([5.1, 6.0, 6.6, 7.2, 7.8, 8.4, 9.3]))
"""Budgets whose planted N_opt = (C/6)^0.5 is 10^5.1 … 10^9.3: the first and last lie at (or beyond) the
edge of ISO_SIZES (10^5 … 10^9), the others well inside."""


def isoflop_points(*, budgets=ISO_BUDGETS, sizes=ISO_SIZES, noise: float = 0.002, seed: int = 0) -> pd.DataFrame:
    """IsoFLOP table (C, N, D, loss): every size at every budget, D = C / (6N), loss from ISO."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        for N in sizes:
            D = C / (6 * N)
            rows.append((C, N, D, joint_loss(N, D, ISO) * np.exp(rng.normal(0, noise))))
    return pd.DataFrame(rows, columns=["C", "N", "D", "loss"])


def isoflop_n_opt(C):
    """The planted compute-optimal N for ISO (C = 6·N·D)."""
    p = ISO
    s = p["alpha"] + p["beta"]
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s)
    return G * (np.asarray(C, float) / 6) ** (p["beta"] / s)


def grid_sweep(
    *,
    sizes=np.logspace(5, 8, 9),  # noqa: B008 — read, never mutated
    data=2.0 ** np.arange(8, 20, 2),  # noqa: B008 — read, never mutated
    noise: float = 0.002,
    seed: int = 0,
) -> pd.DataFrame:
    """Grid-mode sweep: one cell per size × data budget, each cell's adversarial loss (from ISO) evaluated
    once at its own budget."""
    rng = np.random.default_rng(seed)
    tpp = 100.0
    rows = []
    for i, N in enumerate(sizes):
        for j, p in enumerate(data):
            rows.append(
                (
                    f"size{i}",
                    N,
                    f"c{i}-{j}",
                    10,
                    p,
                    names.eval_loss("adversarial"),
                    joint_loss(N, p * tpp, ISO) * np.exp(rng.normal(0, noise)),
                )
            )
    return _frame(rows, "grid", tpp)
