"""Gradient norm (before clipping) vs training pairs, with spike (▲) and emergence (★) markers — the kind of event the paper reports for 72B near 12.6M samples.

Usage: python analysis/fig_gradnorm.py --sweep NAME [--tracking-uri URI | --from runs.parquet] [--out DIR]
"""

from _common import run

if __name__ == "__main__":
    run("grad_norm", __doc__)
