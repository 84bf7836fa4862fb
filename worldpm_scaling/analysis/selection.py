"""Which rows of a sweep's tidy table each fit reads: the runs and the ones left out, grid or milestone
mode, one model's curve, its runs with their labels, tokens per pair, the eval metrics present."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import names
from .load import SEED, STATUS, with_seed


def pairs_label(p: float) -> str:
    """`2^12` for a power of two, else the number of pairs."""
    k = math.log2(p) if p > 0 else float("nan")
    return f"2^{k:.0f}" if math.isfinite(k) and abs(k - round(k)) < 1e-9 else f"{p:.0f}"


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


def model_runs(d: pd.DataFrame, model: str, *, grid: bool) -> list[tuple[str, pd.DataFrame]]:
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
                + ([pairs_label(float(run["pairs"].max()))] if grid else [])
                + ([f"seed {int(run[SEED].iloc[0])}"] if many_seeds else [])
            ),
            run,
        )
        for run in runs
    ]


def select_runs(df: pd.DataFrame, include_unfinished: bool) -> tuple[pd.DataFrame, list[dict], list[str]]:
    """(the rows to fit, the cells left out {cell, model, status, reason}, notes): only FINISHED runs
    unless `include_unfinished`, and never a run that logged no metrics."""
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
    return df[~df["cell"].astype(str).isin(drop)], left_out, notes


def tokens_per_pair(df: pd.DataFrame, model: str) -> float:
    """The model's median tokens per pair (1 when the table has no token counts)."""
    d = df[(df.model == model)].dropna(subset=["pairs", "tokens"])
    d = d[d.pairs > 0]
    return float((d.tokens / d.pairs).median()) if len(d) else 1.0


def sweep_metric_names(df: pd.DataFrame) -> list[str]:
    """Eval categories, then eval sets, that have a loss metric in the table."""
    have = set(df["metric"].astype(str).unique())
    return [n for n in list(names.CATEGORIES) + list(names.EVAL_SETS) if names.eval_loss(n) in have]


def style_phi(df: pd.DataFrame, models: list[str]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """style feature → model → (pairs, Phi averaged over the eval sets and seeds)."""
    phi: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for feat in names.STYLE_FEATURES:
        for m in models:
            keys = [names.eval_phi(s, feat) for s in names.EVAL_SETS]
            d = df[(df.model == m) & (df.metric.isin(keys))].dropna(subset=["pairs", "value"])
            if d.empty:
                continue
            g = d.groupby("pairs")["value"].mean().sort_index()
            phi.setdefault(feat, {})[m] = (g.index.to_numpy(float), g.to_numpy(float))
    return phi
