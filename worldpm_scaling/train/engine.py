"""How one optimizer step is executed: plain torch (one process, or DDP) or a DeepSpeed engine.

The loop is the same for both; the engine owns backward, gradient reduction, clipping and the
update. `step()` reports the global grad norm *before* clipping (train/grad_norm). With plain torch
the norm is known before the update, so a non-finite one can skip the update; DeepSpeed computes it
inside its step, so there a non-finite norm is only seen afterwards (the loop then stops the run).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch

from ..config import RunSpec
from .collate import Batch
from .model import RewardModel


def make_optimizer(model: torch.nn.Module, run: RunSpec) -> torch.optim.Optimizer:
    """Adam(W) with weight decay on matrices only (biases, norms and the head's bias are not decayed).

    `foreach=True`: one multi-tensor call per update instead of a Python loop over the parameters (torch
    picks it by itself on CUDA only); the same arithmetic in the same order, so the same bits on a CPU as
    the per-tensor loop (tests/unit/test_train_engine_foreach.py)."""
    t = run.train

    def ndim(p):  # a ZeRO-3 parameter built partitioned is an empty 1-D shard: ask for its full shape
        return len(getattr(p, "ds_shape", p.shape))

    decay = [p for p in model.parameters() if ndim(p) >= 2]
    no_decay = [p for p in model.parameters() if ndim(p) < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=t.lr, betas=t.betas, eps=t.eps, foreach=True)


class TorchEngine:
    """Single process, or DistributedDataParallel when a process group is up."""

    kind = "torch"

    def __init__(self, model: RewardModel, run: RunSpec, *, distributed: bool):
        self.model = model
        self.opt = make_optimizer(model, run)
        self.clip = run.train.grad_clip
        self.ddp = torch.nn.parallel.DistributedDataParallel(model) if distributed else None
        self._params = [p for p in model.parameters() if p.requires_grad]

    def rewards(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ddp is None:
            return self.model.rewards(b)
        r = self.ddp(b.input_ids, b.position_ids, b.reward_index, b.attention_mask, b.segments)
        return r[: b.pairs], r[b.pairs :]

    def micro_context(self, last: bool):
        """DDP all-reduces only on the last micro-batch of a step."""
        return self.ddp.no_sync() if (self.ddp is not None and not last) else contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        loss.backward()

    def step(self, lr: float, allow: Callable[[float], bool]) -> tuple[float, bool]:
        """Grad norm before clipping; the update runs only if `allow(norm)` (False = skip the batch)."""
        grads = [p.grad for p in self._params if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))) if grads else 0.0
        if not allow(norm):
            self.opt.zero_grad(set_to_none=True)
            return norm, False
        if self.clip and math.isfinite(norm) and norm > self.clip:
            torch._foreach_mul_(grads, self.clip / (norm + 1e-6))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return norm, True

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])


class DeepSpeedEngine:
    """A DeepSpeed engine (ZeRO 0–3, offload) around the same model and torch optimizer."""

    kind = "deepspeed"

    def __init__(self, model: RewardModel, run: RunSpec, *, config: dict):
        import deepspeed

        opt = make_optimizer(model, run)
        self.engine, self.opt, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
        self.model = self.engine.module
        self.accum = config["gradient_accumulation_steps"]

    def rewards(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.engine(b.input_ids, b.position_ids, b.reward_index, b.attention_mask, b.segments)
        return r[: b.pairs], r[b.pairs :]

    def micro_context(self, last: bool):
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)  # the loop already divides by the step's pairs
        if not last:
            self.engine.step()  # not a boundary: DeepSpeed only counts the micro-step

    def step(self, lr: float, allow: Callable[[float], bool]) -> tuple[float, bool]:
        for g in self.engine.optimizer.param_groups:
            g["lr"] = lr
        if not self.engine.is_gradient_accumulation_boundary():
            raise RuntimeError(
                "DeepSpeed step called off the gradient-accumulation boundary "
                f"(expected {self.accum} micro-batches a step)"
            )
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        norm = float(norm) if norm is not None else float("nan")
        allow(norm)  # too late to skip: a non-finite norm makes the loop stop the run
        return norm, True

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def save(self, folder, client_state: dict) -> None:
        """Collective: every rank writes its shard (model, optimizer partitions) under `folder`."""
        self.engine.save_checkpoint(str(folder), tag="state", client_state=client_state, save_latest=False)

    def load(self, folder) -> dict:
        """Collective: load every rank's shard; returns the client state saved with it."""
        path, client = self.engine.load_checkpoint(
            str(folder), tag="state", load_optimizer_states=True, load_lr_scheduler_states=False
        )
        if path is None:
            raise FileNotFoundError(f"{folder}: DeepSpeed found no checkpoint to load")
        return client
