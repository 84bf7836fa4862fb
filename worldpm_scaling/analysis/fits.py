"""Scaling-law fits with honest uncertainty.

- `fit_power(x, y)`: L = E + A·x^-α. With E fixed at 0 (the seed articles' pure (C/C0)^-α form) it is
  ordinary least squares in log-log space; with E free it is a Huber fit in log space (Hoffmann et
  al. 2022, "Chinchilla", approach 3) from a grid of starts, refined by L-BFGS-B.
- `fit_chinchilla(N, D, y)`: L = E + A/N^α + B/D^β, same recipe, plus the compute-optimal frontier.
- Bootstrap intervals (resampling points), and the leave-largest-out extrapolation error.

The exponent is always an output. The seed articles quote L ∝ C^-0.12; the paper (arXiv 2505.10527)
fits no exponent at all (shared/notes/worldpm_paper.md), so no exponent is assumed anywhere here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from .errors import AnalysisInputError, FitError


def _one_blas_thread(fn):
    """Run `fn` with BLAS on one thread. SciPy's L-BFGS-B makes tiny BLAS calls every iteration; a
    multi-threaded OpenBLAS spins its workers on each, which on a busy machine made one 5-parameter
    fit 30x slower (measured: Rosenbrock, 37 iterations, 0.85 s vs 0.026 s)."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: without it, fits are only slower
            return fn(*args, **kwargs)
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapped

HUBER_DELTA = 1e-3  # Chinchilla approach 3
_LBFGS = {"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-10}
# L(N, D): flat or degenerate surfaces (few model sizes, a term at its bound) crawl for thousands of
# iterations under ftol 1e-14 without moving the optimum; 1e-12 keeps the planted-grid recovery.
_LBFGS_CHIN = {"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-9}
_LBFGS_ROUGH = {"maxiter": 150, "ftol": 1e-9, "gtol": 1e-6}  # first pass over the grid's best starts
_LBFGS_REFIT = {"maxiter": 500, "ftol": 1e-11, "gtol": 1e-8}  # bootstrap refits start at the optimum


# ---------------------------------------------------------------------------------------------
# input checks


def check_xy(x, y, *, n_params: int, names: tuple[str, ...] = ("x",), y_name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Arrays as float, with a named error for empty, NaN, non-positive or too-few points."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.ndim == 1:
        xs = xs[:, None]
    if len(ys) == 0:
        raise AnalysisInputError(f"no points to fit ({y_name} is empty)")
    if xs.shape[0] != len(ys):
        raise AnalysisInputError(f"{', '.join(names)} and {y_name} have different lengths ({xs.shape[0]} vs {len(ys)})")
    for j, name in enumerate(names):
        col = xs[:, j]
        if np.isnan(col).any():
            raise AnalysisInputError(f"column {name!r} has NaN values (rows {np.flatnonzero(np.isnan(col))[:5].tolist()})")
        if (col <= 0).any():
            raise AnalysisInputError(f"column {name!r} must be positive for a power law "
                                     f"(rows {np.flatnonzero(col <= 0)[:5].tolist()})")
    if np.isnan(ys).any():
        raise AnalysisInputError(f"column {y_name!r} has NaN values (rows {np.flatnonzero(np.isnan(ys))[:5].tolist()})")
    if (ys <= 0).any():
        raise AnalysisInputError(f"column {y_name!r} must be positive (a loss) to fit in log space")
    if len(ys) <= n_params:
        raise AnalysisInputError(f"{len(ys)} points cannot determine {n_params} parameters; need at least {n_params + 1}")
    return xs, ys


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float

    def contains(self, v: float) -> bool:
        return self.lo <= v <= self.hi

    def to_list(self) -> list[float]:
        return [self.lo, self.hi]


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
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "n": self.n, "fixed_E": self.fixed_E,
                "level": self.level, "ci": {k: v.to_list() for k, v in self.ci.items()},
                "extrapolation_rel_error": self.extrapolation_rel_error}


@dataclass(frozen=True)
class ChinchillaFit:
    """L(N, D) = E + A/N^α + B/D^β."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    n: int
    ci: dict[str, Interval] = field(default_factory=dict)
    level: float = 0.9
    loss: float = float("nan")

    def predict(self, N, D) -> np.ndarray:
        N = np.asarray(N, dtype=float)
        D = np.asarray(D, dtype=float)
        return self.E + self.A * N ** -self.alpha + self.B * D ** -self.beta

    def frontier(self, compute) -> tuple[np.ndarray, np.ndarray]:
        """Compute-optimal N and D for C = 6·N·D: N_opt = G·(C/6)^a, D_opt = (C/6)^b / G with
        a = β/(α+β), b = α/(α+β), G = (αA/(βB))^(1/(α+β))."""
        c6 = np.asarray(compute, dtype=float) / 6.0
        s = self.alpha + self.beta
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / s)
        return G * c6 ** (self.beta / s), c6 ** (self.alpha / s) / G

    @property
    def frontier_exponents(self) -> tuple[float, float]:
        """(a, b) in N_opt ∝ C^a, D_opt ∝ C^b."""
        s = self.alpha + self.beta
        return self.beta / s, self.alpha / s

    def to_dict(self) -> dict:
        a, b = self.frontier_exponents
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta,
                "n": self.n, "level": self.level, "ci": {k: v.to_list() for k, v in self.ci.items()},
                "frontier": {"N_opt_exponent": a, "D_opt_exponent": b}}


# ---------------------------------------------------------------------------------------------
# power law


def _ols_loglog(logx: np.ndarray, logy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised over a leading batch axis: returns (log A, α) for log y = log A − α log x."""
    mx = logx.mean(axis=-1, keepdims=True)
    my = logy.mean(axis=-1, keepdims=True)
    dx = logx - mx
    sxx = (dx * dx).sum(axis=-1)
    slope = (dx * (logy - my)).sum(axis=-1) / np.where(sxx > 0, sxx, np.nan)
    return my[..., 0] - slope * mx[..., 0], -slope


def _huber(r: np.ndarray, delta: float) -> tuple[float, np.ndarray]:
    """Huber loss, divided by δ·n so that its scale (≈ mean |r|) does not depend on δ or n: with the
    raw sum, L-BFGS-B's default tolerances stop at the start point when δ is small."""
    a = np.abs(r)
    quad = a <= delta
    scale = delta * len(r)
    val = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta)) / scale
    grad = np.where(quad, r, delta * np.sign(r)) / scale
    return float(val.sum()), grad


def _power_objective(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, delta: float):
    a, alpha, e = theta
    t1 = a - alpha * logx
    lse = np.logaddexp(t1, e)
    r = lse - logy
    val, g = _huber(r, delta)
    w1 = np.exp(t1 - lse)
    w2 = np.exp(e - lse)
    return val, np.array([(g * w1).sum(), (g * w1 * -logx).sum(), (g * w2).sum()])


def _fit_power_free(logx: np.ndarray, logy: np.ndarray, *, delta: float, starts=None,
                    options: dict | None = None) -> tuple[np.ndarray, float]:
    if starts is None:
        ymin = logy.min()
        starts = [(a, al, e) for a in (logy.max() + 1.0, logy.max() + 5.0, logy.max() + 15.0)
                  for al in (0.05, 0.2, 0.5, 1.0) for e in (ymin - 5.0, ymin - 1.0, ymin - 0.1)]
    best, best_val = None, math.inf
    for s in starts:
        res = optimize.minimize(_power_objective, np.array(s, float), args=(logx, logy, delta), jac=True,
                                method="L-BFGS-B", bounds=[(None, None), (0.0, 10.0), (None, None)],
                                options=options or _LBFGS)
        if res.fun < best_val and np.isfinite(res.fun):
            best, best_val = res.x, res.fun
    if best is None:
        raise FitError("power-law fit did not converge from any start")
    return best, best_val


@_one_blas_thread
def fit_power(x, y, *, fix_E: float | None = None, bootstrap: int = 1000, level: float = 0.9,
              seed: int = 0, extrapolate: bool = True, x_name: str = "x", y_name: str = "y",
              delta: float = HUBER_DELTA) -> PowerFit:
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
        loga, alpha = _ols_loglog(lx, ly)
        E, A, alpha = float(fix_E), float(np.exp(loga)), float(alpha)
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
    return PowerFit(E=E, A=A, alpha=alpha, n=len(xs), fixed_E=fix_E is not None, ci=ci, level=level,
                    extrapolation_rel_error=extra)


def _intervals(samples: dict[str, np.ndarray], level: float) -> dict[str, Interval]:
    q = (1 - level) / 2
    return {k: Interval(float(np.quantile(v, q)), float(np.quantile(v, 1 - q))) for k, v in samples.items() if len(v)}


# ---------------------------------------------------------------------------------------------
# Chinchilla L(N, D)


def _chin_objective(theta, logN, logD, logy, delta):
    # Hand-rolled 3-term log-sum-exp: scipy's logsumexp costs ~10x more per call at these sizes,
    # and L-BFGS calls this tens of thousands of times per fit.
    a, b, e, alpha, beta = theta
    t0 = a - alpha * logN
    t1 = b - beta * logD
    m = np.maximum(np.maximum(t0, t1), e)
    e0, e1, e2 = np.exp(t0 - m), np.exp(t1 - m), np.exp(e - m)
    tot = e0 + e1 + e2
    r = m + np.log(tot) - logy
    val, g = _huber(r, delta)
    g0, g1 = g * (e0 / tot), g * (e1 / tot)
    grad = np.array([g0.sum(), g1.sum(), (g * (e2 / tot)).sum(), -(g0 @ logN), -(g1 @ logD)])
    return val, grad


def default_chinchilla_starts() -> list[tuple[float, ...]]:
    """The grid of Hoffmann et al. (2022), approach 3."""
    return [(a, b, e, al, be) for a in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0) for b in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
            for e in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5) for al in (0.0, 0.5, 1.0, 1.5, 2.0) for be in (0.0, 0.5, 1.0, 1.5, 2.0)]


def _fit_chin(logN, logD, logy, delta, starts, options=None, refine: int = 24):
    # Evaluate every start's objective first and refine only the best few: the full grid of
    # 4,500 starts × L-BFGS would be slow, and the best starts land in the same basin anyway.
    S = np.asarray(starts, dtype=float)
    t = np.stack([S[:, 0:1] - S[:, 3:4] * logN, S[:, 1:2] - S[:, 4:5] * logD,
                  np.broadcast_to(S[:, 2:3], (len(S), len(logN)))], axis=1)
    r = np.abs(logsumexp(t, axis=1) - logy)
    vals = np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)).sum(axis=1)  # ranking only
    order = np.argsort(vals)[: min(refine, len(starts))]
    bounds = [(None, None), (None, None), (None, None), (0.0, 5.0), (0.0, 5.0)]

    def run(x0, opts):
        res = optimize.minimize(_chin_objective, np.asarray(x0, float), args=(logN, logD, logy, delta),
                                jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
        return res.x, (res.fun if np.isfinite(res.fun) else math.inf)

    if options is not None:  # bootstrap refit from the optimum: one run
        stage = [run(starts[i], options) for i in order]
    else:  # every start roughly, then polish the best three (most starts share one basin)
        rough = sorted((run(starts[i], _LBFGS_ROUGH) for i in order), key=lambda r: r[1])
        stage = [run(x, _LBFGS_CHIN) for x, _ in rough[:3]]
    best, best_val = None, math.inf
    for x, v in stage:
        if v < best_val:
            best, best_val = x, v
    if best is None:
        raise FitError("L(N, D) fit did not converge from any start")
    return best, best_val


@_one_blas_thread
def fit_chinchilla(N, D, y, *, bootstrap: int = 200, level: float = 0.9, seed: int = 0,
                   starts: list[tuple[float, ...]] | None = None, names: tuple[str, str] = ("N", "D"),
                   y_name: str = "y", delta: float = HUBER_DELTA) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β (log-space Huber, grid of starts, L-BFGS) with bootstrap CIs."""
    xs, ys = check_xy(np.column_stack([np.asarray(N, float), np.asarray(D, float)]), y, n_params=5,
                      names=names, y_name=y_name)
    logN, logD, logy = np.log(xs[:, 0]), np.log(xs[:, 1]), np.log(ys)
    theta, val = _fit_chin(logN, logD, logy, delta, starts or default_chinchilla_starts())
    ci = {}
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = []
        for _ in range(bootstrap):
            idx = rng.integers(0, len(ys), size=len(ys))
            th, _ = _fit_chin(logN[idx], logD[idx], logy[idx], delta, [tuple(theta)], options=_LBFGS_REFIT)
            samples.append(th)
        s = np.array(samples)
        ci = _intervals({"A": np.exp(s[:, 0]), "B": np.exp(s[:, 1]), "E": np.exp(s[:, 2]),
                         "alpha": s[:, 3], "beta": s[:, 4]}, level)
    return ChinchillaFit(E=float(np.exp(theta[2])), A=float(np.exp(theta[0])), B=float(np.exp(theta[1])),
                         alpha=float(theta[3]), beta=float(theta[4]), n=len(ys), ci=ci, level=level, loss=float(val))
