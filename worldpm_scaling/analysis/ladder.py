"""A ladder of smaller runs (the input of a prediction, checked) and what a prediction returns: bands,
the two steps' fits, and the prediction at each target."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import AnalysisInputError
from .fit_base import Interval
from .ladder_forms import _sigmoid_acc, _step1_predict


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
