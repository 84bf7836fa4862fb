"""Benchmark: `wps data stackexchange` throughput (posts/s) and peak RSS at two dump sizes.

Goals (issue 5): ≥ 20k posts/s and < 500 MB peak RSS that does not grow with the dump size. Each
size is generated here (`write_fake_dump`: 0–6 answers per question, 20% of answers placed far
later in the file as in real dumps), then converted in its own child process so its peak RSS
(ru_maxrss from wait4) is its own; both sizes run side by side in one invocation.

    .venv/bin/python bench/convert_stackexchange.py            # 250k and 1M posts
    .venv/bin/python bench/convert_stackexchange.py --sizes 20000 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import json, sys
from worldpm_scaling.data.stackexchange import convert, ConvertOptions
s = convert(sys.argv[1], sys.argv[2], ConvertOptions())
print(json.dumps(s.to_dict()))
"""


def run_child(dump: Path, out: Path) -> tuple[dict, float, float, float]:
    """(summary, wall seconds, CPU seconds, peak RSS in MB) of one conversion in a fresh process.

    CPU seconds (user + sys) are reported beside wall time because this box is shared: under load
    wall-clock throughput halves while posts per CPU-second stays put."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(dump), str(out)], stdout=subprocess.PIPE)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"conversion of {dump} failed with {proc.returncode}")
    return json.loads(stdout), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    from worldpm_scaling.data.stackexchange import write_fake_dump

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000], help="posts per dump")
    ap.add_argument(
        "--out",
        default=str(HERE / "results" / "convert_stackexchange"),
        help="results path without suffix (.txt and .json are written)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wps-bench-se-"))
    rows = []
    try:
        for n in args.sizes:
            t0 = time.perf_counter()
            dump = write_fake_dump(work / f"Posts-{n}.xml", n, seed=0)
            gen_s = time.perf_counter() - t0
            load = os.getloadavg()[0]
            summary, wall, cpu, rss = run_child(dump, work / f"out-{n}")
            rows.append(
                {
                    "posts": summary["posts_read"],
                    "dump_mb": dump.stat().st_size / 2**20,
                    "pairs": summary["pairs"],
                    "convert_s": summary["seconds"],
                    "process_wall_s": wall,
                    "posts_per_s": summary["posts_per_s"],
                    "cpu_s": cpu,
                    "posts_per_cpu_s": summary["posts_read"] / cpu,
                    "peak_rss_mb": rss,
                    "generate_s": gen_s,
                    "load_avg_1min": load,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            dump.unlink()
            shutil.rmtree(work / f"out-{n}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs: timings are noisy)",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "goals": {"posts_per_s": 20000, "peak_rss_mb": 500},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "wps data stackexchange — generated dumps, each converted in its own process",
        f"{meta['machine']}; python {meta['python']}; {meta['date']}",
        "",
        f"{'posts':>10} {'dump MB':>8} {'pairs':>10} {'convert s':>10} {'posts/s':>9} {'posts/CPU-s':>12} "
        f"{'peak RSS MB':>12} {'load':>5}",
    ]
    lines += [
        f"{r['posts']:>10,} {r['dump_mb']:>8.0f} {r['pairs']:>10,} {r['convert_s']:>10.1f} "
        f"{r['posts_per_s']:>9,.0f} {r['posts_per_cpu_s']:>12,.0f} {r['peak_rss_mb']:>12.0f} "
        f"{r['load_avg_1min']:>5.1f}"
        for r in rows
    ]
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        lines += [
            "",
            f"size ratio {b['posts'] / a['posts']:.1f}x → peak RSS ratio {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x, "
            f"throughput ratio {b['posts_per_s'] / a['posts_per_s']:.2f}x",
        ]
    lines += [
        "posts/s = posts read / conversion wall time (scan + pair + write, excluding interpreter start);",
        "posts/CPU-s = posts / (user + sys) of the converting process: the load-robust number;",
        "load = 1-min load average when the conversion started (2 cores shared with other jobs).",
        "goals: ≥ 20,000 posts/s, < 500 MB peak RSS not growing with size",
    ]
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
