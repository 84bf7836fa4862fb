"""Predict a larger model from a ladder of smaller runs: loss, then accuracy, with prediction intervals.

The two-step method of OLMo's model ladder (Bhagia et al. 2024, arXiv 2412.04403, §3):
- step 1: task loss L(N, D) = E + A/N^α + B/D^β fitted to the ladder's runs (log-space Huber, a grid of
  starts, L-BFGS: fits.fit_chinchilla's recipe);
- step 2: accuracy from task loss, acc = b + a·σ(k·(L0 − L)) (a falling sigmoid), fitted to every row
  (intermediate checkpoints too: the loss → accuracy map holds along a run, OLMo §3.2);
- chained: the target's predicted loss goes through the sigmoid.

Intervals are *prediction* intervals for one run of the target (or the mean of `target_runs` runs):
each bootstrap replicate resamples whole runs (stratified by model size when every size has two or more
runs, so a replicate keeps the ladder's sizes), refits both steps, and adds a run-to-run draw: a log-loss
residual of the step-1 fit and an accuracy residual of the step-2 fit, each inflated by √(n/(n−p)) for the
parameters fitted. Calibration on planted ladders: bench/results/predict_coverage.txt.

Step 1 is refused (no number) when its design cannot identify it (fits.design_identification: fewer than
3 distinct N or D; the optimiser then stops at its start and the bootstrap collapses to zero width).
`form="auto"` then falls back to the log-linear form L = A·N^-α·D^-β (E = 0, the per-curve form of `wps
analyze` extended to N; two distinct N and D suffice), and says so. Exponent intervals at a bound or
spanning more than 3× (fits.identification: the joint fit's frontier rule) are noted, not refused: the
prediction's own interval carries that uncertainty, and on planted ladders refusing them and falling
back to the log-linear form made the predictions worse (bench/results/predict_coverage.txt). Exponents are
always fitted.

Pure functions over arrays; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from .errors import AnalysisInputError
from .fits import (
    _LBFGS_REFIT,
    EXPONENT_BOUNDS,
    HUBER_DELTA,
    ChinchillaFit,
    Interval,
    _fit_chin,
    _intervals,
    _one_blas_thread,
    default_chinchilla_starts,
    design_identification,
    identification,
)

FORMS = ("auto", "chinchilla", "loglinear")
FAR_N = 10.0
"""A target more than 10× the ladder's largest N is far outside it: OLMo's ladder predicted 7B and 13B
from runs of at most 1.3B (5× and 10×, arXiv 2412.04403 §4) and its errors grew with the distance."""
FAR_C = 100.0
"""… or more than 100× the ladder's largest compute."""
STEP2_MIN_SPAN = 0.02
"""Ladder accuracies spanning less than this leave the sigmoid's slope unidentified (a flat map)."""
LOGLINEAR_MIN = 2


@dataclass(frozen=True)
class Ladder:
    """The ladder's rows. `final` marks each run's last row (its largest D): step 1's points when runs
    are given and `step1_all` is False; with `step1_all` (a constant-LR milestone run: every evaluation is
    a valid (N, D) point) every row is a step-1 point."""

    N: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    run: np.ndarray
    acc: np.ndarray | None = None
    step1_all: bool = False

    @property
    def step1(self) -> np.ndarray:
        if self.step1_all:
            return np.ones(len(self.N), dtype=bool)
        last = np.zeros(len(self.N), dtype=bool)
        for r in np.unique(self.run):
            idx = np.flatnonzero(self.run == r)
            last[idx[np.argmax(self.D[idx])]] = True
        return last


def make_ladder(
    N, D, loss, *, acc=None, run=None, step1_all: bool | None = None, names: dict[str, str] | None = None
) -> Ladder:
    """Checked arrays → Ladder. Without `run` every row is its own run (and a step-1 point). Named errors
    for NaN or non-positive N, D or loss, accuracy outside [0, 1], and fewer than 2 runs."""
    nm = {"N": "N", "D": "D", "loss": "loss", "acc": "acc", "run": "run", **(names or {})}
    arrs = {}
    for key, v in (("N", N), ("D", D), ("loss", loss)):
        a = np.asarray(v, dtype=float)
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            raise AnalysisInputError(
                f"column {nm[key]!r} must be positive and finite (rows {np.flatnonzero(bad)[:5].tolist()})"
            )
        arrs[key] = a
    n = len(arrs["N"])
    if not n or any(len(a) != n for a in arrs.values()):
        raise AnalysisInputError("N, D and loss must be non-empty and of one length")
    a_acc = None
    if acc is not None:
        a_acc = np.asarray(acc, dtype=float)
        bad = ~np.isfinite(a_acc) | (a_acc < 0) | (a_acc > 1)
        if bad.any():
            raise AnalysisInputError(
                f"column {nm['acc']!r} must be an accuracy in [0, 1] (rows {np.flatnonzero(bad)[:5].tolist()})"
            )
    runs = np.arange(n) if run is None else np.asarray(run).astype(str)
    if len(runs) != n:
        raise AnalysisInputError(f"column {nm['run']!r} has {len(runs)} values for {n} rows")
    k = len(np.unique(runs))
    if k < 2:
        raise AnalysisInputError(
            f"a ladder needs at least 2 runs, got {k}" + (f" (column {nm['run']!r})" if run is not None else "")
        )
    return Ladder(
        N=arrs["N"],
        D=arrs["D"],
        loss=arrs["loss"],
        run=runs,
        acc=a_acc,
        step1_all=(run is None) if step1_all is None else step1_all,
    )


@dataclass(frozen=True)
class Band:
    pred: float
    lo: float
    hi: float

    def contains(self, v: float) -> bool:
        return self.lo <= v <= self.hi

    def to_dict(self) -> dict:
        return {"pred": self.pred, "lo": self.lo, "hi": self.hi}


@dataclass(frozen=True)
class Step1:
    form: str
    """chinchilla | loglinear"""
    params: dict[str, float]
    ci: dict[str, Interval]
    points: int
    runs: int
    residual_sd: float
    """of the log loss (inflated for the parameters fitted): the run-to-run draw."""
    identified: bool = True
    not_identified: list[str] = field(default_factory=list)
    theta: tuple[float, ...] = ()
    """the fitted parameters in log space (log A, … ): E = exp(log E) can underflow to 0, its log cannot"""

    def predict(self, N, D) -> np.ndarray:
        return _step1_predict(self.form, np.array(self.theta), np.asarray(N, float), np.asarray(D, float))

    def to_dict(self) -> dict:
        return {
            "form": self.form,
            **self.params,
            "ci": {k: v.to_list() for k, v in self.ci.items()},
            "points": self.points,
            "runs": self.runs,
            "residual_sd": self.residual_sd,
            "identified": self.identified,
            "not_identified": self.not_identified,
        }


@dataclass(frozen=True)
class Step2:
    params: dict[str, float]
    """a, b, k, L0 of acc = b + a·σ(k·(L0 − L))."""
    ci: dict[str, Interval]
    rows: int
    residual_sd: float
    loss_range: tuple[float, float]
    notes: list[str] = field(default_factory=list)

    def predict(self, L) -> np.ndarray:
        p = self.params
        return _sigmoid_acc(np.array([p["a"], p["b"], p["k"], p["L0"]]), np.asarray(L, float))

    def to_dict(self) -> dict:
        return {
            **self.params,
            "ci": {k: v.to_list() for k, v in self.ci.items()},
            "rows": self.rows,
            "residual_sd": self.residual_sd,
            "loss_range": list(self.loss_range),
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Prediction:
    """Predictions at one or more targets (N, D) from one set of bootstrap refits."""

    N: np.ndarray
    D: np.ndarray
    loss: list[Band] | None
    """None when step 1 is not identified: no number."""
    acc: list[Band] | None
    step1: Step1
    step2: Step2 | None
    level: float
    bootstrap: int
    """replicates used."""
    distance: dict[str, float]
    """target / ladder maximum, for N, D and compute (the farthest target)."""
    notes: list[str]

    def to_dict(self, i: int | None = None) -> dict:
        """One target (`i`) in the shape of `wps predict --json`; all targets as lists when i is None."""
        pick = (
            (lambda bands: None if bands is None else bands[i].to_dict())
            if i is not None
            else (lambda bands: None if bands is None else [b.to_dict() for b in bands])
        )
        return {
            "target": {
                "N": float(self.N[i]) if i is not None else self.N.tolist(),
                "D": float(self.D[i]) if i is not None else self.D.tolist(),
            },
            "loss": pick(self.loss),
            "acc": pick(self.acc),
            "step1": self.step1.to_dict(),
            "step2": self.step2.to_dict() if self.step2 else None,
            "level": self.level,
            "bootstrap": self.bootstrap,
            "distance": self.distance,
            "notes": self.notes,
        }


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
    best, best_cost = None, math.inf
    for s0 in starts:
        s0 = np.clip(s0, lo, hi)
        r = optimize.least_squares(
            res, s0, jac=jac, bounds=(lo, hi), method="trf", max_nfev=200 if start is not None else 1000, x_scale="jac"
        )
        if r.cost < best_cost:
            best, best_cost = r.x, r.cost
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


# ---------------------------------------------------------------------------------------------
# bootstrap over runs


def _design(N, D) -> tuple[int, int]:
    return len(np.unique(N)), len(np.unique(D))


def distance(ladder: Ladder, N_t, D_t) -> dict[str, float]:
    """How far the farthest target lies beyond the ladder: ratios to the ladder's largest N, D, 6·N·D."""
    N_t, D_t = np.atleast_1d(np.asarray(N_t, float)), np.atleast_1d(np.asarray(D_t, float))
    s = ladder.step1
    return {
        "N": float(N_t.max() / ladder.N[s].max()),
        "D": float(D_t.max() / ladder.D[s].max()),
        "compute": float((N_t * D_t).max() / (ladder.N[s] * ladder.D[s]).max()),
    }


def distance_notes(dist: dict[str, float]) -> list[str]:
    out = []
    if dist["N"] > FAR_N or dist["compute"] > FAR_C:
        out.append(
            f"target far outside the ladder: {dist['N']:.3g}x its largest N, {dist['D']:.3g}x its largest D, "
            f"{dist['compute']:.3g}x its largest compute (OLMo's ladder extrapolated ≤ {FAR_N:g}x in N; "
            "expect larger errors than the interval says)"
        )
    return out


@_one_blas_thread
def predict(
    ladder: Ladder,
    N_t,
    D_t,
    *,
    form: str = "auto",
    bootstrap: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    delta: float | str | None = "auto",
    target_runs: int = 1,
) -> Prediction:
    """Predict loss (and accuracy, when the ladder has it) at targets (N_t, D_t), with `level` prediction
    intervals for one run of the target (the mean of `target_runs` runs). `delta`: the Huber threshold of
    step 1 in log loss ("auto": 1.345 robust σ of the residuals; None: plain least squares)."""
    if form not in FORMS:
        raise AnalysisInputError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    if not 0 < level < 1:
        raise AnalysisInputError(f"level must be in (0, 1), got {level}")
    if bootstrap < 0:
        raise AnalysisInputError(f"bootstrap must be >= 0, got {bootstrap}")
    N_t, D_t = np.broadcast_arrays(np.atleast_1d(np.asarray(N_t, float)), np.atleast_1d(np.asarray(D_t, float)))
    for name, v in (("N", N_t), ("D", D_t)):
        if not np.isfinite(v).all() or (v <= 0).any():
            raise AnalysisInputError(f"target {name} must be positive, got {v.tolist()}")
    s1 = ladder.step1
    N1, D1 = ladder.N[s1], ladder.D[s1]
    lN, lD, ly = np.log(N1), np.log(D1), np.log(ladder.loss[s1])
    nN, nD = _design(N1, D1)
    dist = distance(ladder, N_t, D_t)
    notes: list[str] = []

    # replicates as weights: how often each run was drawn (stratified by size when every size has 2+ runs)
    runs, run_idx = np.unique(ladder.run, return_inverse=True)
    size_of_run = np.array([ladder.N[run_idx == i][0] for i in range(len(runs))])
    sizes, size_idx = np.unique(size_of_run, return_inverse=True)
    stratified = np.bincount(size_idx).min() >= 2
    rng = np.random.default_rng(seed)
    counts = np.zeros((bootstrap, len(runs)))
    if stratified:
        for g in range(len(sizes)):
            members = np.flatnonzero(size_idx == g)
            pick = members[rng.integers(0, len(members), (bootstrap, len(members)))]
            np.add.at(counts, (np.arange(bootstrap)[:, None], pick), 1.0)
    else:
        pick = rng.integers(0, len(runs), (bootstrap, len(runs)))
        np.add.at(counts, (np.arange(bootstrap)[:, None], pick), 1.0)
    w1 = counts[:, run_idx[s1]]  # (B, step-1 points)

    tried = ["chinchilla", "loglinear"] if form == "auto" else [form]
    why: dict[str, list[str]] = {}
    chosen = None
    for f in tried:
        w = design_identification(nN, nD, need=MIN_FOR[f])
        if len(ly) <= _n_params(f):
            w.append(f"{len(ly)} step-1 points cannot determine {_n_params(f)} parameters")
        if w:
            why[f] = w
            continue
        chosen = f
        break
    for f, w in why.items():
        notes.append(f"step 1 ({FORM_TEXT[f]}) not identified: {'; '.join(w)}")
    if chosen is None:
        st = Step1(
            form=tried[0],
            params={},
            ci={},
            points=int(len(ly)),
            runs=len(np.unique(ladder.run[s1])),
            residual_sd=math.nan,
            identified=False,
            not_identified=[f"{FORM_TEXT[f]}: {'; '.join(w)}" for f, w in why.items()],
        )
        return Prediction(
            N=N_t,
            D=D_t,
            loss=None,
            acc=None,
            step1=st,
            step2=None,
            level=level,
            bootstrap=0,
            distance=dist,
            notes=notes + distance_notes(dist),
        )
    f = chosen
    if form == "auto" and f == "loglinear":
        notes.append("step 1 uses the log-linear form L = A·N^-α·D^-β (E = 0) instead")
    th = _fit_step1(f, lN, lD, ly, delta=HUBER_DELTA if delta == "auto" else delta)
    lo1, hi1 = BOUNDS1[f]
    fj1 = (_chin_fun_jac if f == "chinchilla" else _loglin_fun_jac)(lN, lD, ly)
    if delta == "auto" and f == "chinchilla":
        # Huber's threshold at 1.345 robust σ of the log residuals (95% of least squares' efficiency under
        # Gaussian noise, Huber 1964): Chinchilla's fixed 10⁻³ is far below this data's noise (~1%), which
        # makes the fit least-absolute-deviation, its residual pool too narrow and its intervals too short
        r0 = ly - np.log(_step1_predict(f, th, N1, D1))
        delta = max(HUBER_DELTA, 1.345 * 1.4826 * float(np.median(np.abs(r0 - np.median(r0)))))
        th = _lm_batch(fj1, th[None, :], np.ones((1, len(ly))), lo1, hi1, delta=delta, iters=200)[0]
    elif delta == "auto":
        delta = None  # the log-linear form is fitted by least squares
    if f == "chinchilla" and delta is None:  # polish the Huber grid's optimum to least squares
        th = _lm_batch(fj1, th[None, :], np.ones((1, len(ly))), lo1, hi1, delta=None, iters=200)[0]
    # a replicate must keep a design that identifies the form
    resid = ly - np.log(_step1_predict(f, th, N1, D1))
    infl = math.sqrt(len(resid) / max(len(resid) - _n_params(f), 1))
    dl = None if (delta is None or f == "loglinear") else delta
    if stratified or not bootstrap:
        # a replicate must keep a design that identifies the form
        has = w1 > 0
        keep = np.array([min(_design(N1[h], D1[h])) >= MIN_FOR[f] and h.sum() > _n_params(f) for h in has], dtype=bool)
        used = np.flatnonzero(keep)
        T1 = (
            _lm_batch(fj1, np.repeat(th[None, :], len(used), 0), w1[used], lo1, hi1, delta=dl)
            if len(used)
            else np.empty((0, len(th)))
        )
    else:
        # one run per size: resampling runs would drop sizes (and with 3 sizes leave only the data itself).
        # Wild bootstrap instead: each point's residual (inflated) times an N(0, 1) multiplier, the design
        # kept, every replicate refitted. Per point, not per run: a form that fits each size's level exactly
        # (2 sizes, log-linear) leaves every run's mean residual at 0, and a per-run multiplier then never
        # moves the N exponent (a zero-width interval). What no resample can give is the spread between
        # repeated runs of one size: said in a note
        used = np.arange(bootstrap)
        v = rng.standard_normal((bootstrap, len(ly)))
        notes.append(
            "one run per size: the spread between repeated runs of a size is not measured (no seeds); "
            "the interval covers evaluation noise and fit uncertainty"
        )
        ly_b = np.log(_step1_predict(f, th, N1, D1))[None, :] + v * resid * infl
        fjb = (_chin_fun_jac if f == "chinchilla" else _loglin_fun_jac)(lN, lD, ly_b)
        T1 = _lm_batch(fjb, np.repeat(th[None, :], bootstrap, 0), np.ones_like(ly_b), lo1, hi1, delta=dl)
    params = _params(f, th)
    ci = _intervals({k: np.array([_params(f, t)[k] for t in T1]) for k in params}, level) if len(T1) else {}
    if f == "chinchilla" and bootstrap:
        loose = identification(
            ChinchillaFit(
                E=params["E"],
                A=params["A"],
                B=params["B"],
                alpha=params["alpha"],
                beta=params["beta"],
                n=len(ly),
                ci=ci,
                level=level,
                n_N=nN,
                n_D=nD,
            )
        )
        if loose:
            notes.append(
                f"step 1 exponents loosely pinned ({'; '.join(loose)}): the joint fit gives no frontier, but "
                "the prediction interval carries this uncertainty"
            )
    rsd = float(np.sqrt(np.mean(resid**2)) * infl)
    st1 = Step1(
        form=f,
        params=params,
        ci=ci,
        points=int(len(ly)),
        runs=len(np.unique(ladder.run[s1])),
        residual_sd=rsd,
        theta=tuple(float(t) for t in th),
    )

    # the run-to-run draw for `target_runs` runs: residuals split into the part shared by the runs at one
    # (N, D) (misfit of the form, drawn once) and each run's own deviation from it (drawn per run); with one
    # run per (N, D) all of a residual is shared, so one run's draw is one inflated residual
    k = max(int(target_runs), 1)
    mu = _step1_predict(f, T1, N_t, D_t) if len(T1) else np.empty((0, len(N_t)))  # (B, m)
    _, cell = np.unique(np.column_stack([N1, D1]), axis=0, return_inverse=True)
    cell = cell.ravel()
    shared = (np.bincount(cell, weights=resid) / np.bincount(cell))[cell]
    own = resid - shared
    n_cells = int(cell.max()) + 1
    infl_own = math.sqrt(len(resid) / max(len(resid) - n_cells, 1))
    eps = rng.choice(shared * infl, size=(len(T1), 1, len(N_t))) + rng.choice(
        own * infl_own, size=(len(T1), k, len(N_t))
    )
    Lk = mu[:, None, :] * np.exp(eps)  # (B, k, m)
    pred_mean = _step1_predict(f, th, N_t, D_t)
    q = ((1 - level) / 2, (1 + level) / 2)
    nan = np.full(len(N_t), np.nan)
    lo, hi = np.quantile(Lk.mean(axis=1), q, axis=0) if len(T1) else (nan, nan)
    loss_bands = [Band(float(p), float(a), float(c)) for p, a, c in zip(pred_mean, lo, hi)]

    st2, acc_bands = None, None
    if ladder.acc is not None:
        L_all, a_all = ladder.loss, ladder.acc
        th2 = _fit_step2(L_all, a_all)
        fit2 = _sigmoid_acc(th2, L_all)
        r2 = (a_all - fit2) * math.sqrt(len(a_all) / max(len(a_all) - 4, 1))
        # an accuracy's noise scales as √(acc·(1 − acc)) (a share of pairs): residuals standardised by it
        # and rescaled at the target's accuracy, else the noisy middle of the ladder widens a target near 1
        z2 = r2 / _bin_sd(fit2)
        n2 = []
        if np.ptp(a_all) < STEP2_MIN_SPAN:
            n2.append(
                f"step 2: accuracy spans only {np.ptp(a_all):.3f} over the ladder: the sigmoid's shape is not "
                "identified (a flat map from loss to accuracy)"
            )
        lo2, hi2 = _step2_bounds(L_all)
        fj2 = _sig_fun_jac(L_all, a_all)
        T2 = (
            np.concatenate(
                [
                    _lm_batch(fj2, np.repeat(th2[None, :], len(c), 0), counts[c][:, run_idx], lo2, hi2, delta=None)
                    for c in np.array_split(used, max(1, -(-len(used) // 250)))
                ]
            )
            if len(used)
            else np.empty((0, 4))
        )
        if len(T2):
            a_k = _sigmoid_acc(T2[:, None, None, :], Lk)
            A = np.clip(a_k + rng.choice(z2, size=Lk.shape) * _bin_sd(a_k), 0.0, 1.0).mean(axis=1)
        else:
            A = None
        alo, ahi = np.quantile(A, q, axis=0) if A is not None else (nan, nan)
        apred = _sigmoid_acc(th2, pred_mean)
        acc_bands = [Band(float(p), float(a), float(c)) for p, a, c in zip(apred, alo, ahi)]
        ci2 = _intervals({n_: T2[:, i] for i, n_ in enumerate(("a", "b", "k", "L0"))}, level) if len(T2) else {}
        lr = (float(L_all.min()), float(L_all.max()))
        out_of = [float(p) for p in pred_mean if not lr[0] <= p <= lr[1]]
        if out_of:
            span = f"{min(out_of):.4g}" + (f"–{max(out_of):.4g}" if len(out_of) > 1 else "")
            n2.append(
                f"step 2 extrapolates: predicted loss {span} lies outside the ladder's losses [{lr[0]:.4g}, {lr[1]:.4g}]"
            )
        st2 = Step2(
            params=dict(zip(("a", "b", "k", "L0"), map(float, th2))),
            ci=ci2,
            rows=int(len(L_all)),
            residual_sd=float(np.sqrt(np.mean(r2**2))),
            loss_range=lr,
            notes=n2,
        )
        notes += n2
    notes += distance_notes(dist)
    if bootstrap and len(used) < bootstrap:
        notes.append(
            f"{bootstrap - len(used)} of {bootstrap} bootstrap replicates dropped (a resample whose sizes "
            "or data sizes cannot identify the form)"
        )
    return Prediction(
        N=N_t,
        D=D_t,
        loss=loss_bands,
        acc=acc_bands,
        step1=st1,
        step2=st2,
        level=level,
        bootstrap=int(len(used)),
        distance=dist,
        notes=notes,
    )


MIN_FOR = {"chinchilla": 3, "loglinear": LOGLINEAR_MIN}
BOUNDS1 = {
    "chinchilla": ([-np.inf] * 3 + [EXPONENT_BOUNDS[0]] * 2, [np.inf] * 3 + [EXPONENT_BOUNDS[1]] * 2),
    "loglinear": ([-np.inf] * 3, [np.inf] * 3),
}
FORM_TEXT = {"chinchilla": "E + A/N^α + B/D^β", "loglinear": "A·N^-α·D^-β"}


# ---------------------------------------------------------------------------------------------
# a sweep: predict one size (the largest, or a named one) from the smaller sizes, at each milestone

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
        if self.verdict != "not predictable":
            return ""
        return "better" if self.actual_loss[-1] < self.prediction.loss[-1].lo else "worse"

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


def tokens_per_pair(df, model: str) -> float:
    d = df[df.model == model].dropna(subset=["pairs", "tokens"])
    d = d[d.pairs > 0]
    return float((d.tokens / d.pairs).median()) if len(d) else 1.0


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
    pairs: np.ndarray | None = None,
) -> SweepPrediction | None:
    """Predict `target` (N = target_N) on eval `name` (category or set) from the sizes of the sweep smaller
    than it, at the target's milestones (or `pairs` for a target that never ran). None when the sweep has
    no such metric or fewer than 2 runs below the target."""
    from .. import names as nm

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
