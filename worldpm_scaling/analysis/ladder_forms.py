"""The ladder's two functional forms and their fits: step 1, loss L(N, D) (E + A/N^α + B/D^β, or the
log-linear A·N^-α·D^-β), and step 2, accuracy from loss (a falling sigmoid); one fit each, and every
bootstrap replicate refitted at once by a batched Levenberg–Marquardt."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from .errors import FitError
from .fit_base import _LBFGS_REFIT, HUBER_DELTA
from .joint import EXPONENT_BOUNDS, MIN_DISTINCT, _fit_chin, default_chinchilla_starts

LOGLINEAR_MIN = 2
MIN_FOR = {"chinchilla": MIN_DISTINCT, "loglinear": LOGLINEAR_MIN}
"""distinct N and D values each form needs (fits.design_identification)."""
BOUNDS1 = {
    "chinchilla": ([-np.inf] * 3 + [EXPONENT_BOUNDS[0]] * 2, [np.inf] * 3 + [EXPONENT_BOUNDS[1]] * 2),
    "loglinear": ([-np.inf] * 3, [np.inf] * 3),
}
FORM_TEXT = {"chinchilla": "E + A/N^α + B/D^β", "loglinear": "A·N^-α·D^-β"}


# ---------------------------------------------------------------------------------------------
# step 1


def _params(form: str, th: np.ndarray) -> dict[str, float]:
    if form == "chinchilla":
        return {
            "E": float(np.exp(th[2])),
            "A": float(np.exp(th[0])),
            "B": float(np.exp(th[1])),
            "alpha": float(th[3]),
            "beta": float(th[4]),
        }
    return {"A": float(np.exp(th[0])), "alpha": float(th[1]), "beta": float(th[2])}


def _step1_predict(form: str, th: np.ndarray, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Vectorised over a leading batch axis of th (…, p) against targets N, D (m,) → (…, m)."""
    th = np.asarray(th, float)
    lN, lD = np.log(N), np.log(D)
    if form == "chinchilla":
        t = th[..., None, :]
        return np.exp(t[..., 0] - t[..., 3] * lN) + np.exp(t[..., 1] - t[..., 4] * lD) + np.exp(t[..., 2])
    t = th[..., None, :]
    return np.exp(t[..., 0] - t[..., 1] * lN - t[..., 2] * lD)


def _fit_step1(form: str, lN, lD, ly, *, delta: float | None, start=None) -> np.ndarray:
    if form == "chinchilla":
        starts = [tuple(start)] if start is not None else default_chinchilla_starts()
        # fits.py's 24 best starts refined: refining 8 (a third of the time) reached a worse optimum in 5 of
        # 30 planted ladders (median loss error 2.7% vs 2.0%)
        th, _ = _fit_chin(lN, lD, ly, delta or HUBER_DELTA, starts, options=_LBFGS_REFIT if start is not None else None)
        return th
    X = np.column_stack([np.ones_like(lN), -lN, -lD])
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    return coef


def _n_params(form: str) -> int:
    return 5 if form == "chinchilla" else 3


# ---------------------------------------------------------------------------------------------
# step 2


def _sigmoid_acc(th: np.ndarray, L: np.ndarray) -> np.ndarray:
    """acc = b + a·σ(k·(L0 − L)); th (…, 4) against L (…) broadcasting."""
    a, b, k, L0 = (th[..., i] for i in range(4))
    return b + a / (1.0 + np.exp(-np.clip(k * (L0 - L), -60, 60)))


def _fit_step2(L: np.ndarray, acc: np.ndarray, start=None) -> np.ndarray:
    span = float(np.ptp(L)) or 1.0

    def res(th):
        return _sigmoid_acc(th, L) - acc

    def jac(th):
        a, b, k, L0 = th
        z = np.clip(k * (L0 - L), -60, 60)
        s = 1.0 / (1.0 + np.exp(-z))
        ds = s * (1 - s)
        return np.column_stack([s, np.ones_like(L), a * ds * (L0 - L), a * ds * k])

    lo = [0.0, 0.0, 0.0, float(L.min()) - 2 * span]
    hi = [1.0, 1.0, 1e3 / span, float(L.max()) + 2 * span]
    if start is not None:
        starts = [np.clip(start, lo, hi)]
    else:
        amin, amax = float(acc.min()), float(acc.max())
        starts = [
            np.array([max(amax - amin, 0.01), amin, kk / span, L0])
            for kk in (2.0, 8.0, 30.0)
            for L0 in np.quantile(L, [0.25, 0.5, 0.75])
        ]
    best: np.ndarray | None = None
    best_cost = math.inf
    for s0 in starts:
        s0 = np.clip(s0, lo, hi)
        r = optimize.least_squares(
            res, s0, jac=jac, bounds=(lo, hi), method="trf", max_nfev=200 if start is not None else 1000, x_scale="jac"
        )
        if r.cost < best_cost:
            best, best_cost = r.x, r.cost
    if best is None:
        raise FitError("accuracy-from-loss fit did not converge from any start")
    return best


# ---------------------------------------------------------------------------------------------
# batched refits: every bootstrap replicate at once


def _lm_batch(
    fun_jac, theta0: np.ndarray, w: np.ndarray, lo, hi, *, delta: float | None, iters: int = 60
) -> np.ndarray:
    """Levenberg–Marquardt over a batch of weighted problems that share one design: replicate b minimises
    Σ_i w[b, i]·ρ(r_i(θ_b)), ρ = Huber(δ) (by iteratively reweighted steps) or ½r² (δ None). A case
    bootstrap is exactly such a weighting (w = how often each point was drawn), so 1,000 refits cost
    one vectorised solve per iteration instead of 1,000 scipy calls (bench/results/predict_coverage.txt).
    Bounds by projection."""
    th = np.array(theta0, dtype=float)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    B, p = th.shape
    lam = np.full(B, 1e-3)

    def obj(r):
        if delta is None:
            return 0.5 * (w * r * r).sum(axis=1)
        a = np.abs(r)
        return (w * np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))).sum(axis=1)

    r, J = fun_jac(th)
    f = obj(r)
    eye = np.eye(p)
    for _ in range(iters):
        h = w if delta is None else w * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
        JtW = J.transpose(0, 2, 1) * h[:, None, :]
        H = JtW @ J
        g = (JtW @ r[..., None])[..., 0]
        dg = np.maximum(np.diagonal(H, axis1=1, axis2=2), 1e-12)
        try:
            step = np.linalg.solve(H + lam[:, None, None] * dg[:, None, :] * eye, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / (dg * (1 + lam[:, None]))
        new = np.clip(th + step, lo, hi)
        r2, J2 = fun_jac(new)
        f2 = obj(r2)
        ok = np.isfinite(f2) & (f2 <= f)
        th = np.where(ok[:, None], new, th)
        r = np.where(ok[:, None], r2, r)
        J = np.where(ok[:, None, None], J2, J)
        small = ok & (f - f2 <= 1e-12 * np.maximum(f, 1e-30))
        f = np.where(ok, f2, f)
        lam = np.where(ok, lam / 3, lam * 4)
        if (small | (lam > 1e8)).all():
            break
    return th


def _chin_fun_jac(lN, lD, ly):
    def fj(th):
        a, b, e, al, be = (th[:, i : i + 1] for i in range(5))
        t0, t1 = a - al * lN, b - be * lD
        m = np.maximum(np.maximum(t0, t1), e)
        e0, e1, e2 = np.exp(t0 - m), np.exp(t1 - m), np.exp(e - m)
        tot = e0 + e1 + e2
        w0, w1, w2 = e0 / tot, e1 / tot, e2 / tot
        r = m + np.log(tot) - ly
        return r, np.stack([w0, w1, np.broadcast_to(w2, w0.shape), -w0 * lN, -w1 * lD], axis=2)

    return fj


def _loglin_fun_jac(lN, lD, ly):
    X = np.column_stack([np.ones_like(lN), -lN, -lD])

    def fj(th):
        return th @ X.T - ly, np.broadcast_to(X, (len(th),) + X.shape)

    return fj


def _sig_fun_jac(L, acc):
    def fj(th):
        a, b, k, L0 = (th[:, i : i + 1] for i in range(4))
        z = np.clip(k * (L0 - L), -60, 60)
        s = 1.0 / (1.0 + np.exp(-z))
        ds = s * (1 - s)
        r = b + a * s - acc
        return r, np.stack([s, np.ones_like(s), a * ds * (L0 - L), a * ds * k], axis=2)

    return fj


def _bin_sd(acc) -> np.ndarray:
    a = np.clip(acc, 0.02, 0.98)
    return np.sqrt(a * (1 - a))


def _step2_bounds(L):
    span = float(np.ptp(L)) or 1.0
    return [0.0, 0.0, 0.0, float(L.min()) - 2 * span], [1.0, 1.0, 1e3 / span, float(L.max()) + 2 * span]
