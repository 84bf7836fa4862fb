"""Gradient-spike detection and emergence flags.

The paper's 72B run shows a gradient-norm spike with a sudden training-loss drop near 12.6M samples
(arXiv 2505.10527, §3.2 and Figure 3; docs/paper_constants.md). A *spike* is a point whose
grad norm sits far above its recent past on a robust scale (trailing median and MAD, so the spike
does not hide itself); consecutive spike points are one event. An *emergence* flag is a spike
followed, within a window, by a significant drop in a loss series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AnalysisInputError

MAD_TO_SD = 1.4826
SPIKE_Z = 7.0
"""Robust z above which a grad-norm point is a spike."""


@dataclass(frozen=True)
class Spike:
    index: int
    """Position in the series of the event's peak."""
    step: float
    pairs: float | None
    z: float
    value: float


@dataclass(frozen=True)
class Emergence:
    spike: Spike
    drop: float
    """Relative loss drop (before − after) / before."""
    z: float
    """Drop in units of the pre-spike loss noise."""


def run_windows(n_points: int) -> tuple[int, int]:
    """(spike window, loss-drop window) for one run's series of `n_points` logged steps: the robust z
    looks back a quarter of the run (10 to 50 points) and a drop in training loss is looked for over
    half that (at least 5). `wps analyze` and bench/objective_onset.py both use these, so the study's
    flags are the report's."""
    window = max(10, min(50, n_points // 4))
    return window, max(5, window // 2)


def robust_z(values, *, window: int = 50) -> np.ndarray:
    """z_t = (u_t − median(u_{t−w..t−1})) / (1.4826·MAD), u = log v, over a trailing window (NaN
    while warming up). Grad norms are positive and vary multiplicatively, hence the log."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise AnalysisInputError("grad-norm series is empty")
    if np.isnan(v).any():
        raise AnalysisInputError("grad-norm series has NaN values")
    if (v <= 0).any():
        raise AnalysisInputError("grad-norm series must be positive")
    v = np.log(v)
    z = np.full(len(v), np.nan)
    min_hist = max(10, window // 2)
    if len(v) <= min_hist:
        return z
    # trailing windows v[t-w .. t-1] for every t ≥ min_hist, padded with NaN where t < w
    padded = np.concatenate([np.full(window, np.nan), v])
    wins = np.lib.stride_tricks.sliding_window_view(padded, window)[min_hist : len(v)]
    med = np.nanmedian(wins, axis=1)
    mad = np.nanmedian(np.abs(wins - med[:, None]), axis=1) * MAD_TO_SD
    scale = np.maximum(np.maximum(mad, 1e-3 * np.abs(med)), 1e-12)
    z[min_hist:] = (v[min_hist:] - med) / scale
    return z


def detect_spikes(values, *, steps=None, pairs=None, window: int = 50, threshold: float = SPIKE_Z) -> list[Spike]:
    """Spike events in a grad-norm series (one per run of consecutive flagged points)."""
    v = np.asarray(values, dtype=float)
    z = robust_z(v, window=window)
    flagged = np.nan_to_num(z, nan=0.0) > threshold
    steps = np.arange(len(v)) if steps is None else np.asarray(steps, dtype=float)
    pairs_arr = None if pairs is None else np.asarray(pairs, dtype=float)
    events: list[Spike] = []
    t = 0
    while t < len(v):
        if flagged[t]:
            end = t
            while end + 1 < len(v) and flagged[end + 1]:
                end += 1
            peak = t + int(np.argmax(v[t : end + 1]))
            events.append(
                Spike(
                    index=peak,
                    step=float(steps[peak]),
                    pairs=None if pairs_arr is None else float(pairs_arr[peak]),
                    z=float(z[peak]),
                    value=float(v[peak]),
                )
            )
            t = end + 1
        else:
            t += 1
    return events


def emergence_flags(
    spikes: list[Spike], loss, *, window: int = 20, min_drop: float = 0.02, min_z: float = 3.0
) -> list[Emergence]:
    """Spikes followed within `window` points by a loss drop of ≥ `min_drop` (relative) that is also
    ≥ `min_z` times the pre-spike noise."""
    L = np.asarray(loss, dtype=float)
    out = []
    for s in spikes:
        before = L[max(0, s.index - window) : s.index]
        after = L[s.index + 1 : s.index + 1 + window]
        if len(before) < 3 or len(after) < 3:
            continue
        b, a = float(np.median(before)), float(np.median(after))
        noise = max(float(np.median(np.abs(before - b))) * MAD_TO_SD, 1e-12)
        drop = (b - a) / b if b else 0.0
        z = (b - a) / noise
        if drop >= min_drop and z >= min_z:
            out.append(Emergence(spike=s, drop=drop, z=z))
    return out


@dataclass(frozen=True)
class BreakEvidence:
    """What the training curves did where an eval curve broke (a trend classed *emergent*): the
    paper's 72B signature is a grad-norm spike with a training-loss drop at the break (§3.2, Fig. 3);
    this says whether that run shows one there, or not, with the numbers."""

    category: str
    model: str
    break_pairs: float
    lo: float
    """The training-pairs window checked: the milestones bracketing the break (where the eval loss fell)."""
    hi: float
    spikes: tuple[Spike, ...]
    """Grad-norm spikes inside [lo, hi]."""
    emergences: tuple[Emergence, ...]
    """Of those, the ones with an emergence flag."""
    max_z: float
    """Largest robust z of the grad norm inside the window (the spike threshold is `threshold`)."""
    threshold: float
    loss_before: float
    """Median training loss over the steps just before the window, and over its last steps."""
    loss_after: float
    run: str | None = None
    """Which of the model's runs this is (`seed 1`) when it has several: the break is then one of the
    model's seed-mean curve, and a seed whose own curve never broke is checked there all the same."""

    def sentence(self) -> str:
        if self.run:
            head = (
                f"{self.category}/{self.model} emergent (break of the seed mean at {self.break_pairs:.0f} "
                f"pairs): {self.run} in [{self.lo:.0f}, {self.hi:.0f}] pairs "
            )
        else:
            head = (
                f"{self.category}/{self.model} emergent (break at {self.break_pairs:.0f} pairs): in "
                f"[{self.lo:.0f}, {self.hi:.0f}] pairs "
            )
        tail = f"; training loss {self.loss_before:.3f} → {self.loss_after:.3f}"
        if not self.spikes:
            return head + f"no grad-norm spike (max robust z {self.max_z:.1f} < {self.threshold:g})" + tail
        sp = ", ".join(f"{s.pairs:.0f}" if s.pairs is not None else f"step {s.step:.0f}" for s in self.spikes)
        return (
            head
            + f"{len(self.spikes)} grad-norm spike(s) at {sp} pairs, "
            + (f"{len(self.emergences)} with an emergence flag" if self.emergences else "none with an emergence flag")
            + tail
        )


def _span(values: list[float], fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}–{hi}"


def break_sentences(evidence: list[BreakEvidence]) -> list[str]:
    """One sentence per break: a model with several runs gets one line for all its seeds (how many
    spiked in the window, the range of their max z and training losses) instead of one per seed."""
    groups: dict[tuple, list[BreakEvidence]] = {}
    for b in evidence:
        groups.setdefault((b.category, b.model, b.break_pairs) if b.run else (id(b),), []).append(b)
    out = []
    for g in groups.values():
        if len(g) == 1:
            out.append(g[0].sentence())
            continue
        b0, n = g[0], len(g)
        spiked = [b for b in g if b.spikes]
        zs = [b.max_z for b in g if np.isfinite(b.max_z)]
        head = (
            f"{b0.category}/{b0.model} emergent (break of the {n}-seed mean at {b0.break_pairs:.0f} pairs): "
            f"in [{b0.lo:.0f}, {b0.hi:.0f}] pairs "
        )
        if not spiked:
            head += (
                f"no grad-norm spike in any seed (max robust z {_span(zs, '.1f')} < {b0.threshold:g})"
                if zs
                else "no grad-norm spike in any seed"
            )
        else:
            n_em = sum(len(b.emergences) for b in spiked)
            head += (
                f"grad-norm spikes in {len(spiked)} of {n} seeds ("
                + ", ".join(f"{b.run} at " + ", ".join(f"{s.pairs:.0f}" for s in b.spikes) for b in spiked)
                + f" pairs), {n_em or 'none'} with an emergence flag"
            )
        before, after = [b.loss_before for b in g], [b.loss_after for b in g]
        falls = sum(a < b for a, b in zip(after, before))
        out.append(
            head + f"; training loss falls in {falls} of {n} seeds ({_span(before, '.3f')} → {_span(after, '.3f')})"
        )
    return out


def break_evidence(
    category: str,
    model: str,
    break_pairs: float,
    milestones,
    pairs,
    grad_norm,
    loss,
    *,
    spikes: list[Spike],
    emergences: list[Emergence],
    window: int = 50,
    threshold: float = SPIKE_Z,
    run: str | None = None,
) -> BreakEvidence:
    """Check one emergent break against its run's grad norm (`pairs`, `grad_norm`, `loss` per step;
    `spikes`/`emergences` as detected on that series). The window is from the last milestone at or
    below the break to the first one above it: the eval loss fell somewhere inside it."""
    ms = np.sort(np.asarray(milestones, dtype=float))
    p = np.asarray(pairs, dtype=float)
    if len(ms) < 2 or len(p) != len(grad_norm) or len(p) != len(loss):
        raise AnalysisInputError("break_evidence needs ≥ 2 milestones and per-step pairs, grad norm and loss alike")
    at = break_pairs * (1 + 1e-6)  # a break fitted at a milestone comes back as 4095.9999…: it is that milestone
    below, above = ms[ms <= at], ms[ms > at]
    lo = float(below[-1]) if len(below) else float(ms[0])
    hi = float(above[0]) if len(above) else float(ms[-1])
    inside = (p >= lo) & (p <= hi)
    z = robust_z(grad_norm, window=window)
    zin = z[inside & np.isfinite(z)]
    L = np.asarray(loss, dtype=float)
    idx = np.flatnonzero(inside)
    k = max(3, len(idx) // 4)
    first = idx[0] if len(idx) else len(L) - 1
    before = L[max(0, first - k) : first] if first > 0 else L[:k]
    after = L[idx[-k:]] if len(idx) else L[-k:]
    in_win = tuple(s for s in spikes if s.pairs is not None and lo <= s.pairs <= hi)
    return BreakEvidence(
        category=category,
        model=model,
        break_pairs=float(break_pairs),
        lo=lo,
        hi=hi,
        spikes=in_win,
        emergences=tuple(e for e in emergences if e.spike in in_win),
        max_z=float(zin.max()) if len(zin) else float("nan"),
        threshold=threshold,
        loss_before=float(np.median(before)),
        loss_after=float(np.median(after)),
        run=run,
    )
