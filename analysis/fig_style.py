"""Phi between the model's preferences and style indicators (longer reply, markdown) over training.

Usage: python analysis/fig_style.py --sweep NAME [--tracking-uri URI | --from runs.parquet] [--out DIR]
"""

from _common import run

if __name__ == "__main__":
    run("style_phi", __doc__)
