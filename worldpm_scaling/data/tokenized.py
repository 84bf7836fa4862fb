"""Random access over a tokenized cache: the training stream of pairs, shuffled, truncated, sharded.

Cache layout (next to the pairs file, `.tokcache/<key>/`): `tokens.npy` (all ids, int32, one flat
array), `spans.npy` (per pair: prompt, chosen, rejected start/length — 6 × int64), `flags.npy`
(chosen/rejected markdown), `meta.json` (pairs, tokens, `tokens_per_pair`: usable as data.stats_file).
Its key is data/cache_key.py's, its build data/cache_build.py's, who builds and who waits
data/cache_coord.py's, the statistics data/token_stats.py's; their public names are re-exported here,
where users import them. Jobs map spans and flags read-only and read each pair's ids with one `pread`,
so a rank's memory (RSS) does not grow with the corpus: the ids live in the page cache that all ranks
of a node share.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .cache_build import BUILDS_LOG, CHUNK_PAIRS, build_cache
from .cache_coord import LOCK_HINT, CacheLockError, CacheWaitError, launch_token, wait_for_cache
from .cache_key import (
    KEY_FORMAT,
    SAMPLE_BLOCK_BYTES,
    SAMPLE_BLOCKS,
    TOKENIZER_FILES,
    cache_folder,
    cache_key,
    is_built,
    source_identity,
    tokenizer_identity,
)
from .pairs import TokenizedPair
from .token_stats import tokenized_stats, write_token_stats
from .tokenizer import DEFAULT_REWARD_TOKEN, load_tokenizer

__all__ = [
    "BUILDS_LOG",
    "CHUNK_PAIRS",
    "KEY_FORMAT",
    "LOCK_HINT",
    "SAMPLE_BLOCKS",
    "SAMPLE_BLOCK_BYTES",
    "TOKENIZER_FILES",
    "CacheLockError",
    "CacheWaitError",
    "TokenizedPairs",
    "build_cache",
    "cache_folder",
    "cache_key",
    "is_built",
    "launch_token",
    "open_train_pairs",
    "source_identity",
    "tokenized_stats",
    "tokenizer_identity",
    "truncate_to_context",
    "wait_for_cache",
    "write_token_stats",
]

log = logging.getLogger(__name__)


def truncate_to_context(
    prompt: np.ndarray, reply: np.ndarray, ctx_len: int, max_prompt: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Truncate to prompt + reply ≤ ctx_len: the prompt from the left (first to `max_prompt`), then the
    reply from the right, keeping its last (reward) token."""
    if max_prompt is not None and len(prompt) > max_prompt:
        prompt = prompt[-max_prompt:]
    if len(prompt) + len(reply) <= ctx_len:
        return prompt, reply
    keep_prompt = max(ctx_len // 2, ctx_len - len(reply))
    prompt = prompt[-min(len(prompt), keep_prompt) :]
    room = ctx_len - len(prompt)
    if len(reply) > room:
        reply = np.concatenate([reply[: room - 1], reply[-1:]])
    return prompt, reply


class _TokenFile:
    """`tokens.npy` read by `pread`, one call per pair (its prompt, chosen and rejected ids are
    contiguous). The ids stay in the page cache, which every rank on a node shares, and never count
    in a rank's RSS. A memory map would count them: a kernel that maps whole large folios made 86 MB of
    a 97 MB cache resident after 128 random pairs (measured), so peak RSS would follow the corpus."""

    def __init__(self, path: Path):
        head = np.load(path, mmap_mode="r")
        self.offset, self.dtype, self.n = int(head.offset), head.dtype, len(head)
        del head
        self.path = path
        self._fd: int | None = None
        self._pid = -1

    def read(self, start: int, count: int) -> np.ndarray:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        size = self.dtype.itemsize
        buf = os.pread(self._fd, count * size, self.offset + start * size)
        return np.frombuffer(buf, dtype=self.dtype)

    def __len__(self) -> int:
        return self.n

    def __getstate__(self):
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)


class TokenizedPairs(Sequence):
    """Random access over a cache folder: a seeded permutation, truncated, sharded by rank."""

    def __init__(
        self,
        folder: Path,
        *,
        seed: int,
        rank: int = 0,
        world: int = 1,
        max_pairs: int | None = None,
        ctx_len: int,
        max_prompt: int | None = None,
    ):
        # spans/flags memory-mapped, tokens read per pair: a rank's memory does not grow with the corpus
        self.tokens = _TokenFile(folder / "tokens.npy")
        self.spans = np.load(folder / "spans.npy", mmap_mode="r")
        self.flags = np.load(folder / "flags.npy", mmap_mode="r")
        n = len(self.spans)
        order = np.random.default_rng(seed).permutation(n)
        if max_pairs is not None:
            order = order[:max_pairs]
        self.order = order[rank::world]
        self.ctx_len, self.max_prompt = ctx_len, max_prompt

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        k = int(self.order[i])
        s = [int(x) for x in self.spans[k]]
        if s[2] == s[0] + s[1] and s[4] == s[2] + s[3]:  # as build_cache writes them: one contiguous run
            ids = self.tokens.read(s[0], s[1] + s[3] + s[5])
            p, c, r = ids[: s[1]], ids[s[1] : s[1] + s[3]], ids[s[1] + s[3] :]
        else:
            p, c, r = (self.tokens.read(s[j], s[j + 1]) for j in (0, 2, 4))
        p1, c = truncate_to_context(p, c, self.ctx_len, self.max_prompt)
        p2, r = truncate_to_context(p, r, self.ctx_len, self.max_prompt)
        p = p1 if len(p1) <= len(p2) else p2  # one prompt for both replies
        return TokenizedPair(
            prompt=p,
            chosen=c,
            rejected=r,
            chosen_markdown=bool(self.flags[k, 0]),
            rejected_markdown=bool(self.flags[k, 1]),
        )


def open_train_pairs(
    data,
    *,
    seed: int,
    rank: int = 0,
    world: int = 1,
    max_pairs: int | None = None,
    ctx_len: int,
    reward_token: str = DEFAULT_REWARD_TOKEN,
    launch: str | None = None,
) -> TokenizedPairs:
    """The training stream of a `config.DataSpec`: cached tokens, shuffled by `seed`, sharded by rank.

    The cache is built once: `wps data tokenize SWEEP.yaml` beforehand, else rank 0 here while the
    other ranks wait for it (they never tokenize). `launch`: an id all ranks of this launch share (e.g.
    broadcast by rank 0), so a failure of rank 0 before another rank begins to wait still ends that wait;
    default launch_token() (from SLURM / torchelastic)."""
    tok = load_tokenizer(data.tokenizer)
    folder = cache_folder(data.source, tok, reward_token)
    if not is_built(folder):
        log.warning(
            "rank %d: %s is not tokenized yet; %s (run `wps data tokenize SWEEP.yaml` before a job to skip this)",
            rank,
            data.source,
            "tokenizing it" if rank == 0 else "waiting for rank 0",
        )
    if rank == 0:
        folder = build_cache(data.source, tok, reward_token=reward_token, launch=launch)
    else:
        folder = wait_for_cache(folder, launch=launch)
    return TokenizedPairs(
        folder,
        seed=seed,
        rank=rank,
        world=world,
        max_pairs=max_pairs,
        ctx_len=ctx_len,
        max_prompt=data.max_prompt_tokens,
    )
