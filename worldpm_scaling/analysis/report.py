"""`analyze(df, out_dir)`: every fit, class, flag and figure of a sweep, report.md and report.json.

Takes the tidy table of load.py; writes figures/, report.md and report.json; returns a Report whose
headline is what `make demo` prints. All numbers in the report are computed here from the runs.

What the report refuses to say: only FINISHED runs are fitted unless `include_unfinished`; every
cell left out and every curve too short or missing milestones is listed with the reason; a joint
L(N, D) fit whose exponents are not identified (fits.identification), or whose compute-optimal loss
runs below every measured point, is reported as such and gives no frontier; the frontier vs
compute is fitted to the lower envelope of the curves with intervals from resampling each curve.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import names
from . import plots
from .errors import AnalysisInputError
from .fits import (
    EXPONENT_BOUNDS,
    ChinchillaFit,
    FrontierFit,
    IsoflopFit,
    PowerFit,
    fit_chinchilla,
    fit_frontier,
    fit_isoflop,
    fit_power,
    frontier_gap,
    identification,
)
from .load import SEED, STATUS, with_seed
from .predict import SweepPrediction, backtest, predict_sweep_metric
from .spikes import (
    SPIKE_Z,
    BreakEvidence,
    Emergence,
    Spike,
    break_evidence,
    break_sentences,
    detect_spikes,
    emergence_flags,
    run_windows,
)
from .trends import Trend, classify

MIN_FIT_POINTS = 3
MIN_TREND_POINTS = 5
POOR_FIT_MIN_GAP = 0.01
POOR_FIT_RMS = 0.05
"""A joint fit whose compute-optimal loss runs more than POOR_FIT_MIN_GAP below every measured envelope
point, further than twice its residual rms or with a residual rms above POOR_FIT_RMS (5% in log loss),
gives no frontier (poor_fit_caveat)."""


@dataclass
class Report:
    sweep: str
    models: list[str]
    n_of: dict[str, float]
    level: float = 0.9
    mode: str = "milestones"
    fits: dict[tuple[str, str], PowerFit] = field(default_factory=dict)
    trends: dict[tuple[str, str], Trend] = field(default_factory=dict)
    compute_fits: dict[str, PowerFit] = field(default_factory=dict)
    frontiers: dict[str, FrontierFit] = field(default_factory=dict)
    joint_fits: dict[str, ChinchillaFit] = field(default_factory=dict)
    joint_caveats: dict[str, str] = field(default_factory=dict)
    isoflop: dict[str, IsoflopFit] = field(default_factory=dict)
    isoflop_notes: dict[str, str] = field(default_factory=dict)
    isoflop_profiles: dict[str, dict[float, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    left_out: list[dict] = field(default_factory=list)
    """cells not fitted: {cell, model, status, reason}"""
    curve_notes: list[dict] = field(default_factory=list)
    """curves too short or incomplete: {category, model, points, reason}"""
    seeds: dict[str, list[int]] = field(default_factory=dict)
    """model → the seeds of its runs. Eval curves are the mean over them; spikes are per run."""
    spikes: dict[str, list[Spike]] = field(default_factory=dict)
    """run label (the model, or `model seed s` when it has several seeds) → its grad-norm spikes"""
    emergences: dict[str, list[Emergence]] = field(default_factory=dict)
    break_evidence: list[BreakEvidence] = field(default_factory=list)
    """Per emergent trend: did its run's grad norm spike, with a loss drop, where the eval curve broke?"""
    predictions: dict[str, SweepPrediction] = field(default_factory=dict)
    """eval category or set → the target size predicted from the smaller ones (analysis/predict.py)."""
    backtests: dict[str, list[SweepPrediction]] = field(default_factory=dict)
    """category → each size from the third up, predicted from the sizes below it."""
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    report_path: Path | None = None
    json_path: Path | None = None

    def seeds_phrase(self) -> str:
        """', curves averaged over 4 seeds' when some model has several seeds, else ''."""
        counts = sorted({len(v) for v in self.seeds.values()})
        if not counts or counts == [1]:
            return ""
        k = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        return f", curves averaged over {k} seeds"

    def joint_identified(self, cat: str) -> bool:
        return cat in self.joint_fits and not self.joint_caveats.get(cat)

    def headline(self) -> str:
        lines = [
            f"sweep {self.sweep}: fitted L = A·pairs^-α per category and model size "
            f"({self.level:.0%} bootstrap CI)" + self.seeds_phrase()
        ]
        for cat in names.CATEGORIES:
            parts = []
            for m in self.models:
                f, t = self.fits.get((cat, m)), self.trends.get((cat, m))
                if f is None:
                    continue
                ci = f.ci.get("alpha")
                parts.append(
                    f"{m} α={f.alpha:.3f}"
                    + (f" [{ci.lo:.3f}, {ci.hi:.3f}]" if ci else "")
                    + (f" {t.kind}" if t else f" (no class: {f.n} points)")
                )
            if parts:
                lines.append(f"  {cat:<11} " + "; ".join(parts))
        for cat, f in self.compute_fits.items():
            ci = f.ci.get("alpha")
            lines.append(
                f"  {cat:<11} vs compute (frontier): α={f.alpha:.3f}"
                + (f" [{ci.lo:.3f}, {ci.hi:.3f}]" if ci else "")
                + (" — interval covers 0: no scaling with compute" if ci and ci.contains(0.0) else "")
            )
        for cat, j in self.joint_fits.items():
            a, b = j.frontier_exponents
            if self.joint_caveats.get(cat):
                lines.append(f"  {cat:<11} joint L(N,D): not identified ({self.joint_caveats[cat]}); no frontier")
            else:
                ci = lambda k: f" [{j.ci[k].lo:.3f}, {j.ci[k].hi:.3f}]" if k in j.ci else ""  # noqa: B023 — called in this iteration
                lines.append(
                    f"  {cat:<11} joint L(N,D): α={j.alpha:.3f}{ci('alpha')} β={j.beta:.3f}{ci('beta')} → "
                    f"N_opt ∝ C^{a:.2f}, D_opt ∝ C^{b:.2f}"
                )
        for cat, iso in self.isoflop.items():
            lines.append(
                f"  {cat:<11} IsoFLOP: N_opt ∝ C^{iso.a:.2f}"
                + (f" [{iso.ci['a'].lo:.2f}, {iso.ci['a'].hi:.2f}]" if "a" in iso.ci else "")
                + f", D_opt ∝ C^{iso.b:.2f}"
                + (f" [{iso.ci['b'].lo:.2f}, {iso.ci['b'].hi:.2f}]" if "b" in iso.ci else "")
                + f" ({sum(b.used for b in iso.budgets)} of {len(iso.budgets)} budgets)"
            )
        for cat, why in self.isoflop_notes.items():
            lines.append(f"  {cat:<11} IsoFLOP: no fit ({why})")
        if self.left_out:
            lines.append(
                f"  left out: {len(self.left_out)} cell(s) not fitted: "
                + "; ".join(f"{c['model']} {c['cell']} {c['status']}" for c in self.left_out)
            )
        short = [c for c in self.curve_notes if c.get("kind") != "no-class"]
        if short:
            lines.append(
                f"  incomplete curves: {len(short)} ("
                + "; ".join(f"{c['category']}/{c['model']}: {c['points']} points" for c in short)
                + "); see the report"
            )
        n_sp = sum(len(v) for v in self.spikes.values())
        n_em = sum(len(v) for v in self.emergences.values())
        lines.append(
            f"  grad-norm spikes: {n_sp}; emergence flags (spike then loss drop): {n_em}"
            + "".join(
                f"; {m} at {e.spike.pairs:.0f} pairs"
                for m, es in self.emergences.items()
                for e in es
                if e.spike.pairs is not None
            )
        )
        lines += [f"  {x}" for x in break_sentences(self.break_evidence)]  # report.md has one line per seed
        for cat in names.CATEGORIES:
            sp = self.predictions.get(cat)
            if sp is not None:
                lines.append(f"  {cat:<11} " + prediction_sentence(sp))
        return "\n".join(lines)


def _pairs_label(p: float) -> str:
    k = math.log2(p) if p > 0 else float("nan")
    return f"2^{k:.0f}" if math.isfinite(k) and abs(k - round(k)) < 1e-9 else f"{p:.0f}"


def _seed_list(seeds: dict[str, list[int]]) -> str:
    same = {tuple(v) for v in seeds.values()}
    if len(same) == 1:
        return "seeds " + ", ".join(map(str, next(iter(same))))
    return "; ".join(f"{m}: seeds {', '.join(map(str, v))}" for m, v in seeds.items())


def is_grid(df: pd.DataFrame) -> bool:
    """Grid mode: some model has more than one cell of one seed (one run per model × data budget).
    Cells that differ only in their seed repeat one measurement: a milestone sweep with `seeds: [0, 1]`
    is not a grid."""
    ev = with_seed(df[df.metric.astype(str).str.startswith("eval/")])
    return bool(len(ev)) and int(ev.groupby(["model", SEED])["cell"].nunique().max()) > 1


def curve(df: pd.DataFrame, metric: str, model: str, *, grid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, value) of one metric for one model, sorted, one point per pairs value: the mean over the
    model's seeds where it has several.

    Milestone mode: every evaluation of the model's run. Grid mode: each cell's last evaluation (the
    cell's own data budget; its earlier evaluations sit on a schedule decaying towards that budget)."""
    d = df[(df.metric == metric) & (df.model == model)].dropna(subset=["pairs"])
    if grid and len(d):
        d = d.loc[d.groupby("cell")["pairs"].idxmax()]
    d = d.groupby("pairs", as_index=False)["value"].mean().sort_values("pairs")
    return d["pairs"].to_numpy(float), d["value"].to_numpy(float)


def _runs(df: pd.DataFrame) -> list[dict]:
    if df.attrs.get("runs"):
        return list(df.attrs["runs"])
    status = df[STATUS] if STATUS in df.columns else pd.Series("FINISHED", index=df.index)
    g = pd.DataFrame({"cell": df["cell"], "model": df["model"], "status": status}).groupby("cell", sort=True).first()
    return [{"cell": c, "model": r["model"], "status": str(r["status"])} for c, r in g.iterrows()]


def _model_runs(d: pd.DataFrame, model: str, *, grid: bool) -> list[tuple[str, pd.DataFrame]]:
    """One model's rows split into its runs (cells), each with a label: the model alone when it has one
    run, else with the seed (`seed 1`) and, in a grid, the run's data budget (its largest pairs seen)."""
    runs = [run for _, run in d.groupby(d["cell"].astype(str), sort=True)]
    if len(runs) <= 1:
        return [(model, d)]
    runs.sort(key=lambda run: (float(run["pairs"].max()), int(run[SEED].iloc[0])))
    many_seeds = d[SEED].nunique() > 1
    return [
        (
            " ".join(
                [model]
                + ([_pairs_label(float(run["pairs"].max()))] if grid else [])
                + ([f"seed {int(run[SEED].iloc[0])}"] if many_seeds else [])
            ),
            run,
        )
        for run in runs
    ]


def check_out_dir(out: Path) -> None:
    """A named error for an output folder that cannot be created or written, before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".wps-write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise AnalysisInputError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def analyze(
    df: pd.DataFrame,
    out_dir: str | Path,
    *,
    bootstrap: int = 1000,
    level: float = 0.9,
    include_unfinished: bool = False,
    figures: bool = True,
    label_sources: dict[str, str] | None = None,
    target: tuple[str, float] | None = None,
    target_pairs=None,
) -> Report:
    """Fit, classify and report one sweep's tidy table into `out_dir` (figures/ unless `figures=False`).
    `label_sources`: eval set → how its markdown labels were obtained (data.evals.label_sources), for the
    style section. `target`: (model, N) to predict from the smaller sizes (default: the largest size; a
    model the sweep never trained is predicted at `target_pairs`, the sweep's milestones)."""
    if df.empty:
        raise AnalysisInputError("no runs to analyse (empty table)")
    if not 0 < level < 1:
        raise AnalysisInputError(f"level must be in (0, 1), got {level}")
    if bootstrap < 0:
        raise AnalysisInputError(f"bootstrap must be >= 0, got {bootstrap}")
    out = Path(out_dir)
    check_out_dir(out)
    sweep = str(df["sweep"].iloc[0])
    df = with_seed(df)
    runs = _runs(df)
    notes = [df.attrs["status_note"]] if df.attrs.get("status_note") else []
    left_out = []
    for r in runs:
        if r["status"] != "FINISHED":
            if include_unfinished:
                notes.append(f"cell {r['cell']} ({r['model']}) is {r['status']}: fitted anyway (--include-unfinished)")
            else:
                left_out.append({**r, "reason": f"run {r['status']}, not FINISHED (--include-unfinished fits it)"})
    have = set(df["cell"].astype(str))
    for r in runs:
        if r["status"] == "FINISHED" or include_unfinished:
            if str(r["cell"]) not in have:
                left_out.append({**r, "reason": "no metrics logged"})
    drop = {str(c["cell"]) for c in left_out}
    df = df[~df["cell"].astype(str).isin(drop)]
    if df.empty:
        raise AnalysisInputError(
            "no FINISHED runs to analyse: "
            + "; ".join(f"{c['cell']} ({c['model']}) {c['status']}" for c in left_out)
            + " (pass --include-unfinished to fit them)"
        )
    n_of = df.groupby("model")["N"].first().to_dict()
    models = sorted(n_of, key=lambda m: n_of[m])
    grid = is_grid(df)
    seeds = {m: sorted(int(v) for v in df.loc[df.model == m, SEED].unique()) for m in models}
    rep = Report(
        sweep=sweep,
        models=models,
        n_of=n_of,
        level=level,
        mode="grid" if grid else "milestones",
        left_out=left_out,
        notes=notes,
        seeds=seeds,
    )

    curves: dict[str, dict[str, tuple]] = {}
    compute_pts: dict[str, dict[str, tuple]] = {}
    frontier: dict[str, tuple] = {}
    for cat in names.CATEGORIES:
        key = names.eval_loss(cat)
        d = df[df.metric == key].dropna(subset=["pairs"])
        if d.empty:
            continue
        expected = np.unique(d["pairs"].to_numpy(float)) if not grid else None
        for m in models:
            x, y = curve(df, key, m, grid=grid)
            ok = (x > 0) & np.isfinite(y) & (y > 0)
            x, y = x[ok], y[ok]
            missing = [] if expected is None else [p for p in expected if p not in set(x)]
            miss = f"missing milestone(s) {', '.join(_pairs_label(p) for p in missing)}" if missing else ""
            if len(x) < MIN_FIT_POINTS:
                rep.curve_notes.append(
                    {
                        "category": cat,
                        "model": m,
                        "points": int(len(x)),
                        "kind": "too-short",
                        "reason": f"{len(x)} point(s): too short to fit (need {MIN_FIT_POINTS})"
                        + (f"; {miss}" if miss else ""),
                    }
                )
                continue
            if miss:
                rep.curve_notes.append(
                    {
                        "category": cat,
                        "model": m,
                        "points": int(len(x)),
                        "kind": "incomplete",
                        "reason": f"{miss}: fitted on {len(x)} of {len(expected)} points",
                    }
                )
            if len(x) < MIN_TREND_POINTS:
                rep.curve_notes.append(
                    {
                        "category": cat,
                        "model": m,
                        "points": int(len(x)),
                        "kind": "no-class",
                        "reason": f"{len(x)} points: fitted, no trend class (needs {MIN_TREND_POINTS})",
                    }
                )
            curves.setdefault(cat, {})[m] = (x, y)
            compute_pts.setdefault(cat, {})[m] = (6.0 * n_of[m] * x * _tokens_per_pair(df, m), y)
            try:
                rep.fits[(cat, m)] = fit_power(
                    x, y, fix_E=0.0, bootstrap=bootstrap, level=level, x_name="pairs", y_name=key
                )
                if len(x) >= MIN_TREND_POINTS:
                    rep.trends[(cat, m)] = classify(x, y)
            except ValueError as e:
                rep.notes.append(f"{cat}/{m}: {e}")
        if cat in compute_pts and len(compute_pts[cat]) >= 1:
            try:
                fr = rep.frontiers[cat] = fit_frontier(compute_pts[cat], bootstrap=bootstrap, level=level, y_name=key)
                rep.compute_fits[cat] = fr.fit
                frontier[cat] = (fr.x, fr.y)
            except ValueError as e:
                rep.notes.append(f"{cat} vs compute: {e}")
        if cat in curves and len(curves[cat]) >= 3:
            Ns = np.concatenate([np.full(len(x), n_of[m]) for m, (x, _) in curves[cat].items()])
            Ds = np.concatenate([x * _tokens_per_pair(df, m) for m, (x, _) in curves[cat].items()])
            Ls = np.concatenate([y for _, y in curves[cat].values()])
            try:  # the bootstrap of a 5-parameter fit is ~100x a power law's: cap it
                j = rep.joint_fits[cat] = fit_chinchilla(
                    Ns, Ds, Ls, bootstrap=min(bootstrap, 100), level=level, names=("N", "tokens"), y_name=key
                )
                why = identification(j)
                why += joint_caveats(j, Ns, Ds, Ls, bounds=False)  # identification(j) names a bound already
                if cat in frontier:
                    poor = poor_fit_caveat(j, Ns, Ds, Ls, *frontier[cat])
                    if poor:
                        why.append(poor)
                rep.joint_caveats[cat] = "; ".join(why)
            except ValueError as e:
                rep.notes.append(f"{cat} joint L(N, D): {e}")
        if grid and cat in curves:
            _isoflop(rep, cat, compute_pts[cat], bootstrap, level)

    _predictions(rep, df, grid, bootstrap, level, target, target_pairs)

    grad_series, model_of = {}, {}
    for m in models:  # one series per run (cell): a robust z over runs interleaved by step is noise
        for label, run in _model_runs(df[df.model == m], m, grid=grid):
            d = run[run.metric == names.TRAIN_GRAD_NORM].sort_values("step")
            if len(d) < 20:
                continue
            g = d["value"].to_numpy(float)
            g = np.where(g > 0, g, np.nan)
            d = d[np.isfinite(g)]
            g = d["value"].to_numpy(float)
            pairs = d["pairs"].to_numpy(float)
            grad_series[label], model_of[label] = (pairs, g), m
            window, drop_window = run_windows(len(g))
            sp = detect_spikes(g, steps=d["step"].to_numpy(float), pairs=pairs, window=window)
            rep.spikes[label] = sp
            loss = run[run.metric == names.TRAIN_LOSS].set_index("step")["value"]
            loss = loss.reindex(d["step"]).to_numpy(float)
            finite = bool(np.isfinite(loss).all())
            rep.emergences[label] = emergence_flags(sp, loss, window=drop_window) if finite else []
            for cat in names.CATEGORIES:  # the eval curve broke: what did each run's training curves do there?
                t = rep.trends.get((cat, m))
                if (
                    not grid
                    and finite
                    and t is not None
                    and t.kind == "emergent"
                    and t.break_x is not None
                    and m in curves.get(cat, {})
                ):  # milestone mode: the run's own steps span the curve
                    rep.break_evidence.append(
                        break_evidence(
                            cat,
                            m,
                            t.break_x,
                            curves[cat][m][0],
                            pairs,
                            g,
                            loss,
                            spikes=sp,
                            emergences=rep.emergences[label],
                            window=window,
                            run=label[len(m) :].strip() or None,
                        )
                    )

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
    if figures and curves:
        rep.figures += plots.save(plots.scaling_figure(curves, rep.fits, n_of, rep.trends), figdir, "loss_vs_pairs")
        rep.figures += plots.save(
            plots.compute_figure(
                compute_pts,
                frontier,
                rep.compute_fits,
                n_of,
                {c: j for c, j in rep.joint_fits.items() if rep.joint_identified(c)},
            ),
            figdir,
            "loss_vs_compute",
        )
    if figures and rep.isoflop_profiles:
        rep.figures += plots.save(plots.isoflop_figure(rep.isoflop_profiles, rep.isoflop), figdir, "isoflop")
    if figures and grad_series:
        fig = plots.gradnorm_figure(grad_series, rep.spikes, rep.emergences, n_of, model_of=model_of)
        rep.figures += plots.save(fig, figdir, "grad_norm")
    if figures and phi:
        rep.figures += plots.save(plots.style_figure(phi, n_of), figdir, "style_phi")
    if figures and any(sp.prediction.loss is not None for sp in rep.predictions.values()):
        from .plots_predict import prediction_figure

        shown = {c: sp for c, sp in rep.predictions.items() if c in names.CATEGORIES}
        rep.figures += plots.save(prediction_figure(shown, n_of), figdir, "prediction")
    rep.report_path = write_markdown(rep, out / "report.md", phi, label_sources)
    rep.json_path = write_json(rep, out / "report.json")
    return rep


def _isoflop(
    rep: Report, cat: str, pts: dict[str, tuple[np.ndarray, np.ndarray]], bootstrap: int, level: float
) -> None:
    """IsoFLOP profiles of a grid sweep: each model's final losses interpolated (log-log) at shared budgets.

    A model × data grid rarely puts two cells at one compute; the budgets are log-spaced over the range
    covered by at least 3 model sizes (as many budgets as the most cells of one model), and each size
    contributes its interpolated loss at every budget inside its own compute range."""
    usable = {m: (c, y) for m, (c, y) in pts.items() if len(c) >= 2}
    if len(usable) < 3:
        rep.isoflop_notes[cat] = f"{len(usable)} model size(s) with 2 or more cells (need 3)"
        return
    lo = sorted(c.min() for c, _ in usable.values())[2]
    hi = sorted((c.max() for c, _ in usable.values()), reverse=True)[2]
    k = max(len(c) for c, _ in usable.values())
    budgets = np.logspace(np.log10(min(lo, hi)), np.log10(max(lo, hi)), k) if hi > lo else np.array([])
    rows = []
    profiles = {}
    for C in budgets:
        Nb, Lb = [], []
        for m, (c, y) in usable.items():
            if c.min() * (1 - 1e-9) <= C <= c.max() * (1 + 1e-9):
                Nb.append(rep.n_of[m])
                Lb.append(float(np.exp(np.interp(np.log(C), np.log(c), np.log(y)))))
        if len(Nb) >= 3:
            profiles[float(C)] = (np.array(Nb), np.array(Lb))
            rows += [(C, n, v) for n, v in zip(Nb, Lb)]
    if len(profiles) < 3:
        rep.isoflop_notes[cat] = f"{len(profiles)} compute budget(s) covered by 3 model sizes (need 3)"
        return
    rep.isoflop_profiles[cat] = profiles
    r = np.array(rows, dtype=float)
    try:
        rep.isoflop[cat] = fit_isoflop(
            r[:, 0],
            r[:, 1],
            r[:, 2],
            bootstrap=bootstrap,
            level=level,
            names=("compute", "N", "D"),
            y_name=names.eval_loss(cat),
        )
    except ValueError as e:
        rep.isoflop_notes[cat] = str(e)


def _clean(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def to_json(rep: Report) -> dict:
    """Everything the report says, as plain data (report.json)."""
    return _clean(
        {
            "sweep": rep.sweep,
            "mode": rep.mode,
            "level": rep.level,
            "models": {m: rep.n_of[m] for m in rep.models},
            "seeds": rep.seeds,
            "left_out": rep.left_out,
            "curve_notes": rep.curve_notes,
            "fits": [
                {
                    "category": c,
                    "model": m,
                    **f.to_dict(),
                    "trend": rep.trends[(c, m)].to_dict() if (c, m) in rep.trends else None,
                }
                for (c, m), f in rep.fits.items()
            ],
            "compute_fits": {
                c: {
                    **f.to_dict(),
                    "covers_zero": bool(f.ci.get("alpha") and f.ci["alpha"].contains(0.0)),
                    "envelope_points": int(rep.frontiers[c].x.size) if c in rep.frontiers else None,
                }
                for c, f in rep.compute_fits.items()
            },
            "joint_fits": {
                c: {
                    **j.to_dict(),
                    "identified": rep.joint_identified(c),
                    "not_identified": rep.joint_caveats.get(c, ""),
                }
                | ({} if rep.joint_identified(c) else {"frontier": None})
                for c, j in rep.joint_fits.items()
            },
            "isoflop": {c: f.to_dict() for c, f in rep.isoflop.items()},
            "isoflop_notes": rep.isoflop_notes,
            "spikes": {m: len(v) for m, v in rep.spikes.items()},
            "emergences": {m: len(v) for m, v in rep.emergences.items()},
            "break_evidence": [
                {
                    "category": b.category,
                    "model": b.model,
                    "run": b.run,
                    "break_pairs": b.break_pairs,
                    "window_pairs": [b.lo, b.hi],
                    "spikes": [s.pairs for s in b.spikes],
                    "emergence_flags": len(b.emergences),
                    "max_z": b.max_z,
                    "loss_before": b.loss_before,
                    "loss_after": b.loss_after,
                }
                for b in rep.break_evidence
            ],
            "predictions": {c: sp.to_dict() for c, sp in rep.predictions.items()},
            "backtests": {c: [b.to_dict() for b in bs] for c, bs in rep.backtests.items()},
            "notes": rep.notes,
            "headline": rep.headline(),
        }
    )


def write_json(rep: Report, path: Path) -> Path:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_json(rep), indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def poor_fit_caveat(
    j: ChinchillaFit, N: np.ndarray, D: np.ndarray, L: np.ndarray, env_x: np.ndarray, env_y: np.ndarray
) -> str:
    """Non-empty when the joint fit's compute-optimal loss runs below every measured envelope point by
    more than POOR_FIT_MIN_GAP and either the gap exceeds twice the fit's log residual rms or the fit
    itself is poor (rms above POOR_FIT_RMS): a line drawn there claims a frontier no run comes near."""
    rms = float(np.sqrt(np.mean((np.log(j.predict(N, D)) - np.log(L)) ** 2)))
    gap = frontier_gap(j, env_x, env_y)
    if gap > POOR_FIT_MIN_GAP and (gap > 2 * rms or rms > POOR_FIT_RMS):
        return f"poor fit: its compute-optimal loss runs {gap:.1%} below every measured point (residual rms {rms:.1%})"
    return ""


def joint_caveats(
    j: ChinchillaFit, N: np.ndarray, D: np.ndarray, L: np.ndarray, *, min_share: float = 0.01, bounds: bool = True
) -> list[str]:
    """Why a joint fit's exponents may mean nothing: a term that moves the loss by < 1% over the
    data, or (with `bounds`) an exponent pinned at its bound, is not identified by these runs."""
    lo, hi = EXPONENT_BOUNDS
    out = []
    for k, term in (("alpha", j.A * N**-j.alpha), ("beta", j.B * D**-j.beta)):
        span = float(np.ptp(term) / np.median(L))
        if not lo + 1e-3 < getattr(j, k) < hi - 1e-2:
            if bounds:
                out.append(f"{k} at its bound")
        elif span < min_share:
            out.append(f"{'N' if k == 'alpha' else 'D'} term moves L by {span:.1%}: {k} not identified")
    return out


def joint_caveat(j: ChinchillaFit, N: np.ndarray, D: np.ndarray, L: np.ndarray, *, min_share: float = 0.01) -> str:
    """`joint_caveats` as one line."""
    return "; ".join(joint_caveats(j, N, D, L, min_share=min_share))


def _tokens_per_pair(df: pd.DataFrame, model: str) -> float:
    d = df[(df.model == model)].dropna(subset=["pairs", "tokens"])
    d = d[d.pairs > 0]
    return float((d.tokens / d.pairs).median()) if len(d) else 1.0


def write_markdown(rep: Report, path: Path, phi: dict, label_sources: dict[str, str] | None = None) -> Path:
    from .fits import IDENT_MAX_RATIO
    from .trends import TREND_LEVEL

    lv = f"{rep.level:.0%}"
    L = [
        f"# Scaling report: sweep `{rep.sweep}`",
        "",
        "All exponents are fitted to this sweep's runs (the paper itself fits none). "
        f"Intervals are {lv} bootstrap intervals over the curve's points; trend classes use the slope's "
        f"{TREND_LEVEL:.0%} t interval and a ΔBIC threshold calibrated in bench/results/trend_calibration.txt. "
        f"Mode: {rep.mode} ({'each cell' + chr(39) + 's last evaluation is one point' if rep.mode == 'grid' else 'one run per model, evaluated at each milestone'})"
        + (
            f"; each point is the mean over the runs' seeds ({_seed_list(rep.seeds)}), spikes are detected per run"
            if rep.seeds_phrase()
            else ""
        )
        + ".",
        "",
    ]
    if rep.left_out or rep.curve_notes:
        L += ["## Left out and incomplete", ""]
        if rep.left_out:
            L += ["| cell | model | status | reason |", "|---|---|---|---|"]
            L += [f"| {c['cell']} | {c['model']} | {c['status']} | {c['reason']} |" for c in rep.left_out]
            L.append("")
        if rep.curve_notes:
            L += ["| category | model | points | note |", "|---|---|---|---|"]
            L += [f"| {c['category']} | {c['model']} | {c['points']} | {c['reason']} |" for c in rep.curve_notes]
            L.append("")
    L += [
        "## Test loss vs training pairs (L = A·pairs^-α)",
        "",
        f"| category | model | N (non-emb) | points | α | {lv} CI | leave-largest-out error | trend | evidence |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cat in names.CATEGORIES:
        for m in rep.models:
            f = rep.fits.get((cat, m))
            if f is None:
                continue
            t = rep.trends.get((cat, m))
            ci = f.ci.get("alpha")
            ex = f"{f.extrapolation_rel_error:.1%}" if f.extrapolation_rel_error is not None else "–"
            L.append(
                f"| {cat} | {m} | {rep.n_of[m]:.3g} | {f.n} | {f.alpha:.4f} | "
                + (f"[{ci.lo:.4f}, {ci.hi:.4f}]" if ci else "–")
                + f" | {ex} | "
                + (f"**{t.kind}** | {t.evidence()} |" if t else "– | too few points |")
            )
    if rep.compute_fits:
        L += [
            "",
            "## Test loss vs training compute (frontier over model sizes)",
            "",
            "L = A·C^-α fitted to the lower envelope of the sizes' curves (a point stays when no other size "
            "passes below it at that compute). The interval redraws each curve from its own log-log line and the "
            "curves' pooled residual scale, rebuilding the envelope each time; an interval that covers 0 means "
            "no scaling with compute.",
            "",
            f"| category | α | {lv} CI | envelope points | scaling with compute |",
            "|---|---|---|---|---|",
        ]
        for cat, f in rep.compute_fits.items():
            ci = f.ci.get("alpha")
            verdict = "–" if not ci else ("no (interval covers 0)" if ci.contains(0.0) else "yes")
            L.append(
                f"| {cat} | {f.alpha:.4f} | "
                + (f"[{ci.lo:.4f}, {ci.hi:.4f}]" if ci else "–")
                + f" | {f.n} | {verdict} |"
            )
    if rep.joint_fits:
        L += [
            "",
            "## Joint fit L(N, D) = E + A/N^α + B/D^β (D in tokens) and the compute-optimal frontier",
            "",
            f"An exponent whose {lv} interval touches its bound or spans more than {IDENT_MAX_RATIO:g}× makes the "
            "fit *not identified*; so does a term that moves the loss by under 1%, or a compute-optimal loss "
            "that runs below every measured point. Such a fit gives no frontier.",
            "",
            f"| category | E | A | B | α ({lv} CI) | β ({lv} CI) | N_opt ∝ C^a | D_opt ∝ C^b | points | identified |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cat, j in rep.joint_fits.items():
            a, b = j.frontier_exponents
            ok = rep.joint_identified(cat)
            ci = lambda k: f" [{j.ci[k].lo:.3f}, {j.ci[k].hi:.3f}]" if k in j.ci else ""  # noqa: B023 — called in this iteration
            L.append(
                f"| {cat} | {j.E:.4g} | {j.A:.4g} | {j.B:.4g} | {j.alpha:.3f}{ci('alpha')} | "
                f"{j.beta:.3f}{ci('beta')} | "
                + (f"{a:.3f} | {b:.3f}" if ok else "– | –")
                + f" | {j.n} | "
                + ("yes" if ok else f"**not identified**: {rep.joint_caveats[cat]}")
                + " |"
            )
        L.append("")
        L.append(f"Model sizes: {len(rep.models)}.")
    if rep.isoflop or rep.isoflop_notes:
        L += [
            "",
            "## IsoFLOP profiles (Hoffmann et al. 2022, approach 2)",
            "",
            "Each size's final losses interpolated in log-log at shared compute budgets; per budget a parabola "
            "in log N gives N_opt. Budgets whose lowest loss is at (or next to) the edge of the sampled sizes "
            "are flagged and not used.",
            "",
        ]
        for cat, iso in rep.isoflop.items():
            cia = f" [{iso.ci['a'].lo:.3f}, {iso.ci['a'].hi:.3f}]" if "a" in iso.ci else ""
            cib = f" [{iso.ci['b'].lo:.3f}, {iso.ci['b'].hi:.3f}]" if "b" in iso.ci else ""
            L += [
                f"**{cat}**: N_opt ∝ C^{iso.a:.3f}{cia}, D_opt ∝ C^{iso.b:.3f}{cib} "
                f"({sum(b.used for b in iso.budgets)} of {len(iso.budgets)} budgets, {iso.points_used} points)",
                "",
                "| C (FLOPs) | N_opt | D_opt | points | used |",
                "|---|---|---|---|---|",
            ]
            L += [
                f"| {b.C:.3g} | {b.N_opt:.3g} | {b.D_opt:.3g} | {b.points} | {'yes' if b.used else 'no: ' + b.flag} |"
                for b in iso.budgets
            ]
            L.append("")
        for cat, why in rep.isoflop_notes.items():
            L.append(f"- {cat}: no IsoFLOP fit: {why}")
    L += prediction_markdown(rep)
    L += ["", "## Gradient spikes and emergence", ""]
    if not any(rep.spikes.values()):
        L.append(f"No grad-norm spikes (robust z > {SPIKE_Z:g} over a trailing median/MAD window) in any run.")
    for m, sp in rep.spikes.items():
        for s in sp:
            em = any(e.spike is s for e in rep.emergences.get(m, []))
            L.append(
                f"- {m}: spike at step {s.step:.0f} ({s.pairs:.0f} pairs), z = {s.z:.1f}"
                + (" — followed by a significant loss drop (emergence flag)" if em else "")
            )
    if rep.break_evidence:
        L += ["", "Where an eval curve broke (an *emergent* trend), the training curves there:", ""]
        L += [f"- {b.sentence()}" for b in rep.break_evidence]
    if phi:
        L += [
            "",
            "## Style: Phi between the model's preference and style indicators",
            "",
            "| feature | model | first milestone | last milestone |",
            "|---|---|---|---|",
        ]
        for feat, per in phi.items():
            for m, (x, y) in per.items():
                L.append(f"| {feat} | {m} | {y[0]:+.3f} ({x[0]:.0f} pairs) | {y[-1]:+.3f} ({x[-1]:.0f} pairs) |")
        if label_sources:
            L += ["", "Markdown labels, per eval set (docs/eval_sets.md):", ""]
            L += [f"- {s}: {src}" for s, src in label_sources.items()]
    if rep.figures:
        L += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in rep.figures if p.suffix == ".png"]
    if rep.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in rep.notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(L) + "\n")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# prediction of the largest size from the smaller ones (analysis/predict.py)

PREDICT_SET_BOOTSTRAP = 200
"""Replicates for each eval set's prediction and each backtest (the categories use the full count)."""


def sweep_metric_names(df: pd.DataFrame) -> list[str]:
    """Eval categories, then eval sets, that have a loss metric in the table."""
    have = set(df["metric"].astype(str).unique())
    return [n for n in list(names.CATEGORIES) + list(names.EVAL_SETS) if names.eval_loss(n) in have]


def _predictions(
    rep: Report,
    df: pd.DataFrame,
    grid: bool,
    bootstrap: int,
    level: float,
    target: tuple[str, float] | None,
    target_pairs,
) -> None:
    """Per category and set: the target (default the largest size) from the smaller sizes; per category a
    backtest of each size from the third up. Needs two sizes below the target."""
    n_of = dict(rep.n_of)
    name, N = target if target else (rep.models[-1], float(n_of[rep.models[-1]]))
    if sum(n < N for n in n_of.values()) < 2:
        if target:
            rep.notes.append(f"no prediction of {name}: fewer than 2 sizes below it")
        return
    for metric in sweep_metric_names(df):
        cat = metric in names.CATEGORIES
        try:
            sp = predict_sweep_metric(
                df,
                metric,
                name,
                N,
                n_of=n_of,
                grid=grid,
                level=level,
                bootstrap=bootstrap if cat else min(bootstrap, PREDICT_SET_BOOTSTRAP),
                pairs=target_pairs,
            )
        except ValueError as e:
            rep.notes.append(f"{metric} prediction of {name}: {e}")
            continue
        if sp is not None:
            rep.predictions[metric] = sp
        if cat and len(rep.models) >= 4:
            try:
                bt = backtest(df, metric, n_of, grid=grid, bootstrap=min(bootstrap, PREDICT_SET_BOOTSTRAP), level=level)
            except ValueError as e:
                rep.notes.append(f"{metric} backtest: {e}")
                continue
            rep.backtests[metric] = bt


def _inside(b, actual: float) -> str:
    return "–" if not math.isfinite(b.lo) else ("yes" if b.contains(actual) else "**no**")


def _band(b) -> str:
    return f"{b.pred:.4g} [{b.lo:.4g}, {b.hi:.4g}]" if math.isfinite(b.lo) else f"{b.pred:.4g} (no interval)"


def prediction_sentence(sp: SweepPrediction) -> str:
    """One line: the target at its budget, predicted vs actual, and the verdict."""
    p, last = sp.prediction, len(sp.pairs) - 1
    head = f"predict {sp.target} from {len(sp.ladder)} smaller sizes at {_pairs_label(float(sp.pairs[last]))} pairs: "
    if p.loss is None:
        return head + "not identified (" + "; ".join(p.step1.not_identified) + ")"
    s = head + f"loss {_band(p.loss[last])}"
    if sp.actual_loss is not None and np.isfinite(sp.actual_loss[last]):
        s += f", actual {sp.actual_loss[last]:.4g}"
    v = sp.verdict
    return s + f" → {v}" + (f" (actual {sp.direction()} than predicted)" if v == "not predictable" else "")


def prediction_lines(results: list[SweepPrediction], *, level: float = 0.9) -> list[str]:
    """`wps predict SWEEP`'s text: per metric a header, one line per milestone, the verdict and notes."""
    out = []
    for sp in results:
        p = sp.prediction
        out.append(
            f"{sp.name}: {sp.target} (N={sp.target_N:.3g}) from {', '.join(sp.ladder)}; step 1 "
            f"{p.step1.form}, {level:.0%} prediction intervals"
            + (f" for the mean of {sp.target_runs} runs" if sp.target_runs > 1 else "")
        )
        if p.loss is not None:
            for i, x in enumerate(sp.pairs):
                line = f"  {_pairs_label(float(x)):>6} pairs: loss {_band(p.loss[i])}"
                if sp.actual_loss is not None:
                    line += f" actual {sp.actual_loss[i]:.4g}" + (
                        ""
                        if not math.isfinite(p.loss[i].lo)
                        else f" ({'inside' if p.loss[i].contains(float(sp.actual_loss[i])) else 'OUTSIDE'})"
                    )
                if p.acc is not None:
                    line += f"; acc {_band(p.acc[i])}"
                    if sp.actual_acc is not None and np.isfinite(sp.actual_acc[i]):
                        line += f" actual {sp.actual_acc[i]:.4g}"
                out.append(line)
        out.append(
            f"  verdict: {sp.verdict}" + (f" (actual {sp.direction()} than predicted)" if sp.direction() else "")
        )
        out += [f"  note: {n}" for n in p.notes]
    return out


def prediction_markdown(rep: Report) -> list[str]:
    if not rep.predictions:
        return []
    lv = f"{rep.level:.0%}"
    first = next(iter(rep.predictions.values()))
    L = [
        "",
        f"## Predicting {first.target} from the smaller sizes",
        "",
        "Two steps, as OLMo's model ladder (Bhagia et al. 2024, arXiv 2412.04403): loss L(N, D) fitted to the "
        "smaller sizes' runs (E + A/N^α + B/D^β when 3 or more sizes identify it, else A·N^-α·D^-β), then accuracy "
        f"from loss with a sigmoid fitted to every evaluation. {lv} prediction intervals for the target's runs "
        "(bootstrap over runs, both steps refitted, a run-to-run draw added; bench/results/predict_coverage.txt). "
        "*Predictable*: the target's actual loss at its last milestone lies inside the interval — the paper's "
        '"power law vs emergent" (arXiv 2505.10527 §3.2) as a test.',
        "",
    ]
    for cat in names.CATEGORIES:
        sp = rep.predictions.get(cat)
        if sp is None:
            continue
        p = sp.prediction
        L.append(f"**{cat}**: {prediction_sentence(sp)}")
        L.append("")
        if p.loss is not None:
            L += [
                f"| pairs | predicted loss ({lv}) | actual | error (pred − actual) | inside | predicted acc ({lv}) | actual acc |",
                "|---|---|---|---|---|---|---|",
            ]
            for i, x in enumerate(sp.pairs):
                act = sp.actual_loss[i] if sp.actual_loss is not None else math.nan
                acc = sp.actual_acc[i] if sp.actual_acc is not None else math.nan
                L.append(
                    f"| {_pairs_label(float(x))} | {_band(p.loss[i])} | "
                    + (
                        f"{act:.4g} | {(p.loss[i].pred - act) / act:+.1%} | {_inside(p.loss[i], act)}"
                        if math.isfinite(act)
                        else "– | – | –"
                    )
                    + f" | {_band(p.acc[i]) if p.acc else '–'} | "
                    + (f"{acc:.4g}" if math.isfinite(acc) else "–")
                    + " |"
                )
            L.append("")
            s1 = p.step1
            L.append(
                f"Step 1 ({s1.form}, {s1.points} points of {s1.runs} runs): "
                + ", ".join(
                    f"{k} {v:.4g}" + (f" [{s1.ci[k].lo:.3g}, {s1.ci[k].hi:.3g}]" if k in s1.ci else "")
                    for k, v in s1.params.items()
                )
                + (
                    f". Step 2 ({p.step2.rows} rows): " + ", ".join(f"{k} {v:.4g}" for k, v in p.step2.params.items())
                    if p.step2
                    else ""
                )
                + "."
            )
        L += [f"- {n}" for n in p.notes]
        L.append("")
    sets = [(n, sp) for n, sp in rep.predictions.items() if n not in names.CATEGORIES]
    if sets:
        L += [
            "Per eval set, at the last milestone:",
            "",
            f"| set | category | predicted loss ({lv}) | actual | verdict |",
            "|---|---|---|---|---|",
        ]
        for n, sp in sets:
            p, last = sp.prediction, len(sp.pairs) - 1
            act = sp.actual_loss[last] if sp.actual_loss is not None else math.nan
            L.append(
                f"| {n} | {names.EVAL_SETS.get(n, '?')} | {_band(p.loss[last]) if p.loss else '–'} | "
                + (f"{act:.4g}" if math.isfinite(act) else "–")
                + f" | {sp.verdict} |"
            )
        L.append("")
    if rep.backtests:
        L += [
            "Backtest: each size from the third up predicted from the sizes below it, at its last milestone:",
            "",
            f"| category | held-out size | from | predicted loss ({lv}) | actual | error | inside |",
            "|---|---|---|---|---|---|---|",
        ]
        for cat, bs in rep.backtests.items():
            for b in bs:
                p, last = b.prediction, len(b.pairs) - 1
                act = b.actual_loss[last] if b.actual_loss is not None else math.nan
                L.append(
                    f"| {cat} | {b.target} | {len(b.ladder)} sizes | {_band(p.loss[last]) if p.loss else 'not identified'} | "
                    + (
                        f"{act:.4g} | {(p.loss[last].pred - act) / act:+.1%} | {_inside(p.loss[last], act)}"
                        if p.loss and math.isfinite(act)
                        else "– | – | –"
                    )
                    + " |"
                )
        L.append("")
    return L
