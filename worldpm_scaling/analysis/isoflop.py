"""IsoFLOP profiles (Hoffmann et al. 2022, approach 2): a grid's curves interpolated at shared compute
budgets, per budget the loss-optimal N from a parabola in log N, then N_opt ∝ C^a and D_opt ∝ C^b with
bootstrap intervals."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .errors import AnalysisInputError
from .fit_base import Interval, _intervals, _ols_loglog, _one_blas_thread, check_xy


@dataclass(frozen=True)
class IsoflopBudget:
    C: float
    N_opt: float
    D_opt: float
    points: int
    used: bool
    flag: str = ""
    """why the budget is not used (empty when used)."""
    N_opt_ci: Interval | None = None

    def to_dict(self) -> dict:
        return {
            "C": self.C,
            "N_opt": self.N_opt,
            "D_opt": self.D_opt,
            "points": self.points,
            "used": self.used,
            "flag": self.flag,
            "N_opt_ci": self.N_opt_ci.to_list() if self.N_opt_ci else None,
        }


@dataclass(frozen=True)
class IsoflopFit:
    """N_opt = kN·C^a, D_opt = kD·C^b over the budgets whose loss minimum lies inside the sampled sizes."""

    a: float
    b: float
    kN: float
    kD: float
    budgets: tuple[IsoflopBudget, ...]
    ci: dict[str, Interval] = field(default_factory=dict)
    level: float = 0.9

    @property
    def points_used(self) -> int:
        return sum(b.points for b in self.budgets if b.used)

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "a_ci": self.ci["a"].to_list() if "a" in self.ci else None,
            "b_ci": self.ci["b"].to_list() if "b" in self.ci else None,
            "kN": self.kN,
            "kD": self.kD,
            "level": self.level,
            "points_used": self.points_used,
            "budgets_used": sum(b.used for b in self.budgets),
            "budgets": [b.to_dict() for b in self.budgets],
        }


class _UsedBudget(NamedTuple):
    """A budget whose profile is used: its sorted log N (and log D), losses and parabola coefficients."""

    C: float
    logN: np.ndarray
    loss: np.ndarray
    logD: np.ndarray | None
    coef: np.ndarray


def _parabola(u: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares y = p0 + p1·u + p2·u² (vectorised over a leading batch axis of y)."""
    X = np.column_stack([np.ones_like(u), u, u * u])
    coef, *_ = np.linalg.lstsq(X, np.atleast_2d(y).T, rcond=None)
    return coef.T  # (batch, 3)


def _vertex(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p[..., 2] > 0, -p[..., 1] / (2 * p[..., 2]), np.nan)


def _profile(u: np.ndarray, y: np.ndarray, what: str) -> tuple[float, str, np.ndarray]:
    """Vertex of the parabola of y over u (sorted), or a flag saying why it cannot be used."""
    p = _parabola(u, y)[0]
    v = float(_vertex(p))
    if len(np.unique(u)) < 3:
        return math.nan, f"{len(np.unique(u))} distinct {what} (need 3)", p
    i = int(np.argmin(y))
    if i == 0 or i == len(y) - 1:
        return v, f"lowest loss at the {'smallest' if i == 0 else 'largest'} sampled {what}: minimum at the edge", p
    if not math.isfinite(v):
        return v, "loss is not convex in log " + what, p
    if not u[0] < v < u[-1]:
        return v, f"parabola's minimum outside the sampled {what}: at the edge", p
    return v, "", p


@_one_blas_thread
def fit_isoflop(
    C,
    N,
    L,
    D=None,
    *,
    bootstrap: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    window: int = 3,
    names: tuple[str, str, str] = ("C", "N", "D"),
    y_name: str = "loss",
) -> IsoflopFit:
    """IsoFLOP analysis: rows with the same budget C form one profile of loss over model size N.

    Per budget a parabola in log N gives N_opt (and, with a D column, a parabola in log D gives D_opt;
    else D_opt = C / (6·N_opt)). A budget whose lowest loss lies at its smallest or largest sampled size,
    whose parabola opens downwards or has its vertex outside the sampled sizes, or without 2 sampled sizes on
    each side of its lowest loss is flagged and not used. The parabola is fitted to the `window` sizes on
    each side of the lowest loss (a parabola fitted over a wide, lopsided range of sizes shifts the vertex). log N_opt and log D_opt are then fitted linearly in log C over the
    used budgets (at least 3). Intervals: residual bootstrap within each budget's parabola (residuals
    inflated by √(n/(n−3))) and the budgets resampled, the line refitted each time; per-budget N_opt
    intervals from the same replicates.
    """
    cols = [np.asarray(C, float), np.asarray(N, float)] + ([np.asarray(D, float)] if D is not None else [])
    xs, ys = check_xy(np.column_stack(cols), L, n_params=0, names=names[: len(cols)], y_name=y_name)
    Cs, Ns = xs[:, 0], xs[:, 1]
    Ds = xs[:, 2] if D is not None else None
    groups = []
    for c in np.unique(Cs):
        m = Cs == c
        order = np.argsort(Ns[m], kind="stable")
        groups.append((float(c), np.log(Ns[m][order]), ys[m][order], np.log(Ds[m][order]) if Ds is not None else None))
    budgets: list[IsoflopBudget] = []
    used: list[_UsedBudget] = []
    for c, u, y, ud in groups:
        if window and len(u) > 2 * window + 1:  # a symmetric window around the lowest measured loss
            i = int(np.argmin(y))
            h = min(i, len(u) - 1 - i, window)
            if h >= 1:
                sl = slice(i - h, i + h + 1)
                u, y, ud = u[sl], y[sl], (ud[sl] if ud is not None else None)
        v, flag, p = _profile(u, y, "sizes")
        if not flag and len(u) < 5:
            flag = (
                f"lowest loss {min(int(np.argmin(y)), len(u) - 1 - int(np.argmin(y)))} size(s) from the edge of "
                f"the sampled sizes ({len(u)} points around it; need 2 on each side): at the edge"
            )
        n_opt = math.exp(v) if math.isfinite(v) else math.nan
        if ud is not None and not flag:
            order = np.argsort(ud, kind="stable")
            v_d, flag_d, _ = _profile(ud[order], y[order], "data sizes")
            d_opt = math.exp(v_d) if math.isfinite(v_d) else math.nan
            flag = flag_d and f"D profile: {flag_d}"
        else:
            d_opt = c / (6.0 * n_opt) if math.isfinite(n_opt) else math.nan
        budgets.append(IsoflopBudget(C=c, N_opt=n_opt, D_opt=d_opt, points=len(y), used=not flag, flag=flag))
        if not flag:
            used.append(_UsedBudget(c, u, y, ud, p))
    if len(used) < 3:
        flagged = "; ".join(f"C={bud.C:.3g}: {bud.flag}" for bud in budgets if bud.flag)
        raise AnalysisInputError(
            f"IsoFLOP fit needs 3 budgets with an interior loss minimum, got {len(used)} of "
            f"{len(budgets)}" + (f" ({flagged})" if flagged else "")
        )
    lc = np.log([g.C for g in used])
    ln = np.log([bud.N_opt for bud in budgets if bud.used])
    ldd = np.log([bud.D_opt for bud in budgets if bud.used])
    kN, negA = _ols_loglog(lc, ln)
    kD, negB = _ols_loglog(lc, ldd)
    a, b = -float(negA), -float(negB)
    ci: dict[str, Interval] = {}
    per_budget: list[Interval | None] = [None] * len(used)
    if bootstrap:
        rng = np.random.default_rng(seed)
        vn = np.empty((bootstrap, len(used)))
        vd = np.empty((bootstrap, len(used)))
        for j, (c, u, y, ud, p) in enumerate(used):
            X = np.column_stack([np.ones_like(u), u, u * u])
            fitted = X @ p
            res = (y - fitted) * math.sqrt(len(y) / max(len(y) - 3, 1))
            yb = fitted + res[rng.integers(0, len(y), size=(bootstrap, len(y)))]
            vn[:, j] = _vertex(_parabola(u, yb))
            if ud is not None:
                order = np.argsort(ud, kind="stable")
                vd[:, j] = _vertex(_parabola(ud[order], yb[:, order]))
            else:
                vd[:, j] = np.log(c / 6.0) - vn[:, j]
        ok = np.isfinite(vn).all(axis=1) & np.isfinite(vd).all(axis=1)
        # the line is refitted to budgets resampled with replacement too, so that the budgets' scatter
        # about the line (profile shape, noise shared within a budget) widens the interval
        pick = rng.integers(0, len(used), size=(bootstrap, len(used)))
        ok &= np.ptp(pick, axis=1) > 0
        if ok.sum() >= 10:
            rows = np.arange(bootstrap)[:, None]
            lcb = lc[pick][ok]
            _, sa = _ols_loglog(lcb, vn[rows, pick][ok])
            _, sb = _ols_loglog(lcb, vd[rows, pick][ok])
            ci = _intervals({"a": -sa, "b": -sb}, level)
            per_budget = [
                Interval(*[float(math.exp(q)) for q in np.quantile(vn[ok, j], [(1 - level) / 2, (1 + level) / 2])])
                for j in range(len(used))
            ]
    out, j = [], 0
    for bud in budgets:
        out.append(dataclasses.replace(bud, N_opt_ci=per_budget[j]) if bud.used else bud)
        j += bud.used
    return IsoflopFit(a=a, b=b, kN=float(math.exp(kN)), kD=float(math.exp(kD)), budgets=tuple(out), ci=ci, level=level)


# ---------------------------------------------------------------------------------------------
# a grid sweep's curves → profiles at shared budgets

Profiles = dict[float, tuple[np.ndarray, np.ndarray]]
"""compute budget → (N, loss) of the sizes whose curve spans it."""


def grid_profiles(pts: dict[str, tuple[np.ndarray, np.ndarray]], n_of: dict[str, float]) -> tuple[Profiles, str]:
    """IsoFLOP profiles of a grid sweep: each model's final losses (`pts`: model → (compute, loss))
    interpolated (log-log) at shared budgets; (profiles, "") or ({}, why there are none).

    A model × data grid rarely puts two cells at one compute; the budgets are log-spaced over the range
    covered by at least 3 model sizes (as many budgets as the most cells of one model), and each size
    contributes its interpolated loss at every budget inside its own compute range."""
    usable = {m: (c, y) for m, (c, y) in pts.items() if len(c) >= 2}
    if len(usable) < 3:
        return {}, f"{len(usable)} model size(s) with 2 or more cells (need 3)"
    lo = sorted(c.min() for c, _ in usable.values())[2]
    hi = sorted((c.max() for c, _ in usable.values()), reverse=True)[2]
    k = max(len(c) for c, _ in usable.values())
    budgets = np.logspace(np.log10(min(lo, hi)), np.log10(max(lo, hi)), k) if hi > lo else np.array([])
    profiles: Profiles = {}
    for C in budgets:
        Nb, Lb = [], []
        for m, (c, y) in usable.items():
            if c.min() * (1 - 1e-9) <= C <= c.max() * (1 + 1e-9):
                Nb.append(n_of[m])
                Lb.append(float(np.exp(np.interp(np.log(C), np.log(c), np.log(y)))))
        if len(Nb) >= 3:
            profiles[float(C)] = (np.array(Nb), np.array(Lb))
    if len(profiles) < 3:
        return {}, f"{len(profiles)} compute budget(s) covered by 3 model sizes (need 3)"
    return profiles, ""


def profile_rows(profiles: Profiles) -> np.ndarray:
    """(C, N, loss) rows of the profiles, for fit_isoflop."""
    return np.array([(C, n, v) for C, (Nb, Lb) in profiles.items() for n, v in zip(Nb, Lb)], dtype=float)
