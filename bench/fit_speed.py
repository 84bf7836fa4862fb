"""Fit + 1,000 bootstraps on 1,000 points (issue 8: goal < 10 s), for both power-law forms.

Writes bench/results/fit_speed.txt.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from worldpm_scaling.analysis.fits import fit_power


def main() -> None:
    rng = np.random.default_rng(0)
    x = np.logspace(15, 21, 1000)
    lines = ["fit_speed: 1,000 points, 1,000 bootstrap refits"]
    for label, E, fix in (("pure power law (E fixed at 0, log-log OLS)", 0.0, 0.0),
                          ("L = E + A·x^-α, E free (Huber, L-BFGS-B)", 0.5, None)):
        y = (E + 3.0 * (x / 1e15) ** -0.2) * np.exp(rng.normal(0, 0.02, len(x)))
        t0 = time.perf_counter()
        f = fit_power(x, y, fix_E=fix, bootstrap=1000)
        dt = time.perf_counter() - t0
        ci = f.ci["alpha"]
        lines.append(f"{label}: {dt:.2f} s (alpha {f.alpha:.4f} [{ci.lo:.4f}, {ci.hi:.4f}], planted 0.2) "
                     f"— goal < 10 s: {'PASS' if dt < 10 else 'FAIL'}")
    print("\n".join(lines))
    (Path(__file__).parent / "results/fit_speed.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
