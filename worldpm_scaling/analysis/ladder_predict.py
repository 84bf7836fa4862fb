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

import numpy as np

from .errors import AnalysisInputError
from .fit_base import HUBER_DELTA, _intervals, _one_blas_thread
from .joint import ChinchillaFit, design_identification, identification
from .ladder import Band, Ladder, Prediction, Step1, Step2
from .ladder_forms import (
    BOUNDS1,
    FORM_TEXT,
    MIN_FOR,
    _bin_sd,
    _chin_fun_jac,
    _fit_step1,
    _fit_step2,
    _lm_batch,
    _loglin_fun_jac,
    _n_params,
    _params,
    _sig_fun_jac,
    _sigmoid_acc,
    _step1_predict,
    _step2_bounds,
)

FORMS = ("auto", "chinchilla", "loglinear")
FAR_N = 10.0
"""A target more than 10× the ladder's largest N is far outside it: OLMo's ladder predicted 7B and 13B
from runs of at most 1.3B (5× and 10×, arXiv 2412.04403 §4) and its errors grew with the distance."""
FAR_C = 100.0
"""… or more than 100× the ladder's largest compute."""
STEP2_MIN_SPAN = 0.02
"""Ladder accuracies spanning less than this leave the sigmoid's slope unidentified (a flat map)."""


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
    if isinstance(delta, str) and delta != "auto":
        raise AnalysisInputError(f"delta must be a number, None or 'auto', got {delta!r}")
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
    auto = delta == "auto"
    huber: float | None = HUBER_DELTA if isinstance(delta, str) else delta
    th = _fit_step1(f, lN, lD, ly, delta=huber)
    lo1, hi1 = BOUNDS1[f]
    fj1 = (_chin_fun_jac if f == "chinchilla" else _loglin_fun_jac)(lN, lD, ly)
    if auto and f == "chinchilla":
        # Huber's threshold at 1.345 robust σ of the log residuals (95% of least squares' efficiency under
        # Gaussian noise, Huber 1964): Chinchilla's fixed 10⁻³ is far below this data's noise (~1%), which
        # makes the fit least-absolute-deviation, its residual pool too narrow and its intervals too short
        r0 = ly - np.log(_step1_predict(f, th, N1, D1))
        huber = max(HUBER_DELTA, 1.345 * 1.4826 * float(np.median(np.abs(r0 - np.median(r0)))))
        th = _lm_batch(fj1, th[None, :], np.ones((1, len(ly))), lo1, hi1, delta=huber, iters=200)[0]
    elif auto:
        huber = None  # the log-linear form is fitted by least squares
    if f == "chinchilla" and huber is None:  # polish the Huber grid's optimum to least squares
        th = _lm_batch(fj1, th[None, :], np.ones((1, len(ly))), lo1, hi1, delta=None, iters=200)[0]
    # a replicate must keep a design that identifies the form
    resid = ly - np.log(_step1_predict(f, th, N1, D1))
    infl = math.sqrt(len(resid) / max(len(resid) - _n_params(f), 1))
    dl = None if (huber is None or f == "loglinear") else huber
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
