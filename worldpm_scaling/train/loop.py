"""The training loop: one RunSpec in, a tracked, checkpointed, resumable BT reward model out.

Determinism is what makes resume exact: the data order is a seeded permutation and step k always
consumes pairs [k·B, (k+1)·B) of it, so a checkpoint needs only the step (plus model, optimizer and
RNG states) to continue on exactly the curve an uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import names
from ..config import RunSpec
from ..data.pairs import TokenizedPair
from ..style import style_phi
from . import checkpoint as ckpt
from .collate import collate
from .model import RewardModel, build_model, bt_loss

CPU_PEAK_FLOPS = 50e9  # assumed peak of one CPU process for MFU (see ClusterSpec.cpu_gflops)


class NonFiniteLossError(RuntimeError):
    """Loss or grad norm became NaN/Inf; the run stops with its last good checkpoint kept."""


class DataTooSmallError(ValueError):
    """The pairs file holds fewer pairs than the cell's budget."""


@dataclass
class TrainResult:
    status: str
    """FINISHED | FAILED | KILLED"""
    steps: int
    pairs_seen: int
    tokens_seen: int
    final_loss: float | None
    checkpoint: Path | None


@dataclass
class EvalData:
    name: str
    category: str
    pairs: list[TokenizedPair]


def lr_at(step: int, total: int, run: RunSpec) -> float:
    """Linear warmup to `lr`, then constant (paper) or a decay to min_lr_frac·lr."""
    t = run.train
    warm = t.warmup_steps if t.warmup_steps is not None else int(round(t.warmup_frac * total))
    if warm > 0 and step < warm:
        return t.lr * (step + 1) / warm
    if t.schedule == "constant" or total <= warm:
        return t.lr
    frac = min(1.0, (step - warm) / max(1, total - warm))
    floor = t.min_lr_frac * t.lr
    if t.schedule == "linear":
        return floor + (t.lr - floor) * (1 - frac)
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * frac))


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return rank, world


class Trainer:
    """Trains `run` and logs through `tracker_run` (the Tracker protocol's Run)."""

    def __init__(self, run: RunSpec, tracker_run, *, device: str | None = None,
                 train_pairs: Sequence[TokenizedPair] | None = None, eval_sets: list[EvalData] | None = None,
                 peak_flops: float | None = None, tokenizer=None):
        self.run = run
        self.tracker = tracker_run
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.rank, self.world = _dist()
        t = run.train
        self.micro = t.micro_batch_pairs
        per_rank = math.ceil(t.global_batch_pairs / self.world)
        self.accum = max(1, math.ceil(per_rank / self.micro))
        self.step_pairs = t.global_batch_pairs
        self.total_steps = max(1, math.ceil(run.pairs * t.epochs / self.step_pairs))
        self.row_len = t.pack_len or t.ctx_len
        self._train_pairs = train_pairs
        self._eval_sets = eval_sets
        self._tokenizer = tokenizer
        self.peak_flops = peak_flops or self._default_peak()
        self.ckpt_dir = Path(run.out_dir) / "checkpoints"
        self._stop = threading.Event()
        self._in_update = False
        self._pending_ckpt = False
        self._state_lock = threading.RLock()
        self.step = 0
        self.pairs_seen = 0
        self.tokens_seen = 0
        self.next_milestone = 0
        self.skipped = 0
        self.model: RewardModel | None = None
        self.opt = None
        self.pad_id = 0

    # -- setup ----------------------------------------------------------------------------------
    def _default_peak(self) -> float:
        if self.device.type == "cuda":
            from ..plan import GPUS

            g = GPUS.get(self.run.resources.gpu_type)
            return g.peak_flops if g else 989e12
        return CPU_PEAK_FLOPS

    def _data(self) -> Sequence[TokenizedPair]:
        if self._train_pairs is None:
            from ..data import open_train_pairs

            self._train_pairs = open_train_pairs(self.run.data, seed=self.run.seed, rank=self.rank,
                                                 world=self.world, max_pairs=self.run.pairs,
                                                 ctx_len=self.run.train.ctx_len)
        elif self.world > 1:
            self._train_pairs = [p for i, p in enumerate(self._train_pairs) if i % self.world == self.rank]
        return self._train_pairs

    def _evals(self) -> list[EvalData]:
        if self._eval_sets is None:
            from ..data import load_eval_sets, load_tokenizer

            tok = self._tokenizer or load_tokenizer(self.run.data.tokenizer)
            self.pad_id = tok.pad_id
            sets = load_eval_sets(self.run.eval, tokenizer=tok, ctx_len=self.run.train.ctx_len)
            self._eval_sets = [EvalData(s.name, s.category, s.pairs) for s in sets.values()]
        return self._eval_sets

    def _build(self) -> None:
        t = self.run.train
        self.model = build_model(self.run.model, head=t.head, seed=self.run.seed).to(self.device)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        self.opt = cls(groups, lr=t.lr, betas=t.betas, eps=t.eps)
        self.ddp = None
        if self.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model)
        self._fwd = self.ddp or self.model
        self.flops_per_token = 6 * self.run.model.params_non_embedding + \
            12 * self.run.model.layers * self.run.model.hidden * self.row_len

    def _autocast(self):
        if self.run.train.precision == "bf16" and self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    # -- checkpoints ----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                "pairs_seen": self.pairs_seen, "tokens_seen": self.tokens_seen,
                "next_milestone": self.next_milestone, "skipped": self.skipped, "cell_id": self.run.cell_id,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}

    def _save(self) -> Path | None:
        if self.rank != 0:
            return None
        with self._state_lock:
            path = ckpt.save(self._state(), self.ckpt_dir, self.step, keep=self.run.train.keep_checkpoints)
        self._last_ckpt_time = time.monotonic()
        self.last_checkpoint = path
        return path

    def checkpoint_now(self) -> Path | None:
        """Save the last completed step now (safe from a signal handler). Mid-update, the save is
        deferred to right after the optimizer step."""
        if self.model is None:
            return None
        if self._in_update:
            self._pending_ckpt = True
            return None
        return self._save()

    def request_stop(self) -> None:
        """fit() checkpoints and returns KILLED at the next step boundary."""
        self._stop.set()

    def _restore(self) -> None:
        path = ckpt.latest(self.ckpt_dir)
        if path is None:
            return
        st = ckpt.load(path)
        if st.get("cell_id") not in (None, self.run.cell_id):
            raise ckpt.CheckpointCorruptError(f"{path}: belongs to cell {st.get('cell_id')}, not {self.run.cell_id}")
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.step, self.pairs_seen, self.tokens_seen = st["step"], st["pairs_seen"], st["tokens_seen"]
        self.next_milestone, self.skipped = st["next_milestone"], st["skipped"]
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(st["rng"]["numpy"])
        random.setstate(st["rng"]["python"])
        self.last_checkpoint = path

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        out: dict[str, float] = {}
        per_cat: dict[str, list[tuple[float, float]]] = {}
        for es in self._evals():
            rc, rr = [], []
            for i in range(0, len(es.pairs), max(self.micro, 16)):
                b = collate(es.pairs[i:i + max(self.micro, 16)], self.run.train.collation, row_len=self.row_len,
                            pad_id=self.pad_id).to(self.device)
                with self._autocast():
                    r = self.model(b.input_ids, b.attention_mask, b.position_ids, b.reward_index)
                rc.append(r[:b.pairs].cpu())
                rr.append(r[b.pairs:].cpu())
            c, j = torch.cat(rc), torch.cat(rr)
            loss, acc = bt_loss(c, j).mean().item(), (c > j).float().mean().item()
            out[names.eval_loss(es.name)] = loss
            out[names.eval_acc(es.name)] = acc
            prefers = (c > j).tolist()
            ph_len = style_phi(prefers, [len(p.chosen) for p in es.pairs], [len(p.rejected) for p in es.pairs])
            ph_md = style_phi(prefers, [float(p.chosen_markdown) for p in es.pairs],
                              [float(p.rejected_markdown) for p in es.pairs])
            for feat, v in (("length", ph_len), ("markdown", ph_md)):
                if math.isfinite(v):
                    out[names.eval_phi(es.name, feat)] = v
            per_cat.setdefault(es.category, []).append((loss, acc))
        for cat, vals in per_cat.items():
            out[names.eval_loss(cat)] = float(np.mean([v[0] for v in vals]))
            out[names.eval_acc(cat)] = float(np.mean([v[1] for v in vals]))
        self.model.train()
        return out

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, progress=None) -> TrainResult:
        """Train to the pairs budget (resuming from the latest checkpoint), evaluating at milestones."""
        t = self.run.train
        data = self._data()
        if len(data) < math.ceil(self.run.pairs / self.world):
            raise DataTooSmallError(f"data.source {self.run.data.source!r} has {len(data) * self.world} pairs, "
                                    f"fewer than this cell's budget of {self.run.pairs} (data.pairs)")
        if self.model is None:
            self._build()
        self._restore()
        self._evals()
        self._last_ckpt_time = time.monotonic()
        self.last_checkpoint = getattr(self, "last_checkpoint", None)
        milestones = list(self.run.milestones)
        per_rank_step = math.ceil(self.step_pairs / self.world)
        last_loss = None
        status = "FINISHED"
        self.model.train()
        while self.step < self.total_steps:
            if self._stop.is_set():
                status = "KILLED"
                break
            t0 = time.perf_counter()
            start = (self.step * per_rank_step) % max(1, len(data))
            step_pairs = [data[(start + i) % len(data)] for i in range(min(per_rank_step, len(data)))]
            n = len(step_pairs)
            self.opt.zero_grad(set_to_none=True)
            loss_sum = acc_sum = 0.0
            real = cap = 0
            for i in range(0, n, self.micro):
                chunk = step_pairs[i:i + self.micro]
                b = collate(chunk, t.collation, row_len=self.row_len, pad_id=self.pad_id).to(self.device)
                with self._autocast():
                    r = self._fwd(b.input_ids, b.attention_mask, b.position_ids, b.reward_index)
                rc, rr = r[:b.pairs], r[b.pairs:]
                losses = bt_loss(rc, rr)
                (losses.sum() / n).backward()
                loss_sum += losses.sum().item()
                acc_sum += (rc > rr).float().sum().item()
                real += b.real_tokens
                cap += b.capacity
            params = [p for p in self.model.parameters() if p.grad is not None]
            gn = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip else float("inf")).item()
            loss = loss_sum / n
            stats = torch.tensor([loss_sum, acc_sum, n, real, cap], dtype=torch.float64)
            if self.world > 1:
                torch.distributed.all_reduce(stats)
            loss_sum, acc_sum, n_all, real_all, cap_all = stats.tolist()
            loss = loss_sum / n_all
            if not (math.isfinite(loss) and math.isfinite(gn)):
                if t.nonfinite == "skip" and self.skipped < t.max_skipped_batches:
                    self.skipped += 1
                    self.opt.zero_grad(set_to_none=True)
                    self.step += 1
                    self.pairs_seen += int(n_all)
                    continue
                raise NonFiniteLossError(
                    f"non-finite {'loss' if not math.isfinite(loss) else 'grad norm'} at step {self.step + 1} "
                    f"(loss={loss}, grad_norm={gn}); last good checkpoint: {self.last_checkpoint}")
            lr = lr_at(self.step, self.total_steps, self.run)
            for g in self.opt.param_groups:
                g["lr"] = lr
            self._in_update = True
            with self._state_lock:
                self.opt.step()
                self.step += 1
                self.pairs_seen += int(n_all)
                self.tokens_seen += int(real_all)
            self._in_update = False
            dt = time.perf_counter() - t0
            last_loss = loss
            metrics = {
                names.TRAIN_LOSS: loss, names.TRAIN_ACC: acc_sum / n_all, names.TRAIN_GRAD_NORM: gn,
                names.TRAIN_LR: lr, names.TRAIN_PAIRS_SEEN: self.pairs_seen, names.TRAIN_TOKENS_SEEN: self.tokens_seen,
                names.PERF_PAIRS_PER_S: n_all / dt, names.PERF_TOKENS_PER_S: real_all / dt,
                names.PERF_MFU: self.flops_per_token * real_all / dt / (self.peak_flops * self.world),
                names.PERF_REAL_TOKEN_FRAC: real_all / cap_all,
            }
            while self.next_milestone < len(milestones) and self.pairs_seen >= milestones[self.next_milestone]:
                self.next_milestone += 1
                metrics.update(self.evaluate())
            if self.rank == 0:
                self.tracker.log_metrics(metrics, step=self.step)
            if progress is not None:
                progress(self, metrics)
            due_steps = t.checkpoint_every_steps and self.step % t.checkpoint_every_steps == 0
            due_time = t.checkpoint_every_minutes and time.monotonic() - self._last_ckpt_time >= 60 * t.checkpoint_every_minutes
            if self._pending_ckpt or due_steps or due_time:
                self._pending_ckpt = False
                self._save()
        path = self._save() if self.rank == 0 else None
        if self.rank == 0:
            self.tracker.flush()
        return TrainResult(status=status, steps=self.step, pairs_seen=self.pairs_seen,
                           tokens_seen=self.tokens_seen, final_loss=last_loss, checkpoint=path)
