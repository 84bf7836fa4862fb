"""`wps launch`, `wps status`, `wps cancel`."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="submit a sweep's unfinished cells (SLURM job array, or local subprocesses)",
        description="Check that every input the jobs need is there (`wps check`: refuses naming what is not), "
        "then plan SWEEP.yaml and submit every cell that has not FINISHED through submitit: one job "
        "array per resource shape on SLURM (nodes, tasks = GPUs per node, CPUs, memory, time "
        "limit from the plan; partition/account/qos/constraint/setup from the profile), or "
        "subprocesses with --executor local. Launching again skips finished cells and "
        "resubmits failed or cancelled ones, which resume from their checkpoints.",
        epilog="examples:\n  wps launch sweeps/worldpm.yaml --cluster slurm/h100.yaml --dry-run\n"
        "  wps launch sweeps/demo.yaml --executor local --wait",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep")
    p.add_argument("--cluster", help="cluster profile (slurm/*.yaml) overriding the sweep's")
    p.add_argument("--executor", choices=("slurm", "local", "debug"), help="override the profile's executor")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the sbatch scripts and the readiness table (`wps check`); submit nothing. Exit 0 "
        "only when every input is ready",
    )
    p.add_argument("--wait", action="store_true", help="show progress until every cell has ended")
    p.set_defaults(func=run_launch)

    k = sub.add_parser(
        "check",
        help="pre-flight: is every input a sweep's jobs need ready? (one table; nothing is written)",
        description="Check, before anything queues, what every job of SWEEP.yaml will need: the training "
        "pairs (and that they hold the budget), the tokenizer (and that it fits each model), every "
        "eval file, the pretrained base checkpoints, the tracking server (answers /health within "
        "3 s, or a spool backend), the output folder (writable), and the cells' own state files. "
        "Prints one table of what is ready and what is not. Exit 0 when all is ready, 2 when not "
        "(each not-ready row names the file or field to fix). Value ranges (seed ≥ 0, fractions "
        "in [0, 1], …) are checked when the sweep is loaded. `wps launch` runs the same check.",
        epilog="examples:\n  wps check sweeps/demo.yaml\n  wps check sweeps/worldpm.yaml --cluster slurm/h100.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    k.add_argument("sweep")
    k.add_argument("--cluster", help="cluster profile (slurm/*.yaml) overriding the sweep's")
    k.set_defaults(func=run_check)

    s = sub.add_parser(
        "status",
        help="each cell's scheduler state, MLflow status, last loss and pairs seen",
        description="One table per sweep: cell, model, job id, state (from the job's marker "
        "and sacct), MLflow run status, pairs seen and last training loss; under it, "
        "why each failed cell failed (its recorded error, else the first error line "
        "of its job log). Read-only: nothing is written, on disk or in MLflow. State "
        "files that cannot be read are reported (the cell shows UNREADABLE) and "
        "make the exit code 1.",
        epilog="examples:\n  wps status sweeps/demo.yaml\n  wps status sweeps/demo.yaml --watch --interval 10",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("sweep")
    s.add_argument("--cluster")
    s.add_argument(
        "--watch",
        action="store_true",
        help="refresh every few seconds until all cells end (a sweep with nothing launched says so and exits 1)",
    )
    s.add_argument("--interval", type=float, default=5.0)
    s.set_defaults(func=run_status)

    c = sub.add_parser(
        "cancel",
        help="cancel a sweep's running jobs (or one cell)",
        description="scancel the latest job of each cell (or of --cell); local jobs get SIGTERM. "
        "Checkpoints stay: `wps launch` again resumes the cancelled cells.",
        epilog="examples:\n  wps cancel sweeps/demo.yaml\n  wps cancel sweeps/demo.yaml --cell 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("sweep")
    c.add_argument("--cell", help="cell index or id")
    c.add_argument("--cluster")
    c.set_defaults(func=run_cancel)


def _plan(args):
    from ..config import load_sweep
    from ..plan import plan

    return plan(load_sweep(args.sweep, cluster=getattr(args, "cluster", None)))


def _several_seeds(rows) -> bool:
    return len({r.get("seed", 0) for r in rows}) > 1


def _table(rows, title: str):
    """One row per cell; a seed column when the sweep repeats cells over seeds. No cell wraps (a state
    split over two lines is unreadable and ungreppable): with one-space gaps, 12 cells and a seed column
    fit 80 columns."""
    from rich import box
    from rich.table import Table

    seeds = _several_seeds(rows)
    t = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=0,
        collapse_padding=True,
    )
    for col in ("#", "cell", "model") + (("seed",) if seeds else ()) + ("job", "state", "mlflow", "pairs seen", "loss"):
        t.add_column(col, no_wrap=True, min_width=10 if col == "cell" else None)
    for r in rows:
        t.add_row(
            str(r["index"]),
            r["cell_id"],
            r["model"],
            *((str(r["seed"]),) if seeds else ()),
            str(r["job_id"] or "-"),
            r["state"],
            str(r["mlflow"] or "-"),
            f"{r['pairs_seen']:,.0f}/{r['pairs_budget']:,}" if r["pairs_seen"] else f"0/{r['pairs_budget']:,}",
            f"{r['loss']:.4f}" if r["loss"] is not None else "-",
        )
    return t


_NAME_EVERY_CELL = 6
"""Up to this many cells the log line names each; above it, waiting and finished cells are counted
(24 demo cells named one by one made a 1,500-character line every 30 s)."""
_WAITING = ("SUBMITTED", "NOT LAUNCHED")
"""States counted, not named, in a large sweep's log line (with FINISHED, which the head counts)."""


def _progress_line(rows: list[dict]) -> str:
    """`2/3 finished | tiny-xs FINISHED 8,192/8,192 loss 0.41 | …` for logs, where a live table can't draw
    (`tiny-xs s1 …` when the sweep has several seeds). Above `_NAME_EVERY_CELL` cells only the cells
    doing something (running, failed, requeued, …) are named: `8/24 finished | 14 SUBMITTED | tiny-xs s0
    RUNNING 4,000/8,192 loss 0.62 | …`."""
    done = sum(r["state"] == "FINISHED" for r in rows)
    seeds = _several_seeds(rows)

    def cell(r: dict) -> str:
        return (
            f"{r['model']}{' s' + str(r['seed']) if seeds else ''} {r['state']} {r['pairs_seen'] or 0:,.0f}/"
            f"{r['pairs_budget']:,}" + (f" loss {r['loss']:.3f}" if r["loss"] is not None else "")
        )

    head = f"{done}/{len(rows)} finished"
    if len(rows) <= _NAME_EVERY_CELL:
        return " | ".join([head, *map(cell, rows)])
    waiting = [f"{n} {st}" for st in _WAITING if (n := sum(r["state"] == st for r in rows))]
    at_work = (cell(r) for r in rows if r["state"] != "FINISHED" and r["state"] not in _WAITING)
    return " | ".join([head, *waiting, *at_work])


def _watch(p, interval: float, *, close: bool = False) -> list[dict]:
    """Refresh until every cell has ended; `close` (wps launch --wait, the command that started the
    sweep) then ends the sweep's parent MLflow run. `wps status --watch` only looks."""
    from rich.console import Console
    from rich.live import Live

    from ..launch import all_done, sweep_status

    rows = sweep_status(p)
    console = Console()
    if not console.is_terminal:  # a log file or CI: one line per change, at most every 30 s
        t0, last, last_t = time.monotonic(), None, 0.0
        while True:
            line = _progress_line(rows)
            if line != last and (time.monotonic() - last_t >= 30 or all_done(rows)):
                print(f"[{time.monotonic() - t0:5.0f}s] {line}", flush=True)
                last, last_t = line, time.monotonic()
            if all_done(rows):
                break
            time.sleep(interval)
            rows = sweep_status(p)
    else:
        with Live(_table(rows, f"sweep {p.sweep.name}"), console=console, refresh_per_second=1) as live:
            while not all_done(rows):
                time.sleep(interval)
                rows = sweep_status(p)
                live.update(_table(rows, f"sweep {p.sweep.name}"))
    if close:
        _close(p, rows)
    return rows


def _close(p, rows: list[dict]) -> None:
    """Every cell has ended: end the sweep's parent MLflow run truthfully, and say so."""
    from ..launch import close_sweep_run

    status = close_sweep_run(p, rows)
    if status is not None:
        print(f"sweep {p.sweep.name}: parent MLflow run marked {status}")


def _readiness(rows, title: str) -> None:
    """The pre-flight table: one row per input, ready or not (to stdout; fits 100 columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    t.add_column("ready", no_wrap=True)
    t.add_column("input", no_wrap=True)
    t.add_column("where", overflow="fold", max_width=40)
    t.add_column("detail", overflow="fold")
    for c in rows:
        mark = "[green]yes[/]" if c.ok else ("[red]NO[/]" if c.blocking else "[yellow]warn[/]")
        t.add_row(mark, c.item, c.where, c.detail)
    con = Console(width=max(100, min(Console().width, 160)) if Console().is_terminal else 100)
    con.print(t)


def _check(p, *, title: str) -> int:
    """Print the readiness table; 0 when every input is ready, else 2 and one `error:` line naming each."""
    import sys

    from ..launch.preflight import not_ready, preflight

    rows = preflight(p)
    _readiness(rows, title)
    bad = not_ready(rows)
    for c in rows:
        if not c.ok and not c.blocking:
            print(f"warning: {c.item}: {c.detail}", file=sys.stderr)
    if bad:
        print(
            f"error: {len(bad)} input(s) not ready (rows marked NO above): {', '.join(c.item for c in bad)}",
            file=sys.stderr,
        )
        return 2
    return 0


def run_check(args) -> int:
    p = _plan(args)
    return _check(p, title=f"sweep {p.sweep.name}: pre-flight check ({len(p.runs)} cells)")


def run_launch(args) -> int:
    import sys

    from ..launch import launch, pending_cells

    p = _plan(args)
    for w in p.warnings:  # e.g. a signal delay too short to save a checkpoint (docs/planner.md)
        print(f"warning: {w}", file=sys.stderr)
    todo, done = pending_cells(p)
    if args.dry_run:
        for script in launch(p, executor=args.executor, dry_run=True):
            print(script)
        print(f"# dry run: {len(todo)} cells would be submitted, {len(done)} already finished")
        return _check(p, title=f"sweep {p.sweep.name}: pre-flight check")
    jobs = launch(p, executor=args.executor)  # refuses (PreflightError) before submitting if an input is not ready
    print(
        f"sweep {p.sweep.name}: submitted {len(jobs)} cells, skipped {len(done)} finished "
        f"({args.executor or p.sweep.cluster.executor} executor)"
    )
    if args.wait:
        rows = _watch(p, 3.0, close=True)
        bad = [r for r in rows if r["state"] != "FINISHED"]
        for r in bad:
            print(
                f"cell {r['cell_id']} ended {r['state']}"
                + (
                    f": {r['why']}"
                    if r.get("why")
                    else f" (see {p.sweep.output_dir}/cells/{r['cell_id']}/ and the job logs)"
                )
            )
        return 1 if bad else 0
    return 0


def _problems(problems: list[str]) -> int:
    """Report state files that could not be read; the exit code a command that met them returns."""
    import sys

    for msg in dict.fromkeys(problems):
        print(f"warning: {msg}", file=sys.stderr)
    return 1 if problems else 0


def run_status(args) -> int:
    """Read-only: the table, why failed cells failed, and problems with the state files."""
    from rich.console import Console

    from ..launch import sweep_status
    from ..launch.status import nothing_launched
    from . import CLIError

    if not args.interval > 0:  # also NaN
        raise CLIError(f"--interval must be a positive number of seconds, got {args.interval:g}")
    p = _plan(args)
    problems: list[str] = []
    rows = sweep_status(p, problems=problems)
    if args.watch and nothing_launched(rows):
        import sys

        print(
            f"sweep {p.sweep.name}: nothing launched yet under {p.sweep.output_dir} (no launch records, no cell "
            f"status); `wps launch {args.sweep}` starts it",
            file=sys.stderr,
        )
        _problems(problems)
        return 1
    if args.watch:
        rows = _watch(p, args.interval)
        problems = []
        sweep_status(p, problems=problems)
        never = [r for r in rows if r["state"] == "NOT LAUNCHED"]
        if never:
            print(
                f"{len(never)} cell(s) never launched ({', '.join(r['cell_id'] for r in never[:10])}"
                f"{' …' if len(never) > 10 else ''}): `wps launch {args.sweep}` submits them"
            )
    else:
        Console().print(_table(rows, f"sweep {p.sweep.name}"))
    for r in rows:
        if r.get("why"):
            print(f"cell {r['index']} {r['cell_id']} {r['state']}: {r['why']}")
    return _problems(problems)


def run_cancel(args) -> int:
    import subprocess

    from ..launch import launches
    from ..launch.status import UNREADABLE, read_state
    from ..plan import select

    p = _plan(args)
    cells = [select(p, args.cell)] if args.cell else list(p.runs)
    problems: list[str] = []
    rec = launches(p.sweep.output_dir, problems=problems)
    n = 0
    for r in cells:
        lr = rec.get(r.cell_id)
        st = read_state(r.out_dir)
        if st.get("status") == UNREADABLE:  # its job may still run: cancel it all the same, and say so
            problems.append(f"cell {r.cell_id}: {st['problem']}")
        if not lr or st.get("status") in ("FINISHED", "FAILED", "KILLED"):
            continue  # nothing running (and a local job's pid may since belong to another process)
        if lr["executor"] == "slurm":
            try:
                subprocess.run(["scancel", str(lr["job_id"])], check=False, timeout=30)
            except (OSError, subprocess.SubprocessError) as e:
                problems.append(f"cell {r.cell_id}: scancel {lr['job_id']} failed: {e}")
                continue
        else:
            import os
            import signal

            try:
                os.kill(int(lr["job_id"]), signal.SIGTERM)
            except (ProcessLookupError, ValueError, TypeError, OverflowError):
                continue
        n += 1
    print(f"cancelled {n} job(s); `wps launch {args.sweep}` resumes them from their checkpoints")
    return _problems(problems)
