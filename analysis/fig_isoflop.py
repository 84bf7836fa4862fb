"""IsoFLOP profiles of a grid-mode sweep (Hoffmann et al. 2022, approach 2): test loss vs model size at fixed compute budgets, the parabola in log N per budget and its minimum; budgets whose minimum lies at the edge of the sampled sizes drawn hollow and not used.

Usage: python analysis/fig_isoflop.py --sweep NAME [--tracking-uri URI | --from runs.parquet] [--out DIR]
"""

from _common import run

if __name__ == "__main__":
    run("isoflop", __doc__)
