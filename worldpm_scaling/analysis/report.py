"""`analyze(df, out_dir)`: every fit, class, flag and figure of a sweep, and report.md.

Takes the tidy table of load.py; writes figures/ and report.md; returns a Report whose headline is
what `make demo` prints. All numbers in the report are computed here from the runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import names
from . import plots
from .errors import AnalysisInputError
from .fits import ChinchillaFit, PowerFit, fit_chinchilla, fit_power
from .spikes import Emergence, Spike, detect_spikes, emergence_flags
from .trends import Trend, classify


@dataclass
class Report:
    sweep: str
    models: list[str]
    n_of: dict[str, float]
    fits: dict[tuple[str, str], PowerFit] = field(default_factory=dict)
    trends: dict[tuple[str, str], Trend] = field(default_factory=dict)
    compute_fits: dict[str, PowerFit] = field(default_factory=dict)
    joint_fits: dict[str, ChinchillaFit] = field(default_factory=dict)
    joint_caveats: dict[str, str] = field(default_factory=dict)
    spikes: dict[str, list[Spike]] = field(default_factory=dict)
    emergences: dict[str, list[Emergence]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    report_path: Path | None = None

    def headline(self) -> str:
        lines = [f"sweep {self.sweep}: fitted L = A·pairs^-α per category and model size (90% bootstrap CI)"]
        for cat in names.CATEGORIES:
            parts = []
            for m in self.models:
                f, t = self.fits.get((cat, m)), self.trends.get((cat, m))
                if f is None or t is None:
                    continue
                ci = f.ci.get("alpha")
                parts.append(f"{m} α={f.alpha:.3f}" + (f" [{ci.lo:.3f}, {ci.hi:.3f}]" if ci else "") + f" {t.kind}")
            if parts:
                lines.append(f"  {cat:<11} " + "; ".join(parts))
        for cat, f in self.compute_fits.items():
            ci = f.ci.get("alpha")
            lines.append(f"  {cat:<11} vs compute (frontier): α={f.alpha:.3f}" + (f" [{ci.lo:.3f}, {ci.hi:.3f}]" if ci else ""))
        for cat, j in self.joint_fits.items():
            a, b = j.frontier_exponents
            lines.append(f"  {cat:<11} joint L(N,D): α={j.alpha:.3f} β={j.beta:.3f} → "
                         + (f"not identified ({self.joint_caveats[cat]})" if self.joint_caveats.get(cat)
                            else f"N_opt ∝ C^{a:.2f}, D_opt ∝ C^{b:.2f}"))
        n_sp = sum(len(v) for v in self.spikes.values())
        n_em = sum(len(v) for v in self.emergences.values())
        lines.append(f"  grad-norm spikes: {n_sp}; emergence flags (spike then loss drop): {n_em}"
                     + "".join(f"; {m} at {e.spike.pairs:.0f} pairs" for m, es in self.emergences.items() for e in es
                               if e.spike.pairs is not None))
        return "\n".join(lines)


def curve(df: pd.DataFrame, metric: str, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, value) of one metric for one model, sorted, one point per pairs value."""
    d = df[(df.metric == metric) & (df.model == model)].dropna(subset=["pairs"])
    d = d.groupby("pairs", as_index=False)["value"].mean().sort_values("pairs")
    return d["pairs"].to_numpy(float), d["value"].to_numpy(float)


def analyze(df: pd.DataFrame, out_dir: str | Path, *, bootstrap: int = 1000, level: float = 0.9) -> Report:
    if df.empty:
        raise AnalysisInputError("no runs to analyse (empty table)")
    out = Path(out_dir)
    sweep = str(df["sweep"].iloc[0])
    n_of = df.groupby("model")["N"].first().to_dict()
    models = sorted(n_of, key=lambda m: n_of[m])
    rep = Report(sweep=sweep, models=models, n_of=n_of)

    curves: dict[str, dict[str, tuple]] = {}
    compute_pts: dict[str, dict[str, tuple]] = {}
    frontier: dict[str, tuple] = {}
    for cat in names.CATEGORIES:
        key = names.eval_loss(cat)
        for m in models:
            x, y = curve(df, key, m)
            ok = (x > 0) & np.isfinite(y) & (y > 0)
            x, y = x[ok], y[ok]
            if len(x) < 3:
                continue
            curves.setdefault(cat, {})[m] = (x, y)
            compute_pts.setdefault(cat, {})[m] = (6.0 * n_of[m] * x * _tokens_per_pair(df, m), y)
            try:
                rep.fits[(cat, m)] = fit_power(x, y, fix_E=0.0, bootstrap=bootstrap, level=level,
                                               x_name="pairs", y_name=key)
                if len(x) >= 5:
                    rep.trends[(cat, m)] = classify(x, y, level=level)
            except ValueError as e:
                rep.notes.append(f"{cat}/{m}: {e}")
        if cat in curves and len(curves[cat]) >= 3:
            Ns = np.concatenate([np.full(len(x), n_of[m]) for m, (x, _) in curves[cat].items()])
            Ds = np.concatenate([x * _tokens_per_pair(df, m) for m, (x, _) in curves[cat].items()])
            Ls = np.concatenate([y for _, y in curves[cat].values()])
            try:  # the bootstrap of a 5-parameter fit is ~100x a power law's: cap it
                j = rep.joint_fits[cat] = fit_chinchilla(Ns, Ds, Ls, bootstrap=min(bootstrap, 100), level=level,
                                                         names=("N", "tokens"), y_name=key)
                rep.joint_caveats[cat] = joint_caveat(j, Ns, Ds, Ls)
            except ValueError as e:
                rep.notes.append(f"{cat} joint L(N, D): {e}")
        if cat in compute_pts:
            allc = np.concatenate([c for c, _ in compute_pts[cat].values()])
            ally = np.concatenate([y for _, y in compute_pts[cat].values()])
            order = np.argsort(allc)
            fc, fy = allc[order], np.minimum.accumulate(ally[order])
            frontier[cat] = (fc, fy)
            if len(np.unique(fc)) >= 3:
                try:
                    rep.compute_fits[cat] = fit_power(fc, fy, fix_E=0.0, bootstrap=bootstrap, level=level,
                                                      x_name="compute", y_name=key)
                except ValueError as e:
                    rep.notes.append(f"{cat} vs compute: {e}")

    grad_series = {}
    for m in models:
        d = df[(df.model == m) & (df.metric == names.TRAIN_GRAD_NORM)].sort_values("step")
        if len(d) < 20:
            continue
        g = d["value"].to_numpy(float)
        g = np.where(g > 0, g, np.nan)
        d = d[np.isfinite(g)]
        g = d["value"].to_numpy(float)
        pairs = d["pairs"].to_numpy(float)
        grad_series[m] = (pairs, g)
        window = max(10, min(50, len(g) // 4))
        sp = detect_spikes(g, steps=d["step"].to_numpy(float), pairs=pairs, window=window)
        rep.spikes[m] = sp
        loss = df[(df.model == m) & (df.metric == names.TRAIN_LOSS)].set_index("step")["value"]
        loss = loss.reindex(d["step"]).to_numpy(float)
        rep.emergences[m] = emergence_flags(sp, loss, window=max(5, window // 2)) if np.isfinite(loss).all() else []

    phi: dict[str, dict[str, tuple]] = {}
    for feat in names.STYLE_FEATURES:
        for m in models:
            keys = [names.eval_phi(s, feat) for s in names.EVAL_SETS]
            d = df[(df.model == m) & (df.metric.isin(keys))].dropna(subset=["pairs", "value"])
            if d.empty:
                continue
            g = d.groupby("pairs")["value"].mean().sort_index()
            phi.setdefault(feat, {})[m] = (g.index.to_numpy(float), g.to_numpy(float))

    figdir = out / "figures"
    if curves:
        rep.figures += plots.save(plots.scaling_figure(curves, rep.fits, n_of, rep.trends), figdir, "loss_vs_pairs")
        rep.figures += plots.save(plots.compute_figure(
            compute_pts, frontier, rep.compute_fits, n_of,
            {c: j for c, j in rep.joint_fits.items() if not rep.joint_caveats.get(c)}),
                                  figdir, "loss_vs_compute")
    if grad_series:
        rep.figures += plots.save(plots.gradnorm_figure(grad_series, rep.spikes, rep.emergences, n_of), figdir, "grad_norm")
    if phi:
        rep.figures += plots.save(plots.style_figure(phi, n_of), figdir, "style_phi")
    rep.report_path = write_markdown(rep, out / "report.md", phi)
    return rep


def joint_caveat(j: ChinchillaFit, N: np.ndarray, D: np.ndarray, L: np.ndarray, *, min_share: float = 0.01) -> str:
    """Why a joint fit's exponents may mean nothing: a term that moves the loss by < 1% over the
    data, or an exponent pinned at its bound, is not identified by these runs."""
    out = []
    for k, term in (("alpha", j.A * N ** -j.alpha), ("beta", j.B * D ** -j.beta)):
        span = float(np.ptp(term) / np.median(L))
        if not 1e-3 < getattr(j, k) < 4.99:
            out.append(f"{k} at its bound")
        elif span < min_share:
            out.append(f"{'N' if k == 'alpha' else 'D'} term moves L by {span:.1%}: {k} not identified")
    return "; ".join(out)


def _tokens_per_pair(df: pd.DataFrame, model: str) -> float:
    d = df[(df.model == model)].dropna(subset=["pairs", "tokens"])
    d = d[d.pairs > 0]
    return float((d.tokens / d.pairs).median()) if len(d) else 1.0


def write_markdown(rep: Report, path: Path, phi: dict) -> Path:
    L = [f"# Scaling report: sweep `{rep.sweep}`", "",
         "All exponents are fitted to this sweep's runs (the paper itself fits none). "
         "Intervals are 90% bootstrap intervals over the curve's points.", "",
         "## Test loss vs training pairs (L = A·pairs^-α)", "",
         "| category | model | N (non-emb) | points | α | 90% CI | leave-largest-out error | trend | evidence |",
         "|---|---|---|---|---|---|---|---|---|"]
    for cat in names.CATEGORIES:
        for m in rep.models:
            f = rep.fits.get((cat, m))
            if f is None:
                continue
            t = rep.trends.get((cat, m))
            ci = f.ci.get("alpha")
            ex = f"{f.extrapolation_rel_error:.1%}" if f.extrapolation_rel_error is not None else "–"
            L.append(f"| {cat} | {m} | {rep.n_of[m]:.3g} | {f.n} | {f.alpha:.4f} | "
                     + (f"[{ci.lo:.4f}, {ci.hi:.4f}]" if ci else "–") + f" | {ex} | "
                     + (f"**{t.kind}** | {t.evidence()} |" if t else "– | too few points |"))
    if rep.compute_fits:
        L += ["", "## Test loss vs training compute (frontier over model sizes)", "",
              "| category | α | 90% CI | points |", "|---|---|---|---|"]
        for cat, f in rep.compute_fits.items():
            ci = f.ci.get("alpha")
            L.append(f"| {cat} | {f.alpha:.4f} | " + (f"[{ci.lo:.4f}, {ci.hi:.4f}]" if ci else "–") + f" | {f.n} |")
    if rep.joint_fits:
        L += ["", "## Joint fit L(N, D) = E + A/N^α + B/D^β (D in tokens) and the compute-optimal frontier", "",
              "| category | E | A | B | α (90% CI) | β (90% CI) | N_opt ∝ C^a | D_opt ∝ C^b | points | note |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for cat, j in rep.joint_fits.items():
            a, b = j.frontier_exponents
            ci = lambda k: f" [{j.ci[k].lo:.3f}, {j.ci[k].hi:.3f}]" if k in j.ci else ""  # noqa: E731
            L.append(f"| {cat} | {j.E:.4g} | {j.A:.4g} | {j.B:.4g} | {j.alpha:.3f}{ci('alpha')} | "
                     f"{j.beta:.3f}{ci('beta')} | {a:.3f} | {b:.3f} | {j.n} |"
                     f" {rep.joint_caveats.get(cat, '')} |")
        L.append("")
        L.append(f"Model sizes: {len(rep.models)}. With few sizes the N term is weakly identified: read the "
                 "α interval before the frontier exponents.")
    L += ["", "## Gradient spikes and emergence", ""]
    if not any(rep.spikes.values()):
        L.append("No grad-norm spikes (robust z > 7 over a trailing median/MAD window) in any run.")
    for m, sp in rep.spikes.items():
        for s in sp:
            em = any(e.spike is s for e in rep.emergences.get(m, []))
            L.append(f"- {m}: spike at step {s.step:.0f} ({s.pairs:.0f} pairs), z = {s.z:.1f}"
                     + (" — followed by a significant loss drop (emergence flag)" if em else ""))
    if phi:
        L += ["", "## Style: Phi between the model's preference and style indicators", "",
              "| feature | model | first milestone | last milestone |", "|---|---|---|---|"]
        for feat, per in phi.items():
            for m, (x, y) in per.items():
                L.append(f"| {feat} | {m} | {y[0]:+.3f} ({x[0]:.0f} pairs) | {y[-1]:+.3f} ({x[-1]:.0f} pairs) |")
    if rep.figures:
        L += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in rep.figures if p.suffix == ".png"]
    if rep.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in rep.notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(L) + "\n")
    tmp.replace(path)
    return path
