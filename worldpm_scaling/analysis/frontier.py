"""The frontier over model sizes: the lower envelope of loss-vs-compute curves, a power law fitted to it,
and intervals from redrawing each curve before the envelope is taken."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import AnalysisInputError
from .fit_base import Interval, _intervals, _ols_loglog, _one_blas_thread, check_xy
from .powerlaw import PowerFit


def lower_envelope(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The measured points that lie on the lower envelope of the curves (x = compute, y = loss).

    A point stays when no other curve that spans its x passes below it there (log-log linear
    interpolation between that curve's points). Unlike a running minimum over x, this does not force
    the frontier to fall: where one curve is alone its points are kept as measured, so the envelope of
    flat curves stays flat and a power law fitted to it can have either sign."""
    keep_x, keep_y = [], []
    logs = [(np.log(c), np.log(y)) for c, y in curves]
    for i, (lc, ly) in enumerate(logs):
        ok = np.ones(len(lc), dtype=bool)
        for k, (lc2, ly2) in enumerate(logs):
            if k == i or len(lc2) == 0:
                continue
            inside = (lc >= lc2[0]) & (lc <= lc2[-1])
            if inside.any():
                other = np.interp(lc, lc2, ly2)
                ok &= ~(inside & (other < ly))
        keep_x.append(lc[ok])
        keep_y.append(ly[ok])
    x = np.exp(np.concatenate(keep_x)) if keep_x else np.empty(0)
    y = np.exp(np.concatenate(keep_y)) if keep_y else np.empty(0)
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


@dataclass(frozen=True)
class FrontierFit:
    """L = A·C^-α fitted to the lower envelope of the curves; intervals from a curve-respecting bootstrap."""

    fit: PowerFit
    x: np.ndarray
    y: np.ndarray
    resamples: int
    """bootstrap replicates that gave a slope (an envelope with ≥ 2 distinct x)."""


@_one_blas_thread
def fit_frontier(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    bootstrap: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    y_name: str = "y",
) -> FrontierFit:
    """Power law fitted to the lower envelope of several loss-vs-compute curves.

    Bootstrap (parametric, curve by curve): each replicate redraws every curve from its own log-log line
    plus noise at the curves' pooled residual scale (Student t with points − 2·curves degrees of freedom,
    which carries the uncertainty of that scale), takes the envelope of the redrawn curves and refits.
    The envelope's points are never resampled as if independent: a point is on the envelope only because
    of the other curves, so each replicate rebuilds it. Measured on flat curves at 5 points each, 3
    sizes, 5% noise, the 90% interval covered 0 in 88% of 150 sweeps (resampling each curve's points
    gave 72%: five points resample too narrowly); for a power law in compute it covered the exponent in 93%."""
    cs = []
    for name, (c, y) in curves.items():
        c, y = check_xy(c, y, n_params=0, names=(f"{name} compute",), y_name=y_name)
        order = np.argsort(c[:, 0])
        cs.append((c[order, 0], y[order]))
    ex, ey = lower_envelope(cs)
    if len(np.unique(ex)) < 3:
        raise AnalysisInputError(f"the lower envelope has {len(np.unique(ex))} distinct compute values; need 3")
    lx, ly = np.log(ex), np.log(ey)
    la, alpha = _ols_loglog(lx, ly)
    ci: dict[str, Interval] = {}
    used = 0
    if bootstrap:
        rng = np.random.default_rng(seed)
        lines, rss, npts = [], 0.0, 0
        for c, y in cs:
            lc, lyc = np.log(c), np.log(y)
            if len(c) >= 2 and np.ptp(lc) > 0:
                a_, al_ = _ols_loglog(lc, lyc)
                f = a_ - al_ * lc
            else:
                f = np.full(len(c), lyc.mean())
            lines.append((c, f))
            rss += float(((lyc - f) ** 2).sum())
            npts += len(c)
        dof = max(npts - 2 * len(cs), 1)
        sigma = math.sqrt(rss / dof)
        A_s, al_s = [], []
        for _ in range(bootstrap):
            rs = [(c, np.exp(f + sigma * rng.standard_t(dof, size=len(c)))) for c, f in lines]
            bx, by = lower_envelope(rs)
            if len(np.unique(bx)) < 2:
                continue
            a_, al_ = _ols_loglog(np.log(bx), np.log(by))
            A_s.append(np.exp(a_))
            al_s.append(al_)
        used = len(al_s)
        ci = _intervals({"A": np.array(A_s), "alpha": np.array(al_s)}, level)
        ci["E"] = Interval(0.0, 0.0)
    fit = PowerFit(E=0.0, A=float(np.exp(la)), alpha=float(alpha), n=len(ex), fixed_E=True, ci=ci, level=level)
    return FrontierFit(fit=fit, x=ex, y=ey, resamples=used)
