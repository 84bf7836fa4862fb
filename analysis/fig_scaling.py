"""The paper's main figure — BT test loss vs log2(training pairs), one panel per eval category, one curve per model size, fitted power laws with bands (emergent curves drawn as broken power laws).

Usage: python analysis/fig_scaling.py --sweep NAME [--tracking-uri URI | --from runs.parquet] [--out DIR]
"""

from _common import run

if __name__ == "__main__":
    run("loss_vs_pairs", __doc__)
