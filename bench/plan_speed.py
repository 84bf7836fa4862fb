"""How long does planning a 10,000-cell grid take? (issue 3: goal < 1 s)

100 model shapes × 100 data sizes in grid mode = 10,000 cells, each priced (FLOPs, memory under
ZeRO, GPU count, hours) and hashed into a cell id. Prints the median of 5 runs and writes
bench/results/plan_speed.txt.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from worldpm_scaling.config import ClusterSpec, DataSpec, MilestoneSpec, SweepSpec, TrainSpec
from worldpm_scaling.models import ModelShape
from worldpm_scaling.plan import plan


def grid_spec(n_models: int = 100, n_sizes: int = 100) -> SweepSpec:
    shapes = tuple(
        ModelShape(
            name=f"m{i}",
            hidden=256 * (1 + i % 32),
            layers=8 + i % 72,
            heads=8,
            kv_heads=2,
            intermediate=1024 * (1 + i % 28),
            vocab=152064,
        )
        for i in range(n_models)
    )
    sizes = tuple(16384 * (i + 1) for i in range(n_sizes))
    return SweepSpec(
        name="bench",
        models=shapes,
        mode="grid",
        data=DataSpec(source="x", pairs=sizes[-1], tokens_per_pair=2000.0),
        milestones=MilestoneSpec(pairs=sizes),
        train=TrainSpec(global_batch_pairs=10240),
        cluster=ClusterSpec(name="h100", executor="slurm", gpu_type="H100-80G", gpus_per_node=8, max_nodes=64),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results/plan_speed.txt"))
    args = ap.parse_args()
    spec = grid_spec()
    times, cells = [], 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        p = plan(spec)
        times.append(time.perf_counter() - t0)
        cells = len(p.runs)
    med = statistics.median(times)
    lines = [
        f"plan_speed: {cells} cells (100 shapes x 100 data sizes, grid mode, H100 profile)",
        f"python {platform.python_version()} on {platform.machine()}, {args.repeats} repeats",
        "seconds: " + ", ".join(f"{t:.3f}" for t in times),
        f"median: {med:.3f} s ({med / cells * 1e6:.1f} us/cell) — goal < 1 s: {'PASS' if med < 1 else 'FAIL'}",
    ]
    print("\n".join(lines))
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
