"""Milestone evaluation, sharded over ranks: each rank scores 1/world of every eval set, the rewards
are gathered, and every rank computes the same metrics from the whole set.

Sharding is by index: rank r scores pairs r, r+world, r+2·world, … of each set, so the shards differ
in size by at most one pair and the gathered rewards are put back in the set's own order (metrics
that depend on order, such as the A/B orientation of style Phi, see the same sequence as on one
rank). Under ZeRO-3 a forward pass is itself a collective (parameters are all-gathered layer by
layer), so every rank runs the same number of forward calls per set: a rank whose shard is shorter
scores a padding pair and drops its result.

`set_metrics` is the one place where a set's full (chosen_rewards, rejected_rewards, pairs) are
available after the gather: per-set metrics are computed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .. import names
from ..data.pairs import TokenizedPair
from ..style import style_phi
from . import distributed as dist
from .model import bt_loss
from .set_metrics import extra_metrics


@dataclass
class EvalData:
    """One eval set as the trainer needs it (the data layer's EvalSet has the same fields)."""

    name: str
    category: str
    pairs: list[TokenizedPair]


@dataclass
class SetScores:
    """A whole set's rewards after the gather, in the set's order."""

    data: EvalData
    chosen: torch.Tensor
    rejected: torch.Tensor


@dataclass
class EvalResult:
    metrics: dict[str, float]
    scores: list[SetScores]
    scored_here: dict[str, int] = field(default_factory=dict)
    """Pairs of each set this rank scored itself (padding excluded)."""


Scorer = Callable[[list[TokenizedPair]], tuple[torch.Tensor, torch.Tensor]]
"""Scores a chunk of pairs: (r_chosen, r_rejected), float32 on the CPU."""


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    return list(range(rank, n, world))


def forward_calls(n: int, world: int, chunk: int) -> int:
    """Forward calls every rank makes for a set of `n` pairs (the longest shard's chunk count)."""
    return math.ceil(math.ceil(n / world) / chunk) if n else 0


def set_metrics(s: SetScores) -> dict[str, float]:
    """BT loss, accuracy and style Phi (length, markdown) of one whole set."""
    c, j, pairs = s.chosen, s.rejected, s.data.pairs
    out = {
        names.eval_loss(s.data.name): float(bt_loss(c, j).mean()),
        names.eval_acc(s.data.name): float((c > j).float().mean()),
    }
    prefers = (c > j).tolist()
    ph_len = style_phi(prefers, [len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs])
    ph_md = style_phi(prefers, [float(p.chosen_markdown) for p in pairs], [float(p.rejected_markdown) for p in pairs])
    for feat, v in (("length", ph_len), ("markdown", ph_md)):
        if math.isfinite(v):
            out[names.eval_phi(s.data.name, feat)] = v
    out.update(extra_metrics(s.data.name, pairs, c.tolist(), j.tolist()))  # RM-Bench hard/normal/easy, best-of-K
    return out


def evaluate(sets: Sequence[EvalData], score: Scorer, *, chunk: int, rank: int = 0, world: int = 1) -> EvalResult:
    """Score this rank's shard of every set, gather, and compute per-set and per-category metrics."""
    local: list[tuple[list[int], torch.Tensor, torch.Tensor]] = []
    scored_here: dict[str, int] = {}
    for es in sets:
        n = len(es.pairs)
        mine = shard_indices(n, rank, world)
        rc, rr = [], []
        for k in range(forward_calls(n, world, chunk)):
            idx = mine[k * chunk : (k + 1) * chunk]
            c, r = score([es.pairs[i] for i in idx] if idx else [es.pairs[0]])  # padding: same forward count
            if idx:
                rc.append(c.float().cpu())
                rr.append(r.float().cpu())
        scored_here[es.name] = len(mine)
        local.append((mine, torch.cat(rc) if rc else torch.zeros(0), torch.cat(rr) if rr else torch.zeros(0)))
    gathered: list[list[tuple[list[int], torch.Tensor, torch.Tensor]]] = (
        dist.all_gather_objects(local) if world > 1 else [local]
    )
    scores: list[SetScores] = []
    for si, es in enumerate(sets):
        n = len(es.pairs)
        if not n:
            continue
        c, j = torch.empty(n), torch.empty(n)
        for per_rank in gathered:
            their_idx, their_c, their_j = per_rank[si]
            c[their_idx], j[their_idx] = their_c, their_j
        scores.append(SetScores(es, c, j))
    out: dict[str, float] = {}
    per_cat: dict[str, list[tuple[float, float]]] = {}
    for s in scores:
        m = set_metrics(s)
        out.update(m)
        per_cat.setdefault(s.data.category, []).append(
            (m[names.eval_loss(s.data.name)], m[names.eval_acc(s.data.name)])
        )
    for cat, vals in per_cat.items():
        out[names.eval_loss(cat)] = float(np.mean([v[0] for v in vals]))
        out[names.eval_acc(cat)] = float(np.mean([v[1] for v in vals]))
    return EvalResult(out, scores, scored_here)
