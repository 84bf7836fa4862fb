"""Tokenize once per (pairs file, tokenizer); jobs memory-map the result.

Cache layout (next to the pairs file, `.tokcache/<key>/`): `tokens.npy` (all ids, int32, one flat
array), `spans.npy` (per pair: prompt, chosen, rejected start/length — 6 × int64), `flags.npy`
(chosen/rejected markdown), `meta.json`. The key hashes the file's path, size and mtime and the
tokenizer file, so a changed input is re-tokenized; the folder appears by rename, so two jobs building
it at once cannot leave a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..style import has_markdown
from .io import _resolve, iter_pairs
from .pairs import TokenizedPair
from .tokenizer import DEFAULT_REWARD_TOKEN, Tok, load_tokenizer, prompt_text, reply_text


def _fingerprint(p: Path) -> str:
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(source: Path, tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> str:
    tp = Path(tok.path)
    tfp = _fingerprint(tp if tp.is_file() else tp / "tokenizer.json") if tp.exists() else tok.path
    return hashlib.sha256(f"{_fingerprint(source)}|{tfp}|{reward_token}".encode()).hexdigest()[:16]


def _encode_rows(rows: list[dict], tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN
                 ) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    return (tok.encode_batch([prompt_text(r["prompt"]) for r in rows]),
            tok.encode_batch([reply_text(r["chosen"], reward_token) for r in rows]),
            tok.encode_batch([reply_text(r["rejected"], reward_token) for r in rows]))


def build_cache(source: str | Path, tok: Tok, *, batch: int = 2048, reward_token: str = DEFAULT_REWARD_TOKEN) -> Path:
    """Tokenize `source` into its cache folder (no-op when it exists). Returns the folder."""
    src = _resolve(source)
    root = src.parent / ".tokcache"
    final = root / cache_key(src, tok, reward_token)
    if (final / "meta.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        chunks, spans, flags, pos = [], [], [], 0
        buf: list[dict] = []

        def flush() -> None:
            nonlocal pos
            ps, cs, rs = _encode_rows(buf, tok, reward_token)
            for r, p, c, j in zip(buf, ps, cs, rs):
                row = []
                for ids in (p, c, j):
                    row += [pos, len(ids)]
                    chunks.append(np.asarray(ids, dtype=np.int32))
                    pos += len(ids)
                spans.append(row)
                flags.append((bool(r.get("chosen_markdown", has_markdown(r["chosen"]))),
                              bool(r.get("rejected_markdown", has_markdown(r["rejected"])))))
            buf.clear()

        for r in iter_pairs(src):
            buf.append(r)
            if len(buf) >= batch:
                flush()
        if buf:
            flush()
        np.save(work / "tokens.npy", np.concatenate(chunks) if chunks else np.zeros(0, np.int32))
        np.save(work / "spans.npy", np.asarray(spans, dtype=np.int64).reshape(-1, 6))
        np.save(work / "flags.npy", np.asarray(flags, dtype=bool).reshape(-1, 2))
        (work / "meta.json").write_text(json.dumps({"source": str(src), "tokenizer": tok.path, "pairs": len(spans),
                                                   "reward_token": reward_token}))
        try:
            os.rename(work, final)
        except OSError:  # another process won the race: theirs is as good as ours
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def _fit(prompt: np.ndarray, reply: np.ndarray, ctx_len: int, max_prompt: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Make prompt + reply ≤ ctx_len: cut the prompt from the left, then the reply (keeping its end token)."""
    if max_prompt is not None and len(prompt) > max_prompt:
        prompt = prompt[-max_prompt:]
    if len(prompt) + len(reply) <= ctx_len:
        return prompt, reply
    keep_prompt = max(ctx_len // 2, ctx_len - len(reply))
    prompt = prompt[-min(len(prompt), keep_prompt):]
    room = ctx_len - len(prompt)
    if len(reply) > room:
        reply = np.concatenate([reply[: room - 1], reply[-1:]])
    return prompt, reply


class TokenizedPairs(Sequence):
    """Random access over a cache folder: a seeded permutation, truncated, sharded by rank."""

    def __init__(self, folder: Path, *, seed: int, rank: int = 0, world: int = 1,
                 max_pairs: int | None = None, ctx_len: int, max_prompt: int | None = None):
        self.tokens = np.load(folder / "tokens.npy", mmap_mode="r")
        self.spans = np.load(folder / "spans.npy")
        self.flags = np.load(folder / "flags.npy")
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
        s = self.spans[k]
        p = np.asarray(self.tokens[s[0]:s[0] + s[1]])
        c = np.asarray(self.tokens[s[2]:s[2] + s[3]])
        r = np.asarray(self.tokens[s[4]:s[4] + s[5]])
        p1, c = _fit(p, c, self.ctx_len, self.max_prompt)
        p2, r = _fit(p, r, self.ctx_len, self.max_prompt)
        p = p1 if len(p1) <= len(p2) else p2  # one prompt for both replies
        return TokenizedPair(prompt=p, chosen=c, rejected=r, chosen_markdown=bool(self.flags[k, 0]),
                             rejected_markdown=bool(self.flags[k, 1]))


def open_train_pairs(data, *, seed: int, rank: int = 0, world: int = 1, max_pairs: int | None = None,
                     ctx_len: int, reward_token: str = DEFAULT_REWARD_TOKEN) -> TokenizedPairs:
    """The training stream of a `config.DataSpec`: cached tokens, shuffled by `seed`, sharded by rank."""
    tok = load_tokenizer(data.tokenizer)
    folder = build_cache(data.source, tok, reward_token=reward_token)
    return TokenizedPairs(folder, seed=seed, rank=rank, world=world, max_pairs=max_pairs, ctx_len=ctx_len,
                          max_prompt=data.max_prompt_tokens)


def tokenized_stats(rows: list[dict], tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> dict:
    """Token lengths of a sample: `tokens_per_pair` = mean of 2·prompt + chosen + rejected."""
    ps, cs, rs = _encode_rows(rows, tok, reward_token)
    p = np.array([len(x) for x in ps])
    c = np.array([len(x) for x in cs])
    r = np.array([len(x) for x in rs])
    pct = lambda a: {f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)}  # noqa: E731
    return {"tokens_per_pair": float(np.mean(2 * p + c + r)), "sample_pairs": len(rows),
            "prompt_tokens": {"mean": float(p.mean()), **pct(p)},
            "reply_tokens": {"mean": float(np.concatenate([c, r]).mean()), **pct(np.concatenate([c, r]))},
            "tokenizer": tok.path, "reward_token": reward_token}
