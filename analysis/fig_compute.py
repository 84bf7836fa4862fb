"""Test loss vs training compute C = 6·N·D per category, with the frontier over model sizes and the power law fitted to it.

Usage: python analysis/fig_compute.py --sweep NAME [--tracking-uri URI | --from runs.parquet] [--out DIR]
"""

from _common import run

if __name__ == "__main__":
    run("loss_vs_compute", __doc__)
