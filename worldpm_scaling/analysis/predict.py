"""A sweep's size predicted from its smaller sizes at each milestone (`wps predict SWEEP`, the report's
prediction section), and the backtest of each size from the ones below it. The ladder method itself:
ladder_predict.py; this module re-exports its public names, the place `wps` and the benchmarks import from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import names as nm
from .ladder import Band, Ladder, Prediction, Step1, Step2, make_ladder
from .ladder_forms import (
    BOUNDS1,
    FORM_TEXT,
    LOGLINEAR_MIN,
    MIN_FOR,
    _chin_fun_jac,
    _fit_step1,
    _fit_step2,
    _lm_batch,
    _loglin_fun_jac,
    _sig_fun_jac,
    _sigmoid_acc,
    _step1_predict,
    _step2_bounds,
)
from .ladder_predict import FAR_C, FAR_N, FORMS, STEP2_MIN_SPAN, distance, distance_notes, predict
from .selection import tokens_per_pair

__all__ = [
    "Band",
    "Ladder",
    "Prediction",
    "Step1",
    "Step2",
    "make_ladder",
    "BOUNDS1",
    "FORM_TEXT",
    "LOGLINEAR_MIN",
    "MIN_FOR",
    "_chin_fun_jac",
    "_fit_step1",
    "_fit_step2",
    "_lm_batch",
    "_loglin_fun_jac",
    "_sig_fun_jac",
    "_sigmoid_acc",
    "_step1_predict",
    "_step2_bounds",
    "FAR_C",
    "FAR_N",
    "FORMS",
    "STEP2_MIN_SPAN",
    "distance",
    "distance_notes",
    "predict",
    "tokens_per_pair",
    "VERDICTS",
    "SweepPrediction",
    "predict_sweep_metric",
    "backtest",
]

VERDICTS = ("predictable", "not predictable", "not identified", "predicted only", "no interval")


@dataclass
class SweepPrediction:
    """One eval category or set: the target predicted from the sizes below it, at each milestone."""

    name: str
    """category or set"""
    target: str
    target_N: float
    ladder: list[str]
    """the smaller sizes used"""
    pairs: np.ndarray
    """the target's milestones (pairs)"""
    prediction: Prediction
    actual_loss: np.ndarray | None = None
    actual_acc: np.ndarray | None = None
    target_runs: int = 0
    points: dict = field(default_factory=dict)
    """model → (D, loss) of the ladder's step-1 points, and "acc" → (loss, acc) rows, for the figure."""

    @property
    def verdict(self) -> str:
        """At the target's last milestone (its budget): its actual loss inside the prediction interval?"""
        p = self.prediction
        if p.loss is None:
            return "not identified"
        if self.actual_loss is None or not np.isfinite(self.actual_loss[-1]):
            return "predicted only"
        if not np.isfinite(p.loss[-1].lo):
            return "no interval"  # bootstrap 0: nothing to test the actual against
        return "predictable" if p.loss[-1].contains(float(self.actual_loss[-1])) else "not predictable"

    def direction(self) -> str:
        """'better' / 'worse' than predicted at the last milestone (for a not-predictable verdict)."""
        loss, actual = self.prediction.loss, self.actual_loss
        if self.verdict != "not predictable" or loss is None or actual is None:
            return ""
        return "better" if actual[-1] < loss[-1].lo else "worse"

    def to_dict(self) -> dict:
        p = self.prediction
        rows = []
        for i, x in enumerate(self.pairs):
            r = {
                "pairs": float(x),
                "N": float(p.N[i]),
                "D": float(p.D[i]),
                "loss": p.loss[i].to_dict() if p.loss else None,
                "acc": p.acc[i].to_dict() if p.acc else None,
            }
            if self.actual_loss is not None:
                r["actual_loss"] = float(self.actual_loss[i])
                r["inside"] = bool(p.loss[i].contains(float(self.actual_loss[i]))) if p.loss else None
            if self.actual_acc is not None:
                r["actual_acc"] = float(self.actual_acc[i])
            rows.append(r)
        return {
            "name": self.name,
            "target": self.target,
            "target_N": self.target_N,
            "ladder": self.ladder,
            "target_runs": self.target_runs,
            "verdict": self.verdict,
            "direction": self.direction(),
            "milestones": rows,
            "step1": p.step1.to_dict(),
            "step2": p.step2.to_dict() if p.step2 else None,
            "distance": p.distance,
            "notes": p.notes,
            "level": p.level,
            "bootstrap": p.bootstrap,
        }


def _sweep_rows(df, metric: str, models: list[str], *, grid: bool):
    """(N, D tokens, value, run) of `metric` for these models; grid mode: each cell's last evaluation."""
    d = df[(df.metric == metric) & df.model.isin(models)].dropna(subset=["pairs", "value"])
    d = d[(d.pairs > 0) & (d.value > 0) if "loss" in metric else (d.pairs > 0)]
    if grid and len(d):
        d = d.loc[d.groupby("cell")["pairs"].idxmax()]
    tokens = d["tokens"].where(d["tokens"] > 0) if "tokens" in d.columns else None
    return d.assign(D=tokens if tokens is not None else d["pairs"])


def predict_sweep_metric(
    df,
    name: str,
    target: str,
    target_N: float,
    *,
    n_of: dict[str, float],
    grid: bool = False,
    bootstrap: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    form: str = "auto",
    pairs: np.ndarray | Sequence[float] | None = None,
) -> SweepPrediction | None:
    """Predict `target` (N = target_N) on eval `name` (category or set) from the sizes of the sweep smaller
    than it, at the target's milestones (or `pairs` for a target that never ran). None when the sweep has
    no such metric or fewer than 2 runs below the target."""
    loss_key, acc_key = nm.eval_loss(name), nm.eval_acc(name)
    ladder_models = sorted([m for m, n in n_of.items() if n < target_N], key=lambda m: n_of[m])
    if not ladder_models:
        return None
    L = _sweep_rows(df, loss_key, ladder_models, grid=grid)
    if L["cell"].nunique() < 2:
        return None
    A = _sweep_rows(df, acc_key, ladder_models, grid=grid)
    acc = None
    if len(A):
        A = A.set_index(["cell", "step"])["value"]
        acc = A.reindex(list(zip(L["cell"], L["step"]))).to_numpy(float)
        if not np.isfinite(acc).all():
            acc = None
    if acc is not None and ((acc < 0) | (acc > 1)).any():
        acc = None
    tpp = tokens_per_pair(df, ladder_models[-1])
    D = np.where(np.isfinite(L["D"].to_numpy(float)), L["D"].to_numpy(float), L["pairs"].to_numpy(float) * tpp)
    lad = make_ladder(
        L["N"].to_numpy(float),
        D,
        L["value"].to_numpy(float),
        acc=acc,
        run=L["cell"].astype(str).to_numpy(),
        step1_all=not grid,
    )
    T = df[(df.model == target) & (df.metric == loss_key)].dropna(subset=["pairs", "value"])
    actual_loss = actual_acc = None
    k = 1
    if len(T):
        if grid:
            T = T.loc[T.groupby("cell")["pairs"].idxmax()]
        g = T.groupby("pairs")
        x = np.array(sorted(g.groups), dtype=float)
        actual_loss = g["value"].mean().reindex(x).to_numpy(float)
        k = int(T["cell"].nunique()) if not grid else 1
        Dt = x * tokens_per_pair(df, target)
        TA = df[(df.model == target) & (df.metric == acc_key)].dropna(subset=["pairs", "value"])
        if len(TA):
            actual_acc = TA.groupby("pairs")["value"].mean().reindex(x).to_numpy(float)
    else:
        x = np.unique(L["pairs"].to_numpy(float)) if pairs is None else np.asarray(pairs, float)
        Dt = x * tpp
    p = predict(
        lad, np.full(len(x), target_N), Dt, form=form, bootstrap=bootstrap, level=level, seed=seed, target_runs=k
    )
    pts = {
        m: (D[L["model"].to_numpy() == m], L["value"].to_numpy(float)[L["model"].to_numpy() == m])
        for m in ladder_models
    }
    if acc is not None:
        pts["acc"] = (L["value"].to_numpy(float), acc)
    return SweepPrediction(
        name=name,
        target=target,
        target_N=float(target_N),
        ladder=ladder_models,
        pairs=x,
        prediction=p,
        actual_loss=actual_loss,
        actual_acc=actual_acc,
        target_runs=k if actual_loss is not None else 0,
        points=pts,
    )


def backtest(
    df,
    name: str,
    n_of: dict[str, float],
    *,
    grid: bool = False,
    bootstrap: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> list[SweepPrediction]:
    """Hold out each size from the third up in turn and predict it from the sizes below it."""
    models = sorted(n_of, key=lambda m: n_of[m])
    out = []
    for i in range(2, len(models)):
        sub = df[df.model.isin(models[: i + 1])]
        sp = predict_sweep_metric(
            sub,
            name,
            models[i],
            n_of[models[i]],
            n_of={m: n_of[m] for m in models[: i + 1]},
            grid=grid,
            bootstrap=bootstrap,
            level=level,
            seed=seed,
        )
        if sp is not None:
            out.append(sp)
    return out
