"""The prediction figure (analysis/predict.py), in plots.py's house style: per eval category, the ladder's
points, step 1's fitted loss at the target's N with the predicted interval at each milestone and the
actual values; beside it accuracy vs loss with step 2's sigmoid."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

from .plots import PAGE_IN, PALETTE, STYLE, _legend_above


def prediction_figure(preds: dict, n_of: dict[str, float]):
    """`preds`: category → SweepPrediction (one row of two panels each)."""
    cats = list(preds)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(cats), 2, figsize=(PAGE_IN, 2.1 * len(cats) + 0.4), squeeze=False)
        for row, cat in enumerate(cats):
            sp = preds[cat]
            p = sp.prediction
            ax, ax2 = axes[row]
            for i, m in enumerate(sp.ladder):
                D, L = sp.points.get(m, (np.empty(0), np.empty(0)))
                ax.scatter(D, L, s=6, color=PALETTE[i % len(PALETTE)], alpha=0.6, label=f"{m} (ladder)")
            if p.loss is not None:
                Dmin = min(
                    [float(v[0].min()) for k, v in sp.points.items() if k != "acc" and len(v[0])] + [float(p.D.min())]
                )
                grid = np.logspace(np.log10(Dmin), np.log10(float(p.D.max())), 60)
                ax.plot(
                    grid,
                    p.step1.predict(np.full(len(grid), sp.target_N), grid),
                    color="black",
                    lw=1.0,
                    label=f"step 1 at {sp.target}'s N",
                )
                pred = np.array([b.pred for b in p.loss])
                err = np.array([[b.pred - b.lo for b in p.loss], [b.hi - b.pred for b in p.loss]])
                ax.errorbar(
                    p.D,
                    pred,
                    yerr=np.maximum(err, 0),
                    fmt="o",
                    ms=3,
                    color=PALETTE[3],
                    capsize=2,
                    label=f"predicted ({p.level:.0%})",
                )
            if sp.actual_loss is not None:
                ax.scatter(p.D, sp.actual_loss, marker="*", s=30, color="black", zorder=5, label=f"{sp.target} actual")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks ran into each other
            ax.set_xlabel("training tokens D")
            ax.set_ylabel(f"{cat} loss")
            ax.set_title(f"{cat}: {sp.verdict}")
            if "acc" in sp.points and p.step2 is not None:
                L, A = sp.points["acc"]
                ax2.scatter(L, A, s=5, color=PALETTE[0], alpha=0.5, label="ladder rows")
                lo = min(float(L.min()), *(b.lo for b in p.loss)) if p.loss else float(L.min())
                g = np.linspace(lo, float(L.max()), 100)
                ax2.plot(g, p.step2.predict(g), color="black", lw=1.0, label="step 2 sigmoid")
                if p.acc is not None:
                    ax2.errorbar(
                        [b.pred for b in p.loss],
                        [b.pred for b in p.acc],
                        yerr=np.maximum([[b.pred - b.lo for b in p.acc], [b.hi - b.pred for b in p.acc]], 0),
                        fmt="o",
                        ms=3,
                        color=PALETTE[3],
                        capsize=2,
                    )
                if sp.actual_acc is not None and sp.actual_loss is not None:
                    ax2.scatter(sp.actual_loss, sp.actual_acc, marker="*", s=30, color="black", zorder=5)
                ax2.set_xlabel(f"{cat} loss")
                ax2.set_ylabel(f"{cat} accuracy")
            else:
                ax2.text(
                    0.5,
                    0.5,
                    "no accuracy (step 2) for this category",
                    ha="center",
                    va="center",
                    transform=ax2.transAxes,
                )
                ax2.set_axis_off()
        _legend_above(fig, axes, ncol=4)
    return fig
