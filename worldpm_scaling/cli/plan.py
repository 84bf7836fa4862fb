"""`wps plan`: the dry-run table a researcher reads before spending an allocation."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="expand a sweep into cells and show their cost (nothing is started)",
        description="Expand SWEEP.yaml into cells (one per model in milestone mode, one per model × "
                    "data size in grid mode) and show each cell's pairs, tokens, FLOPs (6·N·D), "
                    "memory per GPU, GPU count, wall-clock and GPU-hours at the profile's MFU.",
        epilog="examples:\n  wps plan sweeps/worldpm.yaml\n"
               "  wps plan sweeps/worldpm.yaml --cluster slurm/a100.yaml --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="sweep YAML (see sweeps/)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table (default), json (a list of cell objects) or csv")
    p.add_argument("--cluster", metavar="PROFILE", help="cluster profile YAML overriding the sweep's")
    p.add_argument("--attention", action="store_true",
                   help="add the attention term 12·L·d·T per token to the FLOPs")
    p.set_defaults(func=run)


def human(x: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}{unit}"
    return f"{x:.3g}{unit}"


def run(args: argparse.Namespace) -> int:
    from ..config import load_sweep
    from ..plan import plan

    spec = load_sweep(args.sweep, cluster=args.cluster)
    p = plan(spec, attention=args.attention)
    rows = p.rows()
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    if args.format == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        sys.stdout.write(buf.getvalue())
        return 0
    print_table(p)
    return 0


def print_table(p) -> None:
    from rich.console import Console
    from rich.table import Table

    spec = p.sweep
    c = spec.cluster
    t = Table(title=f"sweep {spec.name} — {spec.mode} mode, {len(p.runs)} cells, "
                    f"profile {c.name} ({c.gpu_type}, MFU {c.mfu:.0%})", title_justify="left")
    for col, just in (("#", "right"), ("cell", "left"), ("model", "left"), ("N (non-emb)", "right"),
                      ("seed", "right"), ("pairs", "right"), ("evals", "right"), ("tokens", "right"),
                      ("FLOPs", "right"), ("ZeRO", "right"), ("GiB/GPU", "right"), ("GPUs", "right"),
                      ("nodes", "right"), ("hours", "right"), ("GPU-h", "right"), ("limit", "right")):
        t.add_column(col, justify=just)
    for r in p.rows():
        t.add_row(str(r["index"]), r["cell_id"], r["model"], human(r["params_non_embedding"]),
                  str(r["seed"]), human(r["pairs"]), str(r["milestones"]), human(r["tokens"]),
                  f"{r['flops']:.2e}", str(r["zero_stage"]), f"{r['mem_gib_per_gpu']:.1f}",
                  str(r["gpus"]), str(r["nodes"]), f"{r['hours']:.3g}", f"{r['gpu_hours']:.3g}",
                  f"{r['time_limit_minutes']}m" + (f"×{r['segments']}" if r["segments"] > 1 else ""))
    con = Console(width=max(160, Console().width))
    con.print(t)
    tot = p.totals()
    con.print(f"total: {tot['cells']} cells, {tot['flops']:.3e} FLOPs, {tot['gpu_hours']:.4g} GPU-hours")
    if spec.mode == "milestones":
        con.print(f"grid mode (one run per model × data size) would cost {tot['grid_mode_gpu_hours']:.4g} "
                  f"GPU-hours: milestone mode saves {tot['milestone_saving']:.2f}×")
