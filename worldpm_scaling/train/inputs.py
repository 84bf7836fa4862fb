"""What a cell trains and evaluates on, opened from its RunSpec: this rank's share of the training
pairs and the eval sets (the cell's owner, launch/cell.py, opens them once; the Trainer opens them
itself only when none were passed, as in tests and benchmarks)."""

from __future__ import annotations

from typing import Sequence

from ..config import RunSpec
from ..data import Tok, load_eval_sets, open_train_pairs
from ..data.pairs import TokenizedPair
from .evaluation import EvalData


def train_pairs(run: RunSpec, *, rank: int, world: int) -> Sequence[TokenizedPair]:
    """This rank's share of the seeded training order (pair i goes to rank i mod world)."""
    return open_train_pairs(
        run.data,
        seed=run.seed,
        rank=rank,
        world=world,
        max_pairs=run.pairs,
        ctx_len=run.train.ctx_len,
        reward_token=run.train.reward_token,
    )


def rank_share(pairs: Sequence[TokenizedPair], *, rank: int, world: int) -> list[TokenizedPair]:
    """The share of an injected full list that `train_pairs` would have opened for this rank."""
    return [p for i, p in enumerate(pairs) if i % world == rank]


def eval_sets(run: RunSpec, tok: Tok) -> list[EvalData]:
    """The run's eval sets, tokenized as training is (run.eval)."""
    sets = load_eval_sets(run.eval, tokenizer=tok, ctx_len=run.train.ctx_len, reward_token=run.train.reward_token)
    return [EvalData(s.name, s.category, s.pairs) for s in sets.values()]
