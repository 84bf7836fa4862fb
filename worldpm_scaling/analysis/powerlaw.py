"""The power law L = E + A·x^-α: OLS in log-log space with E fixed, a Huber fit in log space with E free
(Hoffmann et al. 2022, approach 3), bootstrap intervals and the leave-largest-out extrapolation error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .errors import AnalysisInputError, FitError
from .fit_base import (
    _LBFGS,
    _LBFGS_REFIT,
    HUBER_DELTA,
    Interval,
    _huber,
    _intervals,
    _ols_loglog,
    _one_blas_thread,
    check_xy,
)


@dataclass(frozen=True)
class PowerFit:
    """L = E + A·x^-α."""

    E: float
    A: float
    alpha: float
    n: int
    fixed_E: bool
    ci: dict[str, Interval] = field(default_factory=dict)
    level: float = 0.9
    extrapolation_rel_error: float | None = None
    """|pred − actual| / actual at the largest x when fitted without it."""

    def predict(self, x) -> np.ndarray:
        return self.E + self.A * np.power(np.asarray(x, dtype=float), -self.alpha)

    def to_dict(self) -> dict:
        return {
            "E": self.E,
            "A": self.A,
            "alpha": self.alpha,
            "n": self.n,
            "fixed_E": self.fixed_E,
            "level": self.level,
            "ci": {k: v.to_list() for k, v in self.ci.items()},
            "extrapolation_rel_error": self.extrapolation_rel_error,
        }


def _power_objective(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float):
    a, alpha, e = theta
    t1 = a - alpha * logx
    lse = np.logaddexp(t1, e)
    r = lse - logy
    val, g = _huber(r, delta)
    w1 = np.exp(t1 - lse)
    w2 = np.exp(e - lse)
    return val, np.array([(g * w1).sum(), (g * w1 * -logx).sum(), (g * w2).sum()])


def _fit_power_free(
    logx: np.ndarray, logy: np.ndarray, *, delta: float, starts=None, options: dict | None = None
) -> tuple[np.ndarray, float]:
    if starts is None:
        ymin = logy.min()
        starts = [
            (a, al, e)
            for a in (logy.max() + 1.0, logy.max() + 5.0, logy.max() + 15.0)
            for al in (0.05, 0.2, 0.5, 1.0)
            for e in (ymin - 5.0, ymin - 1.0, ymin - 0.1)
        ]
    best, best_val = None, math.inf
    for s in starts:
        res = optimize.minimize(
            _power_objective,
            np.array(s, float),
            args=(logx, logy, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=[(None, None), (0.0, 10.0), (None, None)],
            options=options or _LBFGS,
        )
        if res.fun < best_val and np.isfinite(res.fun):
            best, best_val = res.x, res.fun
    if best is None:
        raise FitError("power-law fit did not converge from any start")
    return best, best_val


@_one_blas_thread
def fit_power(
    x,
    y,
    *,
    fix_E: float | None = None,
    bootstrap: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    extrapolate: bool = True,
    x_name: str = "x",
    y_name: str = "y",
    delta: float = HUBER_DELTA,
) -> PowerFit:
    """Fit L = E + A·x^-α with bootstrap intervals.

    `fix_E=0` gives the pure power law (OLS in log-log, exact and vectorised). Otherwise E is fitted
    (or fixed at a positive value, subtracted before the log-log fit).
    """
    xs, ys = check_xy(x, y, n_params=2 if fix_E is not None else 3, names=(x_name,), y_name=y_name)
    xs = xs[:, 0]
    rng = np.random.default_rng(seed)
    if fix_E is not None:
        resid = ys - fix_E
        if (resid <= 0).any():
            raise AnalysisInputError(f"{y_name} must exceed the fixed E={fix_E} everywhere")
        lx, ly = np.log(xs), np.log(resid)
        loga, slope = _ols_loglog(lx, ly)
        E, A, alpha = float(fix_E), float(np.exp(loga)), float(slope)
        ci: dict[str, Interval] = {}
        if bootstrap:
            idx = rng.integers(0, len(xs), size=(bootstrap, len(xs)))
            la, al = _ols_loglog(lx[idx], ly[idx])
            ok = np.isfinite(al)
            ci = _intervals({"A": np.exp(la[ok]), "alpha": al[ok]}, level)
            ci["E"] = Interval(E, E)
    else:
        lx, ly = np.log(xs), np.log(ys)
        theta, _ = _fit_power_free(lx, ly, delta=delta)
        A, alpha, E = float(np.exp(theta[0])), float(theta[1]), float(np.exp(theta[2]))
        ci = {}
        if bootstrap:
            samples = []
            for _ in range(bootstrap):
                idx = rng.integers(0, len(xs), size=len(xs))
                if np.ptp(lx[idx]) == 0:
                    continue
                th, _ = _fit_power_free(lx[idx], ly[idx], delta=delta, starts=[theta], options=_LBFGS_REFIT)
                samples.append(th)
            s = np.array(samples)
            ci = _intervals({"A": np.exp(s[:, 0]), "alpha": s[:, 1], "E": np.exp(s[:, 2])}, level)
    extra = None
    if extrapolate and len(xs) > (4 if fix_E is not None else 5):
        keep = xs < xs.max()
        if keep.sum() > (2 if fix_E is not None else 3):
            sub = fit_power(xs[keep], ys[keep], fix_E=fix_E, bootstrap=0, extrapolate=False, delta=delta)
            at = xs == xs.max()
            extra = float(np.mean(np.abs(sub.predict(xs[at]) - ys[at]) / ys[at]))
    return PowerFit(
        E=E, A=A, alpha=alpha, n=len(xs), fixed_E=fix_E is not None, ci=ci, level=level, extrapolation_rel_error=extra
    )
