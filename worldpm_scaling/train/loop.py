"""The training loop: one RunSpec in, a tracked, checkpointed, resumable BT reward model out.

The Trainer is the step loop over its training state (`state.py`: TrainState, RNG, the checkpoint
clock), saved and restored by `checkpointer.py`'s protocol across ranks; a step's metrics are
assembled by `step_metrics.py`. Resume is exact: see state.py.

Signals: `checkpoint_now()`, `request_stop()` and `request_preempt()` may be called from a signal
handler in the main thread while `fit()` runs. A checkpoint is always of the last *completed*
optimizer step: the model and optimizer only change inside the update, and a call that lands there is
deferred to right after. With several ranks a request on any one rank reaches all of them at the
next step boundary through one agreement collective (save / stop / preempt), so they save together.

Host syncs: the per-micro-batch statistics (loss and accuracy sums) stay on the device; the loop
reads them back once per optimizer step, after the cross-rank reduction (plus the grad norm the
engine reports): two device→host syncs a step whatever the number of micro-batches.

Distributed plumbing (device placement, the process group, agreement, teardown) lives in
`distributed.py`; milestone evaluation, sharded over ranks, in `evaluation.py`. (Logs go to this
module's logger, which `wps train` shows: which checkpoint a run resumed from, skipped batches, saves.)

One job, about 500 lines: the Trainer's methods (build, save/restore, evaluate, the step) are short
and share one mutable state (engine, counters, signal flags); split further they would hand that
state back and forth. torchtitan's trainer.py holds the same job in 1,091 lines.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import torch

from .. import faults
from ..config import RunSpec
from ..data import Tok, load_tokenizer
from ..data.pairs import TokenizedPair
from ..track.base import Run
from . import checkpoint as ckpt
from . import checkpointer, inputs
from . import distributed as dist
from .checkpointer import Engine
from .collate import collate
from .engine import DeepSpeedEngine, TorchEngine
from .evaluation import EvalData, EvalResult
from .evaluation import evaluate as sharded_evaluate
from .model import RewardModel, bt_loss, build_model
from .schedule import lr_at
from .state import CheckpointClock, TrainResult, TrainState, capture_rng, restore_rng
from .step_metrics import (
    CPU_PEAK_FLOPS,
    StepSums,
    attention_units,
    nonfinite_guard,
    step_metrics,
)

log = logging.getLogger(__name__)

EVAL_CHUNK_FACTOR = 4
"""Evaluation forwards take this many micro-batches of pairs at once (`Trainer.eval_chunk`)."""


class DataTooSmallError(ValueError):
    """The pairs file holds fewer pairs than the cell's budget (data.pairs / data.source)."""


class Trainer:
    """Trains `run` and logs through `tracker_run` (the Tracker protocol's Run).

    `train_pairs`/`eval_sets` inject data (the cell owner, launch/cell.py, opens them once; tests and
    benchmarks pass their own); by default they come from the data layer (run.data, run.eval). `engine`: "torch", "deepspeed", or None = DeepSpeed when the run
    asks for ZeRO ≥ 1 on GPUs or on more than one process, plain torch otherwise.
    """

    def __init__(
        self,
        run: RunSpec,
        tracker_run: Run,
        *,
        device: str | torch.device | None = None,
        train_pairs: Sequence[TokenizedPair] | None = None,
        eval_sets: list[EvalData] | None = None,
        peak_flops: float | None = None,
        tokenizer: Tok | None = None,
        engine: str | None = None,
        layout: str = "segments",
        train_pairs_sharded: bool = False,
    ):
        self.run = run
        self.tracker = tracker_run
        placement = dist.place(device)  # binds cuda:LOCAL_RANK before anything touches CUDA or the group
        self.device, self.rank, self.world = placement.device, placement.rank, placement.world
        self._placement, self._timeout = placement, dist.group_timeout(run)
        self._owns_group = dist.init_group(placement, self._timeout)
        t = run.train
        self.micro = run.micro_batch_pairs  # the planner's choice (Resources) under `auto`
        self.per_rank_step = math.ceil(t.global_batch_pairs / self.world)
        self.total_steps = max(1, math.ceil(run.pairs * t.epochs / t.global_batch_pairs))
        self.row_len = t.pack_len or t.ctx_len
        self.layout = layout
        self._train_pairs: Sequence[TokenizedPair] | None = train_pairs
        self._sharded = train_pairs_sharded  # True: `train_pairs` is already this rank's share
        self._eval_sets: list[EvalData] | None = eval_sets
        self._tokenizer = tokenizer
        self.peak_flops = peak_flops or self._default_peak()
        self.engine_kind = engine or self._auto_engine()
        self.ckpt_dir = Path(run.out_dir) / "checkpoints"
        self.pad_id: int = tokenizer.pad_id if tokenizer is not None else 0
        # progress (all part of a checkpoint)
        self.step = 0
        self.pairs_seen = 0
        self.tokens_seen = 0
        self.next_milestone = 0
        self.skipped = 0
        self._pending: dict[str, float] | None = None  # metrics of `self.step` not yet logged
        self._evals_due = 0  # milestone evaluations owed at `self.step`
        self._rng: dict[str, Any] | None = None  # RNG states at the last step boundary
        self._clock = CheckpointClock(t.checkpoint_every_steps, t.checkpoint_every_minutes, self.rank)
        # signal plumbing
        self._stop = threading.Event()
        self._preempt = threading.Event()
        self._in_update = False
        self._saving = False
        self._pending_ckpt = False
        self._logged_upto: int | None = None
        self.last_checkpoint: Path | None = None
        self.resumed_from_step: int | None = None  # the checkpoint step _restore continued from
        self.engine: Engine | None = None
        self.last_eval: EvalResult | None = None

    # -- setup ----------------------------------------------------------------------------------
    def _default_peak(self) -> float:
        if self.device.type == "cuda":
            from ..plan import GPUS

            g = GPUS.get(self.run.resources.gpu_type)
            return g.peak_flops if g else 989e12
        return CPU_PEAK_FLOPS

    def _auto_engine(self) -> str:
        stage = self.run.resources.zero_stage
        return "deepspeed" if stage >= 1 and (self.device.type == "cuda" or self.world > 1) else "torch"

    def _data(self) -> Sequence[TokenizedPair]:
        if self._train_pairs is None:
            self._train_pairs = inputs.train_pairs(self.run, rank=self.rank, world=self.world)
        elif self.world > 1 and not self._sharded:
            self._train_pairs = inputs.rank_share(self._train_pairs, rank=self.rank, world=self.world)
            self._sharded = True
        return self._train_pairs

    def _evals(self) -> list[EvalData]:
        if self._eval_sets is None:
            tok = self._tokenizer or load_tokenizer(self.run.data.tokenizer)
            self.pad_id = tok.pad_id
            self._eval_sets = inputs.eval_sets(self.run, tok)
        return self._eval_sets

    def _build(self) -> None:
        """Model and engine, built where they train: under ZeRO-3 already partitioned, in the training
        dtype (bf16 on GPUs); otherwise straight onto this rank's device. The plain torch engine keeps
        fp32 weights (its optimizer's master copy) and trains under bf16 autocast on GPUs."""
        t = self.run.train
        if self.engine_kind == "deepspeed":
            from .deepspeed_config import deepspeed_config

            cfg = deepspeed_config(self.run, world_size=self.world, bf16=self._bf16())
            self._ds_config = cfg
            dtype = torch.bfloat16 if self._bf16() else torch.float32
            zero3 = cfg if cfg["zero_optimization"]["stage"] == 3 else None
            if zero3 is not None:
                dist.init_deepspeed_comm(self._placement, self._timeout)
            model = build_model(
                self.run.model, head=t.head, seed=self.run.seed, dtype=dtype, device=self.device, zero3_config=zero3
            )
            engine: Engine = DeepSpeedEngine(model, self.run, config=cfg)
        elif self.engine_kind == "torch":
            model = build_model(self.run.model, head=t.head, seed=self.run.seed, device=self.device)
            engine = TorchEngine(model, self.run, distributed=self.world > 1)
        else:
            raise ValueError(f"engine must be 'torch' or 'deepspeed', got {self.engine_kind!r}")
        self.engine = engine
        if t.activation_checkpointing and self.device.type == "cuda":
            engine.model.backbone.gradient_checkpointing_enable()

    @property
    def model(self) -> RewardModel | None:
        return self.engine.model if self.engine is not None else None

    def _engine(self) -> Engine:
        """The engine, once built (fit() builds it first; a call before that is a bug, named)."""
        if self.engine is None:
            raise RuntimeError("the Trainer's engine is not built yet: call fit() first")
        return self.engine

    def _bf16(self) -> bool:
        return self.run.train.precision == "bf16" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    def _autocast(self) -> ContextManager[Any]:
        if self._bf16() and self.engine_kind == "torch":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    # -- checkpoints (the protocol across ranks: checkpointer.py) --------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The training state (TrainState's fields + the cell id) as a checkpoint records it beside the
        engine's: where the run is, and what it still owes the tracker."""
        st = TrainState(
            step=self.step,
            pairs_seen=self.pairs_seen,
            tokens_seen=self.tokens_seen,
            next_milestone=self.next_milestone,
            skipped=self.skipped,
            pending_metrics=self._pending,
            evals_due=self._evals_due,
            logged_upto=self._logged_upto,
            rng=self._rng or capture_rng(),
        )
        return {**st.state_dict(), "cell_id": self.run.cell_id}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Put back a `state_dict()` (from a checkpoint): counters, owed metrics and RNG states."""
        st = TrainState.from_state_dict(sd)
        self.step, self.pairs_seen, self.tokens_seen = st.step, st.pairs_seen, st.tokens_seen
        self.next_milestone, self.skipped = st.next_milestone, st.skipped
        self._pending, self._evals_due = st.pending_metrics, st.evals_due
        if st.rng is None:
            raise ckpt.CheckpointCorruptError(f"checkpoint of step {st.step} holds no RNG states")
        restore_rng(st.rng)
        self._rng = st.rng

    def _flush_tracker(self, from_signal: bool = False) -> None:
        """Make every logged point durable (server or spool) before a checkpoint records it as logged:
        otherwise a kill after the save loses the points the resumed run then refuses to log again."""
        if self.rank != 0:
            return
        flush = getattr(self.tracker, "flush_from_signal", None) if from_signal else None
        (flush or self.tracker.flush)()

    def _save(self, from_signal: bool = False) -> Path | None:
        """Plain torch: rank 0 writes one verified file. DeepSpeed: a collective sharded save."""
        if self.engine is None or self._saving:  # a signal landed inside a save of this very state
            return None
        self._saving = True
        try:
            self._flush_tracker(from_signal)
            path = checkpointer.save(
                self.engine,
                self.state_dict(),
                self.ckpt_dir,
                self.step,
                rank=self.rank,
                world=self.world,
                keep=self.run.train.keep_checkpoints,
            )
            log.info("rank %d: checkpoint of step %d written (%s)", self.rank, self.step, path)
        finally:
            self._saving = False
        self._clock.restart()
        self.last_checkpoint = path
        return path

    def checkpoint_now(self) -> Path | None:
        """Save the last completed step now (safe from a signal handler in the main thread).

        Mid-update (or mid-save) the save is deferred to right after it and None is returned. Across
        several processes a save is collective, so it is always deferred to the next step boundary,
        where the ranks agree on it (use `request_preempt()` there to also stop after it)."""
        if self.engine is None:
            return None
        if self._in_update or self._saving or self.world > 1:
            self._pending_ckpt = True
            return None
        return self._save(from_signal=True)

    def request_stop(self) -> None:
        """fit() checkpoints and returns KILLED at the next step boundary."""
        self._stop.set()

    def request_preempt(self) -> None:
        """fit() checkpoints at the next step boundary (every rank, the same step) and returns PREEMPTED:
        the caller requeues the job. Safe from a signal handler; a request on any rank suffices."""
        self._preempt.set()

    def _restore(self) -> None:
        """Resume from the checkpoint rank 0 picks (checkpointer.restore: every rank loads that step, or
        all raise one error)."""
        got = checkpointer.restore(
            self._engine(), self.ckpt_dir, rank=self.rank, world=self.world, cell_id=self.run.cell_id
        )
        if got is None:
            return
        path, st = got
        self.load_state_dict(st)
        self.last_checkpoint = path
        self.resumed_from_step = self.step
        if self.rank == 0:  # which checkpoint a restart continued from: the resume tests read it
            self.tracker.set_tags({"resumed_from_step": str(self.step)})
        log.info("resumed from %s (step %d, %d pairs)", path, self.step, self.pairs_seen)

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, pairs: list[TokenizedPair]) -> tuple[torch.Tensor, torch.Tensor]:
        b = collate(pairs, self.run.train.collation, row_len=self.row_len, pad_id=self.pad_id, layout=self.layout).to(
            self.device
        )
        # plain torch: inference mode (no version counters, no view tracking; the same values as
        # no_grad). DeepSpeed's ZeRO-3 hooks update parameters in place during a forward: no_grad there
        engine = self._engine()
        with self._autocast(), torch.inference_mode() if self.engine_kind == "torch" else contextlib.nullcontext():
            c, r = engine.rewards(b) if isinstance(engine, DeepSpeedEngine) else engine.model.rewards(b)
        return c.float().cpu(), r.float().cpu()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """BT loss/accuracy per eval set and per category, and style Phi per set; each rank scores
        1/world of every set (evaluation.py). The whole result is kept in `last_eval`."""
        model = self._engine().model
        was_training = model.training
        model.eval()
        try:
            self.last_eval = sharded_evaluate(
                self._evals(), self._score, chunk=self.eval_chunk, rank=self.rank, world=self.world
            )
        finally:
            model.train(was_training)
        return self.last_eval.metrics

    @property
    def eval_chunk(self) -> int:
        """Pairs per evaluation forward: EVAL_CHUNK_FACTOR micro-batches (at least 16). A forward without
        grad keeps one layer's activations, not every layer's as a training micro-batch does, so it fits
        where the micro-batch fits; fewer calls is less per-call overhead at tiny sizes (and fewer
        parameter all-gathers under ZeRO-3). A pair's reward does not depend on its chunk (each sequence
        attends only to itself; tests/unit/test_train_loop.py checks the metrics against chunks of 1)."""
        return max(EVAL_CHUNK_FACTOR * self.micro, 16)

    # -- the loop -------------------------------------------------------------------------------
    def _already_logged(self, step: int) -> bool:
        return self._logged_upto is not None and step <= self._logged_upto

    def _flush_pending(self) -> None:
        """Evaluate owed milestones and log the metrics of the current step (once, ever)."""
        if self._pending is None:
            return
        metrics = dict(self._pending)
        if not self._already_logged(self.step):
            if self._evals_due:
                metrics.update(self.evaluate())
            if self.rank == 0:
                self.tracker.log_metrics(metrics, step=self.step)
            self._logged_upto = self.step
        self._pending, self._evals_due = None, 0

    def _step_pairs(self, data: Sequence[TokenizedPair]) -> list[TokenizedPair]:
        start = self.step * self.per_rank_step
        return [data[(start + i) % len(data)] for i in range(self.per_rank_step)]

    def fit(self, progress: Callable[["Trainer", dict], None] | None = None) -> TrainResult:
        """Train to the pairs budget (resuming from the latest checkpoint), evaluating at milestones."""
        data = self._data()
        need = math.ceil(self.run.pairs / self.world)
        if len(data) < need:
            raise DataTooSmallError(
                f"data.source {self.run.data.source!r} has {len(data) * self.world} pairs, "
                f"fewer than this cell's budget of {self.run.pairs} (data.pairs)"
            )
        if self.engine is None:
            self._build()
            self._restore()
        self._evals()
        last = self.tracker.last_step() if self.rank == 0 else None
        self._logged_upto = max(x for x in (last, self._logged_upto, -1) if x is not None)
        # rank 0 holds the tracker; all ranks must skip (or run) the same evaluations
        self._logged_upto = dist.broadcast_int(self._logged_upto, src=0)
        self._clock.restart()
        self._flush_pending()  # a checkpoint taken between an update and its logging
        self._rng = capture_rng()
        milestones = list(self.run.milestones)
        self._engine().model.train()
        try:
            status, last_loss = self._train_steps(data, milestones, progress)
        except BaseException:
            self.close(clean=False)
            raise
        path = self._save() if self.last_checkpoint_step() != self.step else self.last_checkpoint
        if self.rank == 0:
            self.tracker.flush()
        self.close()
        return TrainResult(
            status=status,
            steps=self.step,
            pairs_seen=self.pairs_seen,
            tokens_seen=self.tokens_seen,
            final_loss=last_loss,
            checkpoint=path,
        )

    def close(self, clean: bool = True) -> None:
        """Tear down the engine and the process group this Trainer created (distributed.shutdown);
        fit() calls it on its way out, so every rank leaves its collectives before the process exits."""
        if self._owns_group:  # (a group of one that DeepSpeed started itself stays: it caches it globally)
            dist.shutdown(getattr(self.engine, "engine", None), clean=clean)
            self._owns_group = False

    def _micro_steps(self, pairs: list[TokenizedPair]) -> tuple[torch.Tensor, list[int]]:
        """Forward/backward over the step's micro-batches. Returns the (loss sum, correct) tensor, on
        the device and not yet read back, and the host-side counts (pairs, real, capacity, attn)."""
        t, n, engine = self.run.train, len(pairs), self._engine()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss sum, correct pairs
        counts = [0, 0, 0, 0]
        chunks = [pairs[i : i + self.micro] for i in range(0, n, self.micro)]
        for k, chunk in enumerate(chunks):
            last_micro = k == len(chunks) - 1
            b = collate(chunk, t.collation, row_len=self.row_len, pad_id=self.pad_id, layout=self.layout).to(
                self.device
            )
            with engine.micro_context(last_micro), self._autocast():
                rc, rr = engine.rewards(b)
                losses = bt_loss(rc.float(), rr.float())
                engine.backward(losses.sum() / n, last_micro)
            sums += torch.stack([losses.detach().sum().double(), (rc > rr).sum().double()])
            for i, v in enumerate((b.pairs, b.real_tokens, b.capacity, attention_units(b))):
                counts[i] += int(v)
        return sums, counts

    def _train_steps(
        self,
        data: Sequence[TokenizedPair],
        milestones: list[int],
        progress: Callable[[Trainer, dict[str, float]], None] | None,
    ) -> tuple[str, float | None]:
        t, engine = self.run.train, self._engine()
        last_loss = None
        status = "FINISHED"
        while self.step < self.total_steps:
            if self._stop.is_set() and self.world == 1:  # several ranks stop together, below
                status = "KILLED"
                break
            t0 = time.perf_counter()
            pairs = self._step_pairs(data)
            sums, counts = self._micro_steps(pairs)
            stats = torch.cat([sums, torch.tensor(counts, dtype=torch.float64).to(self.device)])
            dist.all_reduce_sum(stats)
            sums_all = StepSums(*stats.tolist())  # the step's one read-back
            loss = sums_all.loss

            allow = nonfinite_guard(
                t, loss=loss, step=self.step, skipped=self.skipped, last_checkpoint=self.last_checkpoint
            )
            lr = lr_at(self.step, self.total_steps, t)
            self._in_update = True
            try:
                gn, applied = engine.step(lr, allow)
                self.step += 1
                self.pairs_seen += int(sums_all.pairs)
                if not applied:
                    self.skipped += 1
                    self._rng = capture_rng()
                else:
                    self.tokens_seen += int(sums_all.real_tokens)
                    last_loss = loss
                    self._pending = step_metrics(
                        self.run,
                        sums_all,
                        grad_norm=gn,
                        lr=lr,
                        pairs_seen=self.pairs_seen,
                        tokens_seen=self.tokens_seen,
                        seconds=time.perf_counter() - t0,
                        peak_flops=self.peak_flops,
                        world=self.world,
                    )

                    while self.next_milestone < len(milestones) and self.pairs_seen >= milestones[self.next_milestone]:
                        self.next_milestone += 1
                        self._evals_due += 1
                    self._rng = capture_rng()
            finally:
                self._in_update = False
            faults.point("train.after_update")
            if self._pending_ckpt and self.world == 1:
                self._pending_ckpt = False
                self._save()
            metrics = self._pending or {}
            self._flush_pending()
            faults.point("train.after_log")
            if progress is not None and metrics:
                progress(self, metrics)
            # the clock's time half is rank 0's alone (agreed here); every rank restarts it at each save
            due = self._clock.due(self.step)
            preempt_here = self._preempt.is_set()
            save_now, stop_now, preempt = dist.agree(
                self._pending_ckpt or due or preempt_here, self._stop.is_set(), preempt_here
            )
            if save_now:
                self._pending_ckpt = False
                if self.last_checkpoint_step() != self.step:  # a signal's save of this step already ran
                    self._save()
            if preempt:
                log.warning("rank %d: preemption requested; saved step %d, stopping for requeue", self.rank, self.step)
                status = "PREEMPTED"
                break
            if stop_now and self.world > 1:
                status = "KILLED"
                break
        return status, last_loss

    def last_checkpoint_step(self) -> int | None:
        return ckpt.step_of(self.last_checkpoint) if self.last_checkpoint is not None else None
