"""`wps plan`: the dry-run table a researcher reads before spending an allocation."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import JustifyMethod


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="expand a sweep into cells and show their cost (nothing is started)",
        description="Expand SWEEP.yaml into cells (one per model in milestone mode, one per model × "
        "data size in grid mode) and show each cell's pairs, tokens, FLOPs (6·N·D), "
        "memory per GPU, micro-batch, GPU count, wall-clock split into compute, ZeRO "
        "communication and evaluation hours, and GPU-hours at the profile's MFU and "
        "bandwidths. Cells whose pretrained base checkpoint is missing are marked "
        "(`wps launch` refuses them); warnings (e.g. a signal delay too short to save "
        "a checkpoint) go to stderr.",
        epilog="examples:\n  wps plan sweeps/worldpm.yaml\n"
        "  wps plan sweeps/worldpm.yaml --cluster slurm/a100.yaml --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", help="sweep YAML (see sweeps/)")
    p.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table (default), json (a list of cell objects) or csv",
    )
    p.add_argument("--cluster", metavar="PROFILE", help="cluster profile YAML overriding the sweep's")
    p.add_argument("--attention", action="store_true", help="add the attention term 12·L·d·T per token to the FLOPs")
    p.add_argument(
        "--wide",
        action="store_true",
        help="every column (evals, tokens, FLOPs, ZeRO, micro-batch, GiB/GPU, nodes, compute/comm/eval "
        "hours): about 170 columns wide; the default table fits 100",
    )
    p.set_defaults(func=run)


def human(x: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}{unit}"
    return f"{x:.3g}{unit}"


def run(args: argparse.Namespace) -> int:
    from ..config import load_sweep
    from ..models import missing_bases
    from ..plan import plan

    spec = load_sweep(args.sweep, cluster=args.cluster)
    p = plan(spec, attention=args.attention)
    missing = missing_bases(p.runs)
    rows = p.rows()
    for r in rows:
        r["base_missing"] = missing.get(r["cell_id"])
    for w in p.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        print()
        return 0
    if args.format == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
        return 0
    print_table(p, rows, wide=args.wide)
    return 0


def _init_cell(r: dict) -> str:
    if r["init"] != "pretrained":
        return "random"
    return "[red]missing[/]" if r["base_missing"] else "base ok"


COLUMNS: tuple[tuple[str, JustifyMethod, bool], ...] = (  # (header, justify, in the default 100-column table)
    ("#", "right", True),
    ("cell", "left", True),
    ("model", "left", True),
    ("N (non-emb)", "right", True),
    ("seed", "right", True),
    ("pairs", "right", True),
    ("evals", "right", False),
    ("tokens", "right", False),
    ("FLOPs", "right", False),
    ("init", "left", True),
    ("ZeRO", "right", False),
    ("micro", "right", False),
    ("GiB/GPU", "right", False),
    ("GPUs", "right", True),
    ("nodes", "right", False),
    ("compute-h", "right", False),
    ("comm-h", "right", False),
    ("eval-h", "right", False),
    ("hours", "right", True),
    ("GPU-h", "right", True),
    ("limit", "right", True),
)


def print_table(p, rows: list[dict] | None = None, *, wide: bool = False) -> None:
    """The plan table: the columns a researcher reads first, within 100 columns; `wide` adds the rest."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    spec = p.sweep
    c = spec.cluster
    t = Table(
        title=f"sweep {spec.name} — {spec.mode} mode, {len(p.runs)} cells, "
        f"profile {c.name} ({c.gpu_type}, MFU {c.mfu:.0%})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    shown = [i for i, (_h, _j, default) in enumerate(COLUMNS) if wide or default]
    for i in shown:
        t.add_column(COLUMNS[i][0], justify=COLUMNS[i][1], no_wrap=True)
    if rows is None:
        rows = [{**r, "base_missing": None} for r in p.rows()]
    for r in rows:
        cells = (
            str(r["index"]),
            r["cell_id"],
            r["model"],
            human(r["params_non_embedding"]),
            str(r["seed"]),
            human(r["pairs"]),
            str(r["milestones"]),
            human(r["tokens"]),
            f"{r['flops']:.2e}",
            _init_cell(r),
            str(r["zero_stage"]),
            str(r["micro_batch_pairs"]),
            f"{r['mem_gib_per_gpu']:.1f}",
            str(r["gpus"]),
            str(r["nodes"]),
            f"{r['compute_hours']:.3g}",
            f"{r['comm_hours']:.3g}",
            f"{r['eval_hours']:.3g}",
            f"{r['hours']:.3g}",
            f"{r['gpu_hours']:.3g}",
            f"{r['time_limit_minutes']}m" + (f"×{r['segments']}" if r["segments"] > 1 else ""),
        )
        t.add_row(*(cells[i] for i in shown))
    con = Console(width=200 if wide else 100)
    con.print(t)
    for why in sorted({r["base_missing"] for r in rows if r["base_missing"]}):
        con.print(f"[red]missing base checkpoint[/]: {why}")
    tot = p.totals()
    con.print(
        f"total: {tot['cells']} cells, {tot['flops']:.3e} FLOPs, {tot['gpu_hours']:.4g} GPU-hours"
        + ("" if wide else "; --wide for every column")
    )
    if spec.mode == "milestones":
        con.print(
            f"grid mode (one run per model × data size) would cost {tot['grid_mode_gpu_hours']:.4g} "
            f"GPU-hours: milestone mode saves {tot['milestone_saving']:.2f}×"
        )
