"""`wps train`: one cell in this process (what a job runs), through the cell's owner `launch.cell.run_cell`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

EXIT_PREEMPTED = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one cell of a sweep in this process",
        description="Plan SWEEP.yaml, pick one cell (by index or cell id), and train it here: a "
        "Bradley–Terry reward model on the cell's pairs budget, evaluated on every eval set "
        "at each milestone, checkpointed to <out>/<sweep>/<cell_id>/checkpoints (a re-run "
        "resumes there and never logs a step twice), metrics logged to MLflow (or the "
        "spool/memory tracker). Several ranks: under torchrun (RANK, WORLD_SIZE, MASTER_ADDR/PORT) "
        "or as the tasks of one srun step (`srun -N2 --ntasks-per-node=1 wps train …`: the "
        "SLURM ids are mapped to ranks). Ctrl-C or SIGTERM checkpoints and stops (KILLED); "
        "under SLURM, SIGTERM (preemption, requeue) saves and stops as PREEMPTED and USR2 saves "
        "and requeues the job (REQUEUED). "
        "Exit status: 0 finished, 1 failed or killed, 2 bad input, 3 preempted or requeued "
        "(checkpoint saved; a re-run resumes).",
        epilog="examples:\n"
        "  wps train sweeps/demo.yaml --cell 0                 # first cell, tracking as the sweep says\n"
        "  wps train sweeps/demo.yaml --cell 1 --tracking memory\n"
        "  wps train sweeps/demo.yaml --cell 3f9c2a --out /scratch/demo   # by cell id (prefix)\n"
        "  srun -N2 --ntasks-per-node=1 wps train sweeps/worldpm.yaml --cell 4 --cluster slurm/h100.yaml\n"
        "  wps plan sweeps/demo.yaml                           # lists the cells and their ids",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", help="sweep YAML")
    p.add_argument("--cell", required=True, help="cell index (0, 1, …) or cell id (prefix ok)")
    p.add_argument("--out", default=None, help="output folder (default: the sweep's out_dir)")
    p.add_argument("--cluster", default=None, help="cluster profile overriding the sweep's")
    p.add_argument(
        "--tracking",
        choices=("mlflow", "spool", "memory", "none"),
        default=None,
        help="override the sweep's tracking backend",
    )
    p.set_defaults(func=run)


def _show_trainer_log() -> None:
    """The trainer's own lines (which checkpoint it resumed from, skipped batches) go to stderr as they
    happen — a job killed right after its restore still said where it started."""
    import logging

    lg = logging.getLogger("worldpm_scaling.train.loop")
    if not any(h.get_name() == "wps" for h in lg.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h.set_name("wps")
        lg.addHandler(h)
    lg.setLevel(min(lg.getEffectiveLevel(), logging.INFO))


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .. import names
    from ..config import load_sweep
    from ..launch.cell import run_cell, with_tracking
    from ..plan import plan, select

    spec = load_sweep(args.sweep, cluster=args.cluster)
    if args.out:
        spec = dataclasses.replace(spec, out_dir=args.out)
    run_spec = with_tracking(select(plan(spec), args.cell), args.tracking)
    _show_trainer_log()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} pairs"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as prog:
        task = prog.add_task(run_spec.model.name, total=run_spec.pairs, loss="–")
        first: list[int] = []

        def show(tr, m):
            if not first and tr.resumed_from_step is not None:
                print(
                    f"resuming from checkpoint step {tr.resumed_from_step} (first step trained now: {tr.step})",
                    flush=True,
                )
            first.append(tr.step)
            prog.update(task, completed=tr.pairs_seen, loss=f"{m[names.TRAIN_LOSS]:.4f}")

        out = run_cell(run_spec, progress=show, announce=lambda line: print(line, flush=True))
    if out.status == "FAILED":
        print(f"error: {type(out.error).__name__}: {out.error}", file=sys.stderr)
        return 1
    result = out.result
    if result is None:  # stopped before training started
        print(f"{out.status}: stopped before training started", file=sys.stderr)
        return EXIT_PREEMPTED if out.status in ("REQUEUED", "PREEMPTED") else 1
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "–"
    if out.resumed_from_step is not None:
        did = f"steps {out.trained_steps[0]}–{out.trained_steps[-1]}" if out.trained_steps else "no steps"
        print(f"resumed from checkpoint step {out.resumed_from_step}; this run trained {did}")
    print(
        f"{out.status}: {result.steps} steps, {result.pairs_seen:,} pairs, {result.tokens_seen:,} tokens, "
        f"final train loss {loss}; checkpoint {result.checkpoint}"
    )
    if out.status == "FINISHED":
        return 0
    return EXIT_PREEMPTED if out.status in ("REQUEUED", "PREEMPTED") else 1
