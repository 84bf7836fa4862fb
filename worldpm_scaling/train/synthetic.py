"""Generated token pairs and RunSpecs without a sweep file: for the benchmark and the tests.

`synthetic_pairs` draws random token ids (no tokenizer, no files); with `marker` set, every chosen
reply contains that token and no rejected one does — a planted preference a reward model must learn.
`make_run` builds the RunSpec the planner would, for an explicit model shape and train settings.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import DataSpec, EvalSpec, Resources, RunSpec, TrackingSpec, TrainSpec, cell_id_of, to_plain
from ..data.pairs import TokenizedPair
from ..models import ModelShape


def synthetic_pairs(
    n: int,
    *,
    vocab: int,
    seed: int = 0,
    prompt_len: tuple[int, int] = (4, 12),
    reply_len: tuple[int, int] = (4, 16),
    marker: int | None = None,
    eos: int = 2,
) -> list[TokenizedPair]:
    """`n` pairs of random ids in [3, vocab); lengths uniform in the given inclusive ranges.

    Replies end with `eos` (the token the reward head reads). Ids 0–2 are reserved (pad, bos, eos);
    `marker`, when given, is placed at a random position of each chosen reply and removed from
    rejected ones.
    """
    rng = np.random.default_rng(seed)

    def ids(lo: int, hi: int) -> np.ndarray:
        x = rng.integers(3, vocab, int(rng.integers(lo, hi + 1)), dtype=np.int64).astype(np.int32)
        if marker is not None:
            x[x == marker] = marker + 1 if marker + 1 < vocab else 3
        return x

    out = []
    for _ in range(n):
        p = ids(*prompt_len)
        c = np.append(ids(reply_len[0] - 1, reply_len[1] - 1), eos).astype(np.int32)
        r = np.append(ids(reply_len[0] - 1, reply_len[1] - 1), eos).astype(np.int32)
        if marker is not None:
            c[int(rng.integers(0, len(c) - 1))] = marker
        out.append(
            TokenizedPair(
                prompt=p,
                chosen=c,
                rejected=r,
                chosen_markdown=bool(rng.random() < 0.5),
                rejected_markdown=bool(rng.random() < 0.5),
            )
        )
    return out


def make_run(
    model: ModelShape,
    *,
    pairs: int,
    out_dir: str,
    milestones: tuple[int, ...] | None = None,
    seed: int = 0,
    world: int = 1,
    zero_stage: int = 0,
    sweep: str = "synthetic",
    **train,
) -> RunSpec:
    """A RunSpec for `model` trained on `pairs` pairs with TrainSpec(**train), like the planner's."""
    t = TrainSpec(**{"zero_stage": zero_stage, "precision": "fp32", "checkpoint_every_minutes": None, **train})
    data = DataSpec(source="synthetic", pairs=pairs, tokens_per_pair=1.0)
    ev = EvalSpec(sets=())
    ms = tuple(milestones) if milestones is not None else (pairs,)
    identity = {
        "sweep": sweep,
        "model": to_plain(model),
        "data": to_plain(data),
        "pairs": pairs,
        "milestones": list(ms),
        "train": to_plain(t),
        "eval": to_plain(ev),
        "seed": seed,
    }
    if isinstance(t.micro_batch_pairs, str):
        raise ValueError("make_run: train.micro_batch_pairs must be a number here (only the planner resolves 'auto')")
    accum = max(1, -(-t.global_batch_pairs // (world * t.micro_batch_pairs)))
    res = Resources(
        gpu_type="cpu",
        nodes=1,
        gpus_per_node=world,
        cpus_per_task=1,
        mem_gb_per_task=None,
        time_limit_minutes=60,
        zero_stage=zero_stage,
        grad_accum=accum,
    )
    return RunSpec(
        sweep=sweep,
        cell_id=cell_id_of(identity),
        index=0,
        model=model,
        data=data,
        pairs=pairs,
        milestones=ms,
        train=t,
        eval=ev,
        seed=seed,
        tracking=TrackingSpec(backend="memory"),
        resources=res,
        out_dir=str(out_dir),
    )


def with_train(run: RunSpec, **train) -> RunSpec:
    """`run` with some TrainSpec fields changed (cell id recomputed)."""
    t = dataclasses.replace(run.train, **train)
    r = dataclasses.replace(run, train=t)
    return dataclasses.replace(r, cell_id=cell_id_of(r.identity()))
