"""The joint law L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3) and its caveats: when its
exponents are not identified (design, bounds, interval width, a term that barely moves the loss) and
when its compute-optimal frontier runs below every measured point. A fit with a caveat gives no frontier."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from .errors import FitError
from .fit_base import (
    _LBFGS_CHIN,
    _LBFGS_REFIT,
    _LBFGS_ROUGH,
    HUBER_DELTA,
    Interval,
    _huber,
    _intervals,
    _one_blas_thread,
    check_xy,
)


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
    n_N: int = 0
    """distinct N values fitted (0 = unknown: a fit built by hand); identification needs MIN_DISTINCT."""
    n_D: int = 0

    def predict(self, N, D) -> np.ndarray:
        N = np.asarray(N, dtype=float)
        D = np.asarray(D, dtype=float)
        return self.E + self.A * N**-self.alpha + self.B * D**-self.beta

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
        why = identification(self)
        return {
            "E": self.E,
            "A": self.A,
            "B": self.B,
            "alpha": self.alpha,
            "beta": self.beta,
            "n": self.n,
            "level": self.level,
            "ci": {k: v.to_list() for k, v in self.ci.items()},
            "identified": not why,
            "not_identified": why,
            "frontier": None if why else {"N_opt_exponent": a, "D_opt_exponent": b},
        }


# An exponent whose bootstrap interval is wider than this ratio (hi / lo) is not pinned by the data:
# the demo's adversarial joint fit had α in [0.11, 2.34] (21×), which made its frontier meaningless.
# Hoffmann et al.'s own fit (α 0.34, β 0.28) is quoted to ±0.02, a ratio near 1.1.
IDENT_MAX_RATIO = 3.0
MIN_DISTINCT = 3
"""E + A/N^α + B/D^β needs 3 distinct N (the N term has E, A and α to pin) and 3 distinct D: with fewer,
the optimiser stops where it started, and its bootstrap refits (from that optimum) give zero-width
intervals that look identified. One model size gave exactly that (issue 31)."""
EXPONENT_BOUNDS = (0.0, 5.0)
"""α and β of E + A/N^α + B/D^β are searched in this box (fit_chinchilla, and predict's step 1);
an estimate at its edge is reported as not identified."""
_AT_BOUND = 1e-3


def design_identification(
    n_N: int, n_D: int, *, need: int = MIN_DISTINCT, names: tuple[str, str] = ("N", "D")
) -> list[str]:
    """Reasons the design (distinct N and D values) cannot identify the joint fit (empty = it can)."""
    return [
        f"{k} distinct {name} value{'s' if k != 1 else ''} (the form needs {need})"
        for k, name in zip((n_N, n_D), names)
        if 0 < k < need
    ]


def identification(fit: "ChinchillaFit") -> list[str]:
    """Reasons the joint fit's exponents are not identified (empty = identified).

    Too few distinct N or D (design_identification), an exponent at (or an interval touching) the
    optimiser's bound, an interval spanning more than IDENT_MAX_RATIO, or no interval at all (bootstrap
    0: nothing can be said) each make it so."""
    lo_b, hi_b = EXPONENT_BOUNDS
    out = design_identification(fit.n_N, fit.n_D)
    if out:
        return out
    for k in ("alpha", "beta"):
        v, ci = getattr(fit, k), fit.ci.get(k)
        if not lo_b + _AT_BOUND < v < hi_b - _AT_BOUND:
            out.append(f"{k} = {v:.3g} at its bound")
        elif ci is None:
            out.append(f"{k} has no interval (no bootstrap)")
        elif ci.lo <= lo_b + _AT_BOUND or ci.hi >= hi_b - _AT_BOUND:
            out.append(
                f"{k} interval [{ci.lo:.3g}, {ci.hi:.3g}] touches the bound {lo_b if ci.lo <= lo_b + _AT_BOUND else hi_b:g}"
            )
        elif ci.hi / ci.lo > IDENT_MAX_RATIO:
            out.append(f"{k} interval [{ci.lo:.3g}, {ci.hi:.3g}] spans {ci.hi / ci.lo:.1f}x (> {IDENT_MAX_RATIO:g}x)")
    return out


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
    return [
        (a, b, e, al, be)
        for a in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
        for b in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
        for e in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
        for al in (0.0, 0.5, 1.0, 1.5, 2.0)
        for be in (0.0, 0.5, 1.0, 1.5, 2.0)
    ]


def _fit_chin(logN, logD, logy, delta, starts, options=None, refine: int = 24):
    # Evaluate every start's objective first and refine only the best few: the full grid of
    # 4,500 starts × L-BFGS would be slow, and the best starts land in the same basin anyway.
    S = np.asarray(starts, dtype=float)
    t = np.stack(
        [S[:, 0:1] - S[:, 3:4] * logN, S[:, 1:2] - S[:, 4:5] * logD, np.broadcast_to(S[:, 2:3], (len(S), len(logN)))],
        axis=1,
    )
    r = np.abs(logsumexp(t, axis=1) - logy)
    vals = np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)).sum(axis=1)  # ranking only
    order = np.argsort(vals)[: min(refine, len(starts))]
    bounds = [(None, None), (None, None), (None, None), EXPONENT_BOUNDS, EXPONENT_BOUNDS]

    def run(x0, opts):
        res = optimize.minimize(
            _chin_objective,
            np.asarray(x0, float),
            args=(logN, logD, logy, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=opts,
        )
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
def fit_chinchilla(
    N,
    D,
    y,
    *,
    bootstrap: int = 200,
    level: float = 0.9,
    seed: int = 0,
    starts: list[tuple[float, ...]] | None = None,
    names: tuple[str, str] = ("N", "D"),
    y_name: str = "y",
    delta: float = HUBER_DELTA,
) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β (log-space Huber, grid of starts, L-BFGS) with bootstrap CIs."""
    xs, ys = check_xy(
        np.column_stack([np.asarray(N, float), np.asarray(D, float)]), y, n_params=5, names=names, y_name=y_name
    )
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
        ci = _intervals(
            {"A": np.exp(s[:, 0]), "B": np.exp(s[:, 1]), "E": np.exp(s[:, 2]), "alpha": s[:, 3], "beta": s[:, 4]}, level
        )
    return ChinchillaFit(
        E=float(np.exp(theta[2])),
        A=float(np.exp(theta[0])),
        B=float(np.exp(theta[1])),
        alpha=float(theta[3]),
        beta=float(theta[4]),
        n=len(ys),
        ci=ci,
        level=level,
        loss=float(val),
        n_N=len(np.unique(xs[:, 0])),
        n_D=len(np.unique(xs[:, 1])),
    )


# ---------------------------------------------------------------------------------------------
# caveats beside identification: what the report says instead of a frontier


POOR_FIT_MIN_GAP = 0.01
POOR_FIT_RMS = 0.05
"""A joint fit whose compute-optimal loss runs more than POOR_FIT_MIN_GAP below every measured envelope
point, further than twice its residual rms or with a residual rms above POOR_FIT_RMS (5% in log loss),
gives no frontier (poor_fit_caveat)."""


def frontier_gap(j: ChinchillaFit, x: np.ndarray, y: np.ndarray) -> float:
    """How far (relative) the joint fit's compute-optimal loss L(N_opt(C), D_opt(C)) lies below the
    closest measured envelope point: > 0 means the line runs below every point."""
    n_opt, d_opt = j.frontier(x)
    pred = j.predict(n_opt, d_opt)
    return float(np.min(np.log(y) - np.log(pred)))


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
