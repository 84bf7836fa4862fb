"""`analyze(df, out_dir)`: every fit, class, flag and figure of a sweep, report.md and report.json.

The orchestration only: which rows each fit reads is selection.py's, the fits and their caveats are
fits.py's modules, the Report and its headline report_result.py, the writing report_markdown.py and
report_io.py (all re-exported here, where `wps analyze`, the tests and the scripts import them from).

Takes the tidy table of load.py; writes figures/, report.md and report.json; returns a Report whose
headline is what `make demo` prints. All numbers in the report are computed here from the runs.

What the report refuses to say: only FINISHED runs are fitted unless `include_unfinished`; every
cell left out and every curve too short or missing milestones is listed with the reason; a joint
L(N, D) fit whose exponents are not identified (fits.identification), or whose compute-optimal loss
runs below every measured point, is reported as such and gives no frontier; the frontier vs
compute is fitted to the lower envelope of the curves with intervals from resampling each curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import names
from . import plots
from .errors import AnalysisInputError
from .frontier import fit_frontier
from .isoflop import fit_isoflop, grid_profiles, profile_rows
from .joint import (
    POOR_FIT_MIN_GAP,
    POOR_FIT_RMS,
    fit_chinchilla,
    identification,
    joint_caveat,
    joint_caveats,
    poor_fit_caveat,
)
from .load import SEED, with_seed
from .plots_predict import prediction_figure
from .powerlaw import fit_power
from .predict import backtest, predict_sweep_metric
from .prediction_text import prediction_lines, prediction_sentence
from .report_io import check_out_dir, to_json, write_json
from .report_markdown import Phi, prediction_markdown, write_markdown
from .report_result import Report
from .selection import (
    curve,
    is_grid,
    model_runs,
    pairs_label,
    select_runs,
    style_phi,
    sweep_metric_names,
    tokens_per_pair,
)
from .spikes import break_evidence, detect_spikes, emergence_flags, run_windows
from .trends import classify

__all__ = [
    "MIN_FIT_POINTS",
    "MIN_TREND_POINTS",
    "PREDICT_SET_BOOTSTRAP",
    "POOR_FIT_MIN_GAP",
    "POOR_FIT_RMS",
    "Report",
    "analyze",
    "check_out_dir",
    "curve",
    "is_grid",
    "joint_caveat",
    "joint_caveats",
    "poor_fit_caveat",
    "prediction_lines",
    "prediction_markdown",
    "prediction_sentence",
    "sweep_metric_names",
    "to_json",
    "write_json",
    "write_markdown",
]

MIN_FIT_POINTS = 3
MIN_TREND_POINTS = 5
PREDICT_SET_BOOTSTRAP = 200
"""Replicates for each eval set's prediction and each backtest (the categories use the full count)."""

Curves = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
"""category → model → (x, loss)."""


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
    target_pairs: np.ndarray | Sequence[float] | None = None,
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
    df, left_out, notes = select_runs(with_seed(df), include_unfinished)
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

    curves: Curves = {}
    compute_pts: Curves = {}
    frontier: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for cat in names.CATEGORIES:
        _fit_category(rep, df, cat, grid, bootstrap, level, curves, compute_pts, frontier)

    _predictions(rep, df, grid, bootstrap, level, target, target_pairs)
    grad_series, model_of = _spikes(rep, df, grid, curves)
    phi = style_phi(df, models)
    if figures:
        _figures(rep, out / "figures", curves, compute_pts, frontier, grad_series, model_of, phi)
    rep.report_path = write_markdown(rep, out / "report.md", phi, label_sources)
    rep.json_path = write_json(rep, out / "report.json")
    return rep


def _fit_category(
    rep: Report,
    df: pd.DataFrame,
    cat: str,
    grid: bool,
    bootstrap: int,
    level: float,
    curves: Curves,
    compute_pts: Curves,
    frontier: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    """One eval category: each size's curve (or a note why not), its power law and trend class, the
    frontier vs compute, the joint L(N, D) fit with its caveats, and (grid) the IsoFLOP profiles."""
    n_of, models = rep.n_of, rep.models
    key = names.eval_loss(cat)
    d = df[df.metric == key].dropna(subset=["pairs"])
    if d.empty:
        return
    expected = np.unique(d["pairs"].to_numpy(float)) if not grid else np.empty(0)  # grid: each cell its own budget
    for m in models:
        x, y = curve(df, key, m, grid=grid)
        ok = (x > 0) & np.isfinite(y) & (y > 0)
        x, y = x[ok], y[ok]
        missing = [p for p in expected if p not in set(x)]
        miss = f"missing milestone(s) {', '.join(pairs_label(p) for p in missing)}" if missing else ""
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
        compute_pts.setdefault(cat, {})[m] = (6.0 * n_of[m] * x * tokens_per_pair(df, m), y)
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
        Ds = np.concatenate([x * tokens_per_pair(df, m) for m, (x, _) in curves[cat].items()])
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


def _isoflop(
    rep: Report, cat: str, pts: dict[str, tuple[np.ndarray, np.ndarray]], bootstrap: int, level: float
) -> None:
    """IsoFLOP profiles of a grid sweep (isoflop.grid_profiles) and the fit over them, or a note why not."""
    profiles, why = grid_profiles(pts, rep.n_of)
    if why:
        rep.isoflop_notes[cat] = why
        return
    rep.isoflop_profiles[cat] = profiles
    r = profile_rows(profiles)
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


def _spikes(
    rep: Report, df: pd.DataFrame, grid: bool, curves: Curves
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """Grad-norm spikes and emergence flags per run, and where an emergent eval curve broke, what the
    run's training curves did there. Returns the grad-norm series (run label → (pairs, norm)) and each
    label's model, for the figure."""
    grad_series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    model_of: dict[str, str] = {}
    for m in rep.models:  # one series per run (cell): a robust z over runs interleaved by step is noise
        for label, run in model_runs(df[df.model == m], m, grid=grid):
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
    return grad_series, model_of


def _figures(
    rep: Report,
    figdir: Path,
    curves: Curves,
    compute_pts: Curves,
    frontier: dict[str, tuple[np.ndarray, np.ndarray]],
    grad_series: dict[str, tuple[np.ndarray, np.ndarray]],
    model_of: dict[str, str],
    phi: Phi,
) -> None:
    """Every figure the report has data for, into figdir; their paths go to rep.figures."""
    n_of = rep.n_of
    if curves:
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
    if rep.isoflop_profiles:
        rep.figures += plots.save(plots.isoflop_figure(rep.isoflop_profiles, rep.isoflop), figdir, "isoflop")
    if grad_series:
        fig = plots.gradnorm_figure(grad_series, rep.spikes, rep.emergences, n_of, model_of=model_of)
        rep.figures += plots.save(fig, figdir, "grad_norm")
    if phi:
        rep.figures += plots.save(plots.style_figure(phi, n_of), figdir, "style_phi")
    if any(sp.prediction.loss is not None for sp in rep.predictions.values()):
        shown = {c: sp for c, sp in rep.predictions.items() if c in names.CATEGORIES}
        rep.figures += plots.save(prediction_figure(shown, n_of), figdir, "prediction")


def _predictions(
    rep: Report,
    df: pd.DataFrame,
    grid: bool,
    bootstrap: int,
    level: float,
    target: tuple[str, float] | None,
    target_pairs: np.ndarray | Sequence[float] | None,
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
