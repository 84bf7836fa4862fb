"""A sweep prediction as text: the headline's one line and `wps predict SWEEP`'s lines."""

from __future__ import annotations

import math

import numpy as np

from .ladder import Band
from .predict import SweepPrediction
from .selection import pairs_label


def band_text(b: Band) -> str:
    """`pred [lo, hi]`, or `pred (no interval)` without a bootstrap."""
    return f"{b.pred:.4g} [{b.lo:.4g}, {b.hi:.4g}]" if math.isfinite(b.lo) else f"{b.pred:.4g} (no interval)"


def prediction_sentence(sp: SweepPrediction) -> str:
    """One line: the target at its budget, predicted vs actual, and the verdict."""
    p, last = sp.prediction, len(sp.pairs) - 1
    head = f"predict {sp.target} from {len(sp.ladder)} smaller sizes at {pairs_label(float(sp.pairs[last]))} pairs: "
    if p.loss is None:
        return head + "not identified (" + "; ".join(p.step1.not_identified) + ")"
    s = head + f"loss {band_text(p.loss[last])}"
    if sp.actual_loss is not None and np.isfinite(sp.actual_loss[last]):
        s += f", actual {sp.actual_loss[last]:.4g}"
    v = sp.verdict
    return s + f" → {v}" + (f" (actual {sp.direction()} than predicted)" if v == "not predictable" else "")


def prediction_lines(results: list[SweepPrediction], *, level: float = 0.9) -> list[str]:
    """`wps predict SWEEP`'s text: per metric a header, one line per milestone, the verdict and notes."""
    out = []
    for sp in results:
        p = sp.prediction
        out.append(
            f"{sp.name}: {sp.target} (N={sp.target_N:.3g}) from {', '.join(sp.ladder)}; step 1 "
            f"{p.step1.form}, {level:.0%} prediction intervals"
            + (f" for the mean of {sp.target_runs} runs" if sp.target_runs > 1 else "")
        )
        if p.loss is not None:
            for i, x in enumerate(sp.pairs):
                line = f"  {pairs_label(float(x)):>6} pairs: loss {band_text(p.loss[i])}"
                if sp.actual_loss is not None:
                    line += f" actual {sp.actual_loss[i]:.4g}" + (
                        ""
                        if not math.isfinite(p.loss[i].lo)
                        else f" ({'inside' if p.loss[i].contains(float(sp.actual_loss[i])) else 'OUTSIDE'})"
                    )
                if p.acc is not None:
                    line += f"; acc {band_text(p.acc[i])}"
                    if sp.actual_acc is not None and np.isfinite(sp.actual_acc[i]):
                        line += f" actual {sp.actual_acc[i]:.4g}"
                out.append(line)
        out.append(
            f"  verdict: {sp.verdict}" + (f" (actual {sp.direction()} than predicted)" if sp.direction() else "")
        )
        out += [f"  note: {n}" for n in p.notes]
    return out
