"""Trend classes: the paper's three findings as a computation.

WorldPM reports that adversarial loss falls as a power law in training data for all sizes, objective
loss improves mainly for the 72B model (emergent), and subjective loss shows no clear scaling (arXiv
2505.10527, results on scaling trends; shared/notes/worldpm_paper.md). For one curve (loss vs pairs)
this module decides which of those it is, and keeps the numbers that decided it:

- flat: the log-log slope's bootstrap interval contains 0, and a broken power law does not win;
- emergent: a broken power law (flat, then a drop) beats a single one by BIC, with the late slope
  significantly negative and the early one much shallower;
- power-law: otherwise, with a slope interval strictly below 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import AnalysisInputError
from .fits import _ols_loglog, check_xy

BIC_MARGIN = 6.0  # "strong" evidence on the Kass–Raftery scale


@dataclass(frozen=True)
class Trend:
    kind: str
    """power-law | emergent | flat"""
    slope: float
    """d log L / d log x of the single power law (−α)."""
    slope_ci: tuple[float, float]
    bic_single: float
    bic_broken: float
    break_x: float | None
    slope_before: float | None
    slope_after: float | None
    n: int
    loss_at_break: float | None = None
    """The broken power law's loss at the break (with the slopes, it draws the two segments)."""

    def predict_broken(self, x) -> np.ndarray:
        """The two-segment power law (only for curves with a break)."""
        lx = np.log(np.asarray(x, dtype=float) / self.break_x)
        return self.loss_at_break * np.exp(np.where(lx < 0, self.slope_before * lx, self.slope_after * lx))

    @property
    def delta_bic(self) -> float:
        """BIC(single) − BIC(broken): positive favours the broken power law."""
        return self.bic_single - self.bic_broken

    def evidence(self) -> str:
        s = f"slope {self.slope:+.3f} [{self.slope_ci[0]:+.3f}, {self.slope_ci[1]:+.3f}], ΔBIC {self.delta_bic:+.1f}"
        if self.break_x is not None:
            s += f", break at {self.break_x:.3g} ({self.slope_before:+.3f} → {self.slope_after:+.3f})"
        return s

    def to_dict(self) -> dict:
        return {**asdict(self), "delta_bic": self.delta_bic}


def _bic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + k * math.log(n)


def _broken(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, float, float, float]:
    """Best continuous two-segment fit over interior breakpoints: (rss, break log x, s1, s2, log y at break)."""
    best = (math.inf, float("nan"), float("nan"), float("nan"), float("nan"))
    xs = np.unique(lx)
    for b in xs[2:-2] if len(xs) >= 6 else xs[1:-1]:
        X = np.column_stack([np.ones_like(lx), np.minimum(lx - b, 0.0), np.maximum(lx - b, 0.0)])
        coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
        rss = float(((X @ coef - ly) ** 2).sum())
        if rss < best[0]:
            best = (rss, float(b), float(coef[1]), float(coef[2]), float(coef[0]))
    return best


def classify(x, y, *, bootstrap: int = 500, level: float = 0.9, seed: int = 0) -> Trend:
    """Classify one loss curve (x = pairs or compute, y = loss)."""
    xs, ys = check_xy(x, y, n_params=2, y_name="loss")
    if len(ys) < 5:
        raise AnalysisInputError(f"a trend needs at least 5 points, got {len(ys)}")
    lx, ly = np.log(xs[:, 0]), np.log(ys)
    la, alpha = _ols_loglog(lx, ly)
    slope = -float(alpha)
    rss1 = float(((la - alpha * lx - ly) ** 2).sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(lx), size=(bootstrap, len(lx)))
    _, al = _ols_loglog(lx[idx], ly[idx])
    sl = -al[np.isfinite(al)]
    q = (1 - level) / 2
    ci = (float(np.quantile(sl, q)), float(np.quantile(sl, 1 - q)))
    n = len(ly)
    bic1 = _bic(rss1, n, 3)  # intercept, slope, noise
    rss2, b, s1, s2, c = _broken(lx, ly)
    bic2 = _bic(rss2, n, 5) if math.isfinite(rss2) else math.inf  # + breakpoint, second slope
    broken_wins = bic1 - bic2 > BIC_MARGIN
    if broken_wins and s2 < 0 and s2 < 3 * min(s1, 0.0) - 1e-9 and abs(s1) < abs(s2) / 3:
        kind = "emergent"
    elif ci[0] <= 0.0 <= ci[1]:
        kind = "flat"
    elif ci[1] < 0:
        kind = "power-law"
    else:
        kind = "flat"  # loss rising with data is no scaling either
    return Trend(kind=kind, slope=slope, slope_ci=ci, bic_single=bic1, bic_broken=bic2,
                 break_x=float(math.exp(b)) if broken_wins else None,
                 slope_before=s1 if broken_wins else None, slope_after=s2 if broken_wins else None, n=n,
                 loss_at_break=float(math.exp(c)) if broken_wins else None)
