"""Scaling-law fits with honest uncertainty: the one place to import them from; each lives in its own module.

- `fit_power(x, y)` (powerlaw.py): L = E + A·x^-α. With E fixed at 0 (the seed articles' pure (C/C0)^-α
  form) it is ordinary least squares in log-log space; with E free it is a Huber fit in log space
  (Hoffmann et al. 2022, "Chinchilla", approach 3) from a grid of starts, refined by L-BFGS-B.
- `fit_chinchilla(N, D, y)` (joint.py): L = E + A/N^α + B/D^β, same recipe, plus the compute-optimal
  frontier.
- Bootstrap intervals (resampling points), and the leave-largest-out extrapolation error; the input
  checks and what every fit shares are in fit_base.py.
- `identification(fit)`, `joint_caveats`, `poor_fit_caveat` (joint.py, beside the fit): why a joint fit's
  exponents are not identified (interval at a bound or spanning more than `IDENT_MAX_RATIO`, a term that
  barely moves the loss, a frontier below every measured point); such a fit gives no frontier.
- `fit_frontier(curves)` (frontier.py): the lower envelope of loss-vs-compute curves, a power law fitted
  to it, and intervals from resampling each curve's points before the envelope is taken.
- `fit_isoflop(C, N, L)` (isoflop.py, with a grid's profiles at shared budgets): Hoffmann et al. (2022)
  approach 2: per budget the loss-optimal N from a parabola in log N, then N_opt ∝ C^a and D_opt ∝ C^b
  with bootstrap intervals.

The exponent is always an output. The seed articles quote L ∝ C^-0.12; the paper (arXiv 2505.10527)
fits no exponent at all (§3.2 shows loss curves only; docs/paper_constants.md), so no exponent is
assumed anywhere here.
"""

from __future__ import annotations

from .fit_base import (
    _LBFGS,
    _LBFGS_CHIN,
    _LBFGS_REFIT,
    _LBFGS_ROUGH,
    HUBER_DELTA,
    Interval,
    _huber,
    _intervals,
    _ols_loglog,
    _one_blas_thread,
    check_xy,
)
from .frontier import FrontierFit, fit_frontier, lower_envelope
from .isoflop import IsoflopBudget, IsoflopFit, fit_isoflop, grid_profiles, profile_rows
from .joint import (
    EXPONENT_BOUNDS,
    IDENT_MAX_RATIO,
    MIN_DISTINCT,
    POOR_FIT_MIN_GAP,
    POOR_FIT_RMS,
    ChinchillaFit,
    _fit_chin,
    default_chinchilla_starts,
    design_identification,
    fit_chinchilla,
    frontier_gap,
    identification,
    joint_caveat,
    joint_caveats,
    poor_fit_caveat,
)
from .powerlaw import PowerFit, fit_power

__all__ = [
    "_LBFGS",
    "_LBFGS_CHIN",
    "_LBFGS_REFIT",
    "_LBFGS_ROUGH",
    "HUBER_DELTA",
    "Interval",
    "_huber",
    "_intervals",
    "_ols_loglog",
    "_one_blas_thread",
    "check_xy",
    "FrontierFit",
    "fit_frontier",
    "lower_envelope",
    "IsoflopBudget",
    "IsoflopFit",
    "fit_isoflop",
    "grid_profiles",
    "profile_rows",
    "EXPONENT_BOUNDS",
    "IDENT_MAX_RATIO",
    "MIN_DISTINCT",
    "POOR_FIT_MIN_GAP",
    "POOR_FIT_RMS",
    "ChinchillaFit",
    "_fit_chin",
    "default_chinchilla_starts",
    "design_identification",
    "fit_chinchilla",
    "frontier_gap",
    "identification",
    "joint_caveat",
    "joint_caveats",
    "poor_fit_caveat",
    "PowerFit",
    "fit_power",
]
