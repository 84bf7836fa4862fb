"""`wps train`: one cell in this process (what a job runs)."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train one cell of a sweep in this process",
        description="Plan SWEEP.yaml, pick one cell (by index or cell id), and train it here: a "
                    "Bradley–Terry reward model on the cell's pairs budget, evaluated on every eval set "
                    "at each milestone, checkpointed to <out>/<sweep>/<cell_id>/checkpoints (a re-run "
                    "resumes there and never logs a step twice), metrics logged to MLflow (or the "
                    "spool/memory tracker). Ctrl-C or SIGTERM checkpoints and stops (status KILLED). "
                    "Exit status: 0 finished, 1 failed or killed, 2 bad input.",
        epilog="examples:\n"
               "  wps train sweeps/demo.yaml --cell 0                 # first cell, tracking as the sweep says\n"
               "  wps train sweeps/demo.yaml --cell 1 --tracking memory\n"
               "  wps train sweeps/demo.yaml --cell 3f9c2a --out /scratch/demo   # by cell id (prefix)\n"
               "  wps plan sweeps/demo.yaml                           # lists the cells and their ids",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="sweep YAML")
    p.add_argument("--cell", required=True, help="cell index (0, 1, …) or cell id (prefix ok)")
    p.add_argument("--out", default=None, help="output folder (default: the sweep's out_dir)")
    p.add_argument("--cluster", default=None, help="cluster profile overriding the sweep's")
    p.add_argument("--tracking", choices=("mlflow", "spool", "memory", "none"), default=None,
                   help="override the sweep's tracking backend")
    p.set_defaults(func=run)


LOCK_NAME = ".wps-train.lock"


def _show_trainer_log() -> None:
    """The trainer's own lines (which checkpoint it resumed from, skipped batches) go to stderr as they
    happen — a job killed right after its restore still said where it started."""
    import logging

    lg = logging.getLogger("worldpm_scaling.train.loop")
    if not any(getattr(h, "_wps", False) for h in lg.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        h._wps = True
        lg.addHandler(h)
    lg.setLevel(min(lg.getEffectiveLevel(), logging.INFO))


def _check_vocab(run_spec) -> None:
    """Token ids the model cannot embed fail here, named, not as an IndexError inside torch.embedding."""
    if run_spec.data.tokenizer is None:
        return
    from ..data import load_tokenizer
    from . import CLIError

    tok = load_tokenizer(run_spec.data.tokenizer)
    if tok.vocab_size > run_spec.model.vocab:
        raise CLIError(f"data.tokenizer {run_spec.data.tokenizer} has {tok.vocab_size:,} tokens but model "
                       f"{run_spec.model.name} embeds only {run_spec.model.vocab:,} (ids ≥ {run_spec.model.vocab:,} "
                       "cannot be looked up): use a tokenizer that fits or a model with that vocabulary")


def _lock_cell(run_spec):
    """One trainer per cell: a second `wps train` on the same cell folder refuses (named error)
    instead of spooling every step twice and rotating checkpoints under the first one."""
    import fcntl
    import os
    from pathlib import Path

    from . import CLIError

    out = Path(run_spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # One lock per rank: the ranks of one multi-process job train the same cell together; what the
    # lock refuses is a second job (a second rank 0, 1, …) on a cell that is already being trained.
    rank = int(os.environ.get("RANK", "0"))
    path = out / (LOCK_NAME if rank == 0 else f"{LOCK_NAME}.rank{rank}")
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise CLIError(f"cell {run_spec.cell_id} is already being trained (lock {path} held by pid {holder}); "
                       "wait for it or stop it, then re-run") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .. import names
    from ..config import load_sweep
    from ..plan import plan, select
    from ..track import open_tracker
    from ..train import CheckpointCorruptError, NonFiniteLossError, Trainer

    spec = load_sweep(args.sweep, cluster=args.cluster)
    if args.out:
        spec = dataclasses.replace(spec, out_dir=args.out)
    if args.tracking:
        spec = dataclasses.replace(spec, tracking=dataclasses.replace(spec.tracking, backend=args.tracking))
    run_spec = select(plan(spec), args.cell)
    _check_vocab(run_spec)
    lock = _lock_cell(run_spec)  # held until this process exits (a kill -9 releases it too)
    tracker = open_tracker(run_spec.tracking, spool_dir=f"{run_spec.out_dir}/spool", experiment=spec.name)
    parent = tracker.start_sweep(spec.name, params={"description": spec.description})
    child = tracker.start_cell(spec.name, run_spec.cell_id, name=f"{run_spec.model.name}-{run_spec.pairs}-s{run_spec.seed}",
                               parent_run_id=parent.run_id, params=run_spec.flat_params())
    from ..track.datasets import log_cell_inputs

    log_cell_inputs(child, run_spec)  # training pairs and eval sets as MLflow dataset inputs
    trainer = Trainer(run_spec, child)
    _show_trainer_log()
    print(f"cell {run_spec.cell_id}: {run_spec.model.name}, {run_spec.pairs:,} pairs, "
          f"{len(run_spec.milestones)} milestones, {run_spec.train.collation} collation → {run_spec.out_dir}")

    def on_term(signum, frame):  # the launcher's scheduler (or a user) asks us to stop: save, then stop
        trainer.checkpoint_now()
        trainer.request_stop()

    old = signal.signal(signal.SIGTERM, on_term)
    status, result, error = "FAILED", None, None
    trained: list[int] = []  # the optimizer steps this process trained
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,.0f}/{task.total:,.0f} pairs"), TextColumn("loss {task.fields[loss]}"),
                      TimeElapsedColumn(), TimeRemainingColumn()) as prog:
            task = prog.add_task(run_spec.model.name, total=run_spec.pairs, loss="–")

            def show(tr, m):
                if not trained and tr.resumed_from_step is not None:
                    print(f"resuming from checkpoint step {tr.resumed_from_step} (first step trained now: "
                          f"{tr.step})", flush=True)
                trained.append(tr.step)
                prog.update(task, completed=tr.pairs_seen, loss=f"{m[names.TRAIN_LOSS]:.4f}")

            result = trainer.fit(progress=show)
        status = result.status
    except (NonFiniteLossError, CheckpointCorruptError) as e:
        error = e
    except KeyboardInterrupt:
        trainer.checkpoint_now()
        status = "KILLED"
    finally:
        signal.signal(signal.SIGTERM, old)
        child.finish(status)
        lock.close()
    if error is not None:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    if result is None:
        print(f"{status}: interrupted; checkpoint {trainer.last_checkpoint}", file=sys.stderr)
        return 1
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "–"
    if trainer.resumed_from_step is not None:
        did = f"steps {trained[0]}–{trained[-1]}" if trained else "no steps"
        print(f"resumed from checkpoint step {trainer.resumed_from_step}; this run trained {did}")
    print(f"{status}: {result.steps} steps, {result.pairs_seen:,} pairs, {result.tokens_seen:,} tokens, "
          f"final train loss {loss}; checkpoint {result.checkpoint}")
    return 0 if status == "FINISHED" else 1
