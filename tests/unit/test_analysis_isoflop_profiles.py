"""A grid sweep's IsoFLOP profiles (isoflop.grid_profiles): shared budgets over the compute range of 3
sizes, each size's loss interpolated in log-log, and a reason when there are too few sizes or budgets."""

from __future__ import annotations

import numpy as np
import pytest

from worldpm_scaling.analysis.isoflop import grid_profiles, profile_rows

pytestmark = pytest.mark.unit


def _grid(sizes: dict[str, float], k: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each size: k cells, compute 6·N·D with D from 1e8 to 1e9, loss a power law in compute."""
    D = np.logspace(8, 9, k)
    return {m: (6 * N * D, 2.0 * (6 * N * D) ** -0.05) for m, N in sizes.items()}


def test_profiles_interpolate_each_size_at_shared_budgets():
    sizes = {"s": 1e6, "m": 2e6, "l": 4e6}
    profiles, why = grid_profiles(_grid(sizes), sizes)
    assert why == "" and len(profiles) == 4  # as many budgets as the most cells of one size
    for C, (N, L) in profiles.items():
        assert sorted(N) == sorted(sizes.values())  # every size spans every shared budget here
        assert L == pytest.approx(2.0 * C**-0.05, rel=1e-9)  # log-log interpolation of a power law is exact
    rows = profile_rows(profiles)
    assert rows.shape == (12, 3) and set(rows[:, 0]) == set(profiles)


def test_too_few_sizes_or_budgets_say_why():
    sizes = {"s": 1e6, "m": 2e6}
    assert grid_profiles(_grid(sizes), sizes) == ({}, "2 model size(s) with 2 or more cells (need 3)")
    far = {"s": 1e6, "m": 1e9, "l": 1e12}  # compute ranges that never overlap
    assert grid_profiles(_grid(far), far) == ({}, "0 compute budget(s) covered by 3 model sizes (need 3)")
