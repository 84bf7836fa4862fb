"""Fit + 1,000 bootstraps on 1,000 points (issue 8: goal < 10 s), for both power-law forms; the joint
L(N, D) fit on a 7×7 grid; and, side by side in one run, the free-E fit with BLAS on one thread
(what fits.py does) against the default BLAS threading (why it does it).

Writes bench/results/fit_speed.txt. Run: .venv/bin/python bench/fit_speed.py
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from worldpm_scaling.analysis.fits import fit_chinchilla, fit_power


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    rng = np.random.default_rng(0)
    x = np.logspace(15, 21, 1000)
    lines = [
        f"fit_speed: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at start (shared machine: timings are noisy)",
        "1,000 points, 1,000 bootstrap refits:",
    ]
    for label, E, fix in (
        ("pure power law (E fixed at 0, log-log OLS)", 0.0, 0.0),
        ("L = E + A·x^-α, E free (Huber, L-BFGS-B)", 0.5, None),
    ):
        y = (E + 3.0 * (x / 1e15) ** -0.2) * np.exp(rng.normal(0, 0.02, len(x)))
        f, dt = timed(fit_power, x, y, fix_E=fix, bootstrap=1000)
        ci = f.ci["alpha"]
        lines.append(
            f"  {label}: {dt:.2f} s (alpha {f.alpha:.4f} [{ci.lo:.4f}, {ci.hi:.4f}], planted 0.2) "
            f"— goal < 10 s: {'PASS' if dt < 10 else 'FAIL'}"
        )

    y = (0.5 + 3.0 * (x / 1e15) ** -0.2) * np.exp(rng.normal(0, 0.02, len(x)))
    _, one = timed(fit_power, x, y, bootstrap=100)
    _, default = timed(fit_power.__wrapped__, x, y, bootstrap=100)  # same code, BLAS threads untouched
    lines.append(
        f"E free, 100 bootstraps: BLAS 1 thread {one:.2f} s vs default threads {default:.2f} s "
        f"(ratio {default / one:.1f}x)"
    )

    N = np.repeat(np.logspace(7, 10, 7), 7)
    D = np.tile(np.logspace(8, 11.5, 7), 7)
    L = (1.69 + 406.4 / N**0.34 + 410.7 / D**0.28) * np.exp(rng.normal(0, 0.002, len(N)))
    j, dt = timed(fit_chinchilla, N, D, L, bootstrap=100)
    lines.append(
        f"joint L(N, D), 49 points, grid of 4,500 starts + 100 bootstraps: {dt:.2f} s "
        f"(alpha {j.alpha:.3f} beta {j.beta:.3f}, planted 0.34 / 0.28)"
    )
    print("\n".join(lines))
    out = Path(__file__).parent / "results/fit_speed.txt"
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
