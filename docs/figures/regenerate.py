"""Regenerate the committed example figures from the planted synthetic sweeps (tests/analysis_synth.py):
the milestone sweep for every figure but isoflop.png, which comes from the grid-mode sweep.

Run from the repository root: .venv/bin/python docs/figures/regenerate.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.analysis_synth import grid_sweep, sweep_frame  # noqa: E402 — after sys.path
from worldpm_scaling.analysis.report import analyze  # noqa: E402 — after sys.path

if __name__ == "__main__":
    here = Path(__file__).parent
    with tempfile.TemporaryDirectory() as tmp:
        rep = analyze(sweep_frame(), tmp, bootstrap=200)
        for p in rep.figures:
            if p.suffix == ".png":
                shutil.copyfile(p, here / (p.name + ".tmp"))
                (here / (p.name + ".tmp")).replace(here / p.name)
                print(here / p.name)
        print(rep.headline())
    with tempfile.TemporaryDirectory() as tmp:  # a grid-mode sweep for the IsoFLOP profiles
        rep = analyze(grid_sweep(), tmp, bootstrap=200)
        for p in rep.figures:
            if p.name == "isoflop.png":
                shutil.copyfile(p, here / (p.name + ".tmp"))
                (here / (p.name + ".tmp")).replace(here / p.name)
                print(here / p.name)
