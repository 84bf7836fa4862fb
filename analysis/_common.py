"""Shared argument handling for the figure recipes (each recipe is one paper figure)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--sweep", required=True, help="sweep name (MLflow experiment)")
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    ap.add_argument("--from", dest="from_file", help="tidy CSV/Parquet export instead of MLflow")
    ap.add_argument("--out", default=None, help="output folder (default out/<sweep>/figures)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    args.out = args.out or f"out/{args.sweep}/figures"
    return args


def frame(args):
    from worldpm_scaling.analysis import load

    return (
        load.from_file(args.from_file)
        if args.from_file
        else load.from_mlflow(args.sweep, tracking_uri=args.tracking_uri)
    )


def run(stem: str, description: str) -> None:
    """Analyse the sweep and print the paths of one figure (`stem`.pdf/.svg/.png)."""
    from worldpm_scaling.analysis.report import analyze

    args = parse(description)
    rep = analyze(frame(args), Path(args.out).parent, bootstrap=args.bootstrap)
    paths = [p for p in rep.figures if p.stem == stem]
    if not paths:
        sys.exit(f"error: the sweep has no data for {stem} (see {rep.report_path})")
    print("\n".join(str(p) for p in paths))
