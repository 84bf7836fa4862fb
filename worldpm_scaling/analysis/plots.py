"""Paper figures in one house style: column widths, a colour-blind palette, vector fonts.

Each function takes plain data (curves, fits, spikes) and returns a matplotlib Figure; `save` writes
PDF, SVG and PNG. Nothing here reads MLflow or decides anything.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

COLUMN_IN = 3.25  # one column of a two-column paper
PAGE_IN = 6.75  # full text width
# Okabe & Ito (2008), safe for the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.2,
    "lines.markersize": 3,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "figure.dpi": 150,
    "savefig.bbox": "tight",
}
FORMATS = ("pdf", "svg", "png")


def _legend_above(fig, axes, ncol: int | None = None) -> None:
    """One legend for every panel, above them: `ncol` entries a row (default: all in one row)."""
    handles, labels = {}, []
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.legend(
        [handles[lb] for lb in labels],
        labels,
        loc="upper center",
        ncol=ncol or len(labels),
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write `name`.pdf/.svg/.png (temp + rename, so a crash leaves no half file)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with plt.rc_context(STYLE):  # font embedding is decided at save time
        for fmt in FORMATS:
            p = out / f"{name}.{fmt}"
            tmp = out / f".{name}.tmp.{fmt}"
            fig.savefig(tmp, format=fmt, dpi=200 if fmt == "png" else None)
            tmp.replace(p)
            paths.append(p)
    plt.close(fig)
    return paths


def _sizes_order(models: list[str], n_of: dict[str, float]) -> list[str]:
    return sorted(models, key=lambda m: n_of.get(m, 0.0))


def scaling_figure(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    fits: dict,
    n_of: dict[str, float],
    trends: dict | None = None,
):
    """Loss vs log2(pairs): one panel per category, one curve per model size, fit + interval band.

    `curves[category][model] = (pairs, loss)`; `fits[(category, model)]` = PowerFit or absent;
    an emergent curve (`trends[(category, model)].kind == "emergent"`) is drawn as its broken power law.
    """
    trends = trends or {}
    cats = list(curves)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(cats), figsize=(PAGE_IN, 2.2), squeeze=False)
        models = _sizes_order(sorted({m for c in curves.values() for m in c}), n_of)
        colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
        for ax, cat in zip(axes[0], cats):
            for m in models:
                if m not in curves[cat]:
                    continue
                x, y = curves[cat][m]
                ax.plot(np.log2(x), y, "o", color=colour[m], label=m)
                f = fits.get((cat, m))
                t = trends.get((cat, m))
                if t is not None and t.kind == "emergent":
                    xx = np.logspace(np.log10(x.min()), np.log10(x.max()), 100)
                    ax.plot(np.log2(xx), t.predict_broken(xx), "--", color=colour[m], alpha=0.9)
                    ax.axvline(np.log2(t.break_x), color=colour[m], lw=0.6, ls=":")
                elif f is not None:
                    xx = np.logspace(np.log10(x.min()), np.log10(x.max()), 100)
                    ax.plot(np.log2(xx), f.predict(xx), "-", color=colour[m], alpha=0.8)
                    if "alpha" in f.ci and "A" in f.ci:
                        # band from the alpha interval at the fitted anchor (geometric mean of x)
                        x0 = float(np.exp(np.mean(np.log(x))))
                        y0 = float(f.predict(x0))
                        lo = f.E + (y0 - f.E) * (xx / x0) ** -f.ci["alpha"].lo
                        hi = f.E + (y0 - f.E) * (xx / x0) ** -f.ci["alpha"].hi
                        ax.fill_between(
                            np.log2(xx), np.minimum(lo, hi), np.maximum(lo, hi), color=colour[m], alpha=0.15, lw=0
                        )
            ax.set_title(cat)
            ax.set_xlabel("log2(training pairs)")
        axes[0][0].set_ylabel("BT test loss")
        _legend_above(fig, axes)
    return fig


def compute_figure(
    points: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
    frontier: dict[str, tuple[np.ndarray, np.ndarray]],
    fits: dict,
    n_of: dict[str, float],
    joint: dict | None = None,
):
    """Loss vs training compute (FLOPs), one panel per category, with the lower envelope (frontier),
    the power law fitted to it, and the compute-optimal loss L(N_opt(C), D_opt(C)) of the joint fit
    (pass in `joint` only the fits that are identified: the caller decides, this only draws)."""
    cats = list(points)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(cats), figsize=(PAGE_IN, 2.2), squeeze=False)
        models = _sizes_order(sorted({m for c in points.values() for m in c}), n_of)
        colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
        for ax, cat in zip(axes[0], cats):
            for m in models:
                if m in points[cat]:
                    c, y = points[cat][m]
                    ax.plot(c, y, "o-", color=colour[m], label=m, alpha=0.8)
            if cat in frontier:
                fc, fy = frontier[cat]
                ax.plot(fc, fy, "k--", lw=1.0, label="lower envelope")
                f = fits.get(cat)
                if f is not None:
                    cc = np.logspace(np.log10(fc.min()), np.log10(fc.max()), 100)
                    ax.plot(cc, f.predict(cc), "k-", lw=0.8, alpha=0.5, label="power law fitted to frontier")
                    ax.text(0.97, 0.95, f"α = {f.alpha:.3f}", transform=ax.transAxes, ha="right", va="top")
                j = (joint or {}).get(cat)
                if j is not None:
                    cc = np.logspace(np.log10(fc.min()), np.log10(fc.max()), 100)
                    n_opt, d_opt = j.frontier(cc)
                    ax.plot(
                        cc,
                        j.predict(n_opt, d_opt),
                        ":",
                        color=PALETTE[3],
                        lw=1.2,
                        label="compute-optimal, joint L(N,D) fit",
                    )
            ax.set_xscale("log")
            ax.set_title(cat)
            ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
        axes[0][0].set_ylabel("BT test loss")
        _legend_above(fig, axes)
    return fig


def gradnorm_figure(
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    spikes: dict[str, list],
    emergences: dict[str, list],
    n_of: dict[str, float],
    *,
    model_of: dict[str, str] | None = None,
):
    """Grad norm vs pairs seen per run, spikes (▲) and emergence flags (★). `series` is keyed by run
    label; `model_of[label]` is its model (default: the label itself). One run per model: one panel.
    Several (seeds, or budgets in a grid): one panel per model, its runs in the model's colour."""
    model_of = model_of or {k: k for k in series}
    models = _sizes_order(sorted(set(model_of[k] for k in series)), n_of)
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    several = len(series) > len(models)
    panels = models if several else [None]
    with plt.rc_context(STYLE):
        width = COLUMN_IN if not several else min(PAGE_IN, 2.3 * len(panels))
        fig, axes = plt.subplots(1, len(panels), figsize=(width, 2.2), squeeze=False, sharey=True)
        for ax, panel in zip(axes[0], panels):
            runs = sorted(
                (k for k in series if panel is None or model_of[k] == panel),
                key=lambda k: (models.index(model_of[k]), k),
            )
            for k in runs:
                x, g = series[k]
                col = colour[model_of[k]]
                ax.plot(
                    x,
                    g,
                    "-",
                    color=col,
                    lw=0.5 if several else 0.7,
                    alpha=0.6 if several else 1.0,
                    label=None if several else k,
                )
                for s in spikes.get(k, []):
                    ax.plot(x[s.index], g[s.index], "^", color=col, ms=5, mec="k", mew=0.4)
                for e in emergences.get(k, []):
                    ax.plot(x[e.spike.index], g[e.spike.index], "*", color="k", ms=8)
            ax.set_yscale("log")
            ax.set_xlabel("training pairs")
            if panel is not None:
                ax.set_title(f"{panel} ({len(runs)} runs)")
        axes[0][0].set_ylabel("grad norm (before clipping)")
        if not several:
            axes[0][0].legend(frameon=False)
        fig.tight_layout()
    return fig


def style_figure(phi: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], n_of: dict[str, float]):
    """Phi between the model's preference and style (length, markdown) over training."""
    feats = list(phi)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(feats), figsize=(PAGE_IN, 2.0), squeeze=False)
        for ax, feat in zip(axes[0], feats):
            for i, m in enumerate(_sizes_order(list(phi[feat]), n_of)):
                x, y = phi[feat][m]
                ax.plot(np.log2(x), y, "o-", color=PALETTE[i % len(PALETTE)], label=m)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"Phi(preference, {feat})")
            ax.set_xlabel("log2(training pairs)")
        axes[0][0].set_ylabel("Phi (mean over eval sets)")
        axes[0][-1].legend(frameon=False)
        fig.tight_layout()
    return fig


def isoflop_figure(profiles: dict[str, dict[float, tuple[np.ndarray, np.ndarray]]], fits: dict):
    """IsoFLOP profiles: loss vs model size at fixed compute, one curve per budget, the parabola in log N
    and its minimum (★) for used budgets; flagged budgets drawn hollow without a parabola."""
    cats = list(profiles)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(cats), figsize=(PAGE_IN, 2.2), squeeze=False)
        for ax, cat in zip(axes[0], cats):
            f = fits.get(cat)
            by_c = {b.C: b for b in f.budgets} if f is not None else {}
            for i, (C, (N, L)) in enumerate(sorted(profiles[cat].items())):
                col = PALETTE[i % len(PALETTE)]
                b = by_c.get(C)
                used = b is not None and b.used
                ax.plot(N, L, "o", color=col, mfc=col if used else "none", label=f"C={C:.2g}")
                if b is not None and b.used:
                    u = np.log(N)
                    p = np.polyfit(u, L, 2)
                    uu = np.linspace(u.min(), u.max(), 50)
                    ax.plot(np.exp(uu), np.polyval(p, uu), "-", color=col, lw=0.8)
                    ax.plot(b.N_opt, np.polyval(p, np.log(b.N_opt)), "*", color="k", ms=6)
            ax.set_xscale("log")
            ax.set_title(cat + (f": N_opt ∝ C^{f.a:.2f}" if f is not None else ": no fit"))
            ax.set_xlabel("non-embedding parameters N")
        axes[0][0].set_ylabel("BT test loss")
        _legend_above(fig, axes)
    return fig
