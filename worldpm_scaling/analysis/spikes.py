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
    wins = np.lib.stride_tricks.sliding_window_view(padded, window)[min_hist:len(v)]
    med = np.nanmedian(wins, axis=1)
    mad = np.nanmedian(np.abs(wins - med[:, None]), axis=1) * MAD_TO_SD
    scale = np.maximum(np.maximum(mad, 1e-3 * np.abs(med)), 1e-12)
    z[min_hist:] = (v[min_hist:] - med) / scale
    return z


def detect_spikes(values, *, steps=None, pairs=None, window: int = 50, threshold: float = 7.0) -> list[Spike]:
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
            peak = t + int(np.argmax(v[t:end + 1]))
            events.append(Spike(index=peak, step=float(steps[peak]),
                                pairs=None if pairs_arr is None else float(pairs_arr[peak]),
                                z=float(z[peak]), value=float(v[peak])))
            t = end + 1
        else:
            t += 1
    return events


def emergence_flags(spikes: list[Spike], loss, *, window: int = 20, min_drop: float = 0.02,
                    min_z: float = 3.0) -> list[Emergence]:
    """Spikes followed within `window` points by a loss drop of ≥ `min_drop` (relative) that is also
    ≥ `min_z` times the pre-spike noise."""
    L = np.asarray(loss, dtype=float)
    out = []
    for s in spikes:
        before = L[max(0, s.index - window):s.index]
        after = L[s.index + 1:s.index + 1 + window]
        if len(before) < 3 or len(after) < 3:
            continue
        b, a = float(np.median(before)), float(np.median(after))
        noise = max(float(np.median(np.abs(before - b))) * MAD_TO_SD, 1e-12)
        drop = (b - a) / b if b else 0.0
        z = (b - a) / noise
        if drop >= min_drop and z >= min_z:
            out.append(Emergence(spike=s, drop=drop, z=z))
    return out
