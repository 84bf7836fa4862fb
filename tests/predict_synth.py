"""Planted ladders for the prediction tests and bench/predict_coverage.py: runs drawn from a known
L(N, D) and a known loss → accuracy sigmoid, with run-to-run and evaluation noise.

Shape of OLMo's ladder (arXiv 2412.04403 §2): each size trained to 1, 2, 5 and 10 × a Chinchilla-like
budget (D = 20·N tokens), evaluated at intermediate checkpoints; the target is a larger size at its own
budget. The numbers (loss 0.3-0.6, accuracy 0.6-0.85) are in the range of pairwise reward-model losses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LAW = dict(E=0.15, A=30.0, B=14.0, alpha=0.32, beta=0.28)
SIG = dict(a=0.5, b=0.5, k=10.0, L0=0.45)
"""acc = b + a·σ(k·(L0 − L)): chance (0.5) at high loss, → 1 as loss → 0."""
SIZES = np.array([2e6, 4e6, 8e6, 16e6, 32e6])
MULT = (1, 2, 5, 10)
TPN = 20.0  # tokens per parameter at 1x


def law(N, D, p=LAW):
    return p["E"] + p["A"] * np.asarray(N, float) ** -p["alpha"] + p["B"] * np.asarray(D, float) ** -p["beta"]


def sig(L, p=SIG):
    return p["b"] + p["a"] / (1 + np.exp(-p["k"] * (p["L0"] - np.asarray(L, float))))


def draw_run(rng, N, D, *, checkpoints: int = 10, run_sd: float = 0.01, eval_sd: float = 0.005, eval_pairs: int = 2000):
    """One run: (D at each checkpoint, loss, acc). The run's offset (log loss) is shared by its
    checkpoints; evaluation noise is per checkpoint; accuracy is binomial over `eval_pairs` pairs."""
    d = D * np.linspace(1.0 / checkpoints, 1.0, checkpoints)
    off = rng.normal(0, run_sd)
    L = law(N, d) * np.exp(off + rng.normal(0, eval_sd, checkpoints))
    acc = rng.binomial(eval_pairs, sig(L)) / eval_pairs
    return d, L, acc


def ladder_frame(rng, *, sizes=SIZES[:4], mult=MULT, checkpoints: int = 10, **noise) -> pd.DataFrame:
    rows = []
    for i, N in enumerate(sizes):
        for m in mult:
            d, L, acc = draw_run(rng, N, TPN * N * m, checkpoints=checkpoints, **noise)
            rows += [(f"s{i}x{m}", N, dd, ll, aa) for dd, ll, aa in zip(d, L, acc)]
    return pd.DataFrame(rows, columns=["run", "N", "D", "loss", "acc"])


def target(sizes=SIZES[:4], *, n_factor: float = 4.0, mult: float = 5.0) -> tuple[float, float]:
    N = float(sizes[-1]) * n_factor
    return N, TPN * N * mult


ONSET = "demo recipe (24-cell demo: tiny-xxxs, tiny-xxs, tiny-sm, LR 2.5e-4, batch 16; lever 19) seeds 0-7"


def demo_frame(key: str = ONSET) -> pd.DataFrame:
    """The demo's eval curves as a tidy table (wps analyze's input), from the onset study's record of the
    24-cell demo recipe (bench/results/objective_onset.json: 3 sizes × 8 seeds, 5 milestones; category
    losses per seed, and the objective accuracy). Tokens per pair 125, as sweeps/demo.yaml."""
    import json
    from pathlib import Path

    from worldpm_scaling import models, names

    rec = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" / "objective_onset.json").read_text())[
        key
    ]
    rows = []
    for r in rec:
        N = float(models.get(r["model"]).params_non_embedding)
        cell = f"{r['model']}-s{r['seed']}"
        for i, p in enumerate(r["milestones"]):
            for cat, v in r["loss"].items():
                rows.append((cell, r["model"], N, r["seed"], i + 1, float(p), names.eval_loss(cat), v[i]))
            rows.append(
                (cell, r["model"], N, r["seed"], i + 1, float(p), names.eval_acc("objective"), r["objective_acc"][i])
            )
    df = pd.DataFrame(rows, columns=["cell", "model", "N", "seed", "step", "pairs", "metric", "value"])
    df["sweep"], df["status"] = "demo", "FINISHED"
    df["tokens"] = df["pairs"] * 125.0
    df["compute"] = 6 * df["N"] * df["tokens"]
    return df
