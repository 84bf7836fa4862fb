"""Tokenize once per (pairs file, tokenizer); jobs memory-map the result.

Cache layout (next to the pairs file, `.tokcache/<key>/`): `tokens.npy` (all ids, int32, one flat
array), `spans.npy` (per pair: prompt, chosen, rejected start/length — 6 × int64), `flags.npy`
(chosen/rejected markdown), `meta.json` (pairs, tokens, `tokens_per_pair`: usable as data.stats_file).
The key hashes the file's path, size and mtime, the tokenizer file and the reward token, so a changed
input is re-tokenized.

Built once (`wps data tokenize SWEEP.yaml`, or rank 0 of a job while the others wait): one process
at a time under a file lock, in chunks that a restart keeps (resumable), assembled by streaming and
made visible by one rename (atomic). `builds.log` beside the caches records every build. Jobs map
spans and flags read-only and read each pair's ids with one `pread`, so a rank's memory (RSS) does
not grow with the corpus: the ids live in the page cache that all ranks of a node share.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..style import has_markdown
from .io import _resolve, iter_pairs
from .pairs import TokenizedPair
from .tokenizer import DEFAULT_REWARD_TOKEN, Tok, load_tokenizer, prompt_text, reply_text

log = logging.getLogger(__name__)


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


CHUNK_PAIRS = 65536
"""Pairs per resumable chunk of a build (a restart redoes at most one chunk)."""

BUILDS_LOG = "builds.log"
"""One JSON line per tokenization actually run (key, pid, host, pairs, seconds), next to the caches."""


def cache_folder(source: str | Path, tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> Path:
    """Where the cache of (`source`, `tok`, `reward_token`) lives (built or not)."""
    src = _resolve(source)
    return src.parent / ".tokcache" / cache_key(src, tok, reward_token)


def is_built(folder: Path) -> bool:
    return (folder / "meta.json").is_file()


def _count_pairs(src: Path) -> int | None:
    """Rows of a Parquet file from its footer (JSONL: unknown without a pass)."""
    if src.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(src).metadata.num_rows
        except Exception:  # noqa: BLE001 — a bad file: iter_pairs names the error when it reads it
            return None
    return None


def _atomic_save(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_npy(path: Path, dtype, tail: tuple[int, ...], parts) -> None:
    """Stream `parts` (arrays of shape (k, *tail)) into one .npy file without holding them all."""
    parts = list(parts)
    rows = sum(len(p) for p in parts)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                "shape": (rows, *tail)})
        for load in parts:
            f.write(np.ascontiguousarray(load(), dtype=dtype).tobytes())
        f.flush()
        os.fsync(f.fileno())


class _Part:
    """A lazily loaded array of a chunk (its length known from the chunk's index)."""

    def __init__(self, file: Path, name: str, n: int, offset: int = 0):
        self.file, self.name, self.n, self.offset = file, name, n, offset

    def __len__(self) -> int:
        return self.n

    def __call__(self) -> np.ndarray:
        with np.load(self.file) as z:
            a = z[self.name]
        if self.offset:
            a = a.copy()
            a[:, 0::2] += self.offset  # chunk-local token positions → positions in tokens.npy
        return a


@contextlib.contextmanager
def _exclusive(lock: Path):
    """One builder per cache on this filesystem: a second process waits here, then finds it built."""
    import fcntl

    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_cache(source: str | Path, tok: Tok, *, batch: int = 2048, reward_token: str = DEFAULT_REWARD_TOKEN,
                chunk_pairs: int = CHUNK_PAIRS, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Tokenize `source` into its cache folder, once (no-op when it exists); docs/tokenization.md.

    Resumable: finished chunks of `chunk_pairs` pairs are kept in `.build-<key>/` and a restart skips
    them. Atomic: the folder appears by rename when complete. One process builds (a file lock);
    another one asking meanwhile waits and then maps the result. `progress(done, total)` is called
    after each batch (total None for JSONL)."""
    src = _resolve(source)
    root = src.parent / ".tokcache"
    key = cache_key(src, tok, reward_token)
    final = root / key
    if is_built(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    failed = root / f".{key}.failed"
    with _exclusive(root / f".{key}.lock"):
        if is_built(final):
            return final
        failed.unlink(missing_ok=True)
        try:
            _build_locked(src, tok, root, key, batch=batch, reward_token=reward_token, chunk_pairs=chunk_pairs,
                          progress=progress)
        except BaseException as e:
            failed.write_text(f"{type(e).__name__}: {e}\n")  # ranks waiting on this build stop waiting
            raise
    return final


def _build_locked(src: Path, tok: Tok, root: Path, key: str, *, batch: int, reward_token: str, chunk_pairs: int,
                  progress) -> None:
    t0 = time.monotonic()
    work = root / f".build-{key}"
    work.mkdir(exist_ok=True)
    chunks = sorted(work.glob("chunk_*.npz"))
    done = len(chunks) * chunk_pairs
    total = _count_pairs(src)
    if progress:
        progress(done, total)
    tokens, spans, flags, pos, n = [], [], [], 0, 0
    buf: list[dict] = []

    def flush() -> None:
        nonlocal pos, n
        ps, cs, rs = _encode_rows(buf, tok, reward_token)
        for r, p, c, j in zip(buf, ps, cs, rs):
            row = []
            for ids in (p, c, j):
                row += [pos, len(ids)]
                tokens.append(np.asarray(ids, dtype=np.int32))
                pos += len(ids)
            spans.append(row)
            flags.append((bool(r.get("chosen_markdown", has_markdown(r["chosen"]))),
                          bool(r.get("rejected_markdown", has_markdown(r["rejected"])))))
        n += len(buf)
        buf.clear()

    def seal() -> None:
        nonlocal pos, n, done
        i = len(chunks)
        path = work / f"chunk_{i:06d}.npz"
        _atomic_save(path, tokens=np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
                     spans=np.asarray(spans, dtype=np.int64).reshape(-1, 6),
                     flags=np.asarray(flags, dtype=bool).reshape(-1, 2))
        chunks.append(path)
        done += n
        tokens.clear(), spans.clear(), flags.clear()
        pos, n = 0, 0

    for r in itertools.islice(iter_pairs(src), done, None):
        buf.append(r)
        if len(buf) >= min(batch, chunk_pairs - n):
            flush()
            if n >= chunk_pairs:
                seal()
            if progress:  # after the seal: an interrupt here keeps every chunk reported done
                progress(done + n, total)
    if buf:
        flush()
    if n:
        seal()
    if progress:
        progress(done, total)
    # assemble: stream every chunk into one file per array, in a staging folder renamed into place
    sizes = []
    for c in chunks:
        with np.load(c) as z:
            sizes.append((len(z["tokens"]), len(z["spans"])))
    offsets = np.concatenate([[0], np.cumsum([s[0] for s in sizes])]).astype(np.int64)
    stage = root / f".stage-{key}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    _write_npy(stage / "tokens.npy", np.int32, (), [_Part(c, "tokens", s[0]) for c, s in zip(chunks, sizes)])
    _write_npy(stage / "spans.npy", np.int64, (6,),
               [_Part(c, "spans", s[1], int(o)) for c, s, o in zip(chunks, sizes, offsets)])
    _write_npy(stage / "flags.npy", np.bool_, (2,), [_Part(c, "flags", s[1]) for c, s in zip(chunks, sizes)])
    pairs = sum(s[1] for s in sizes)
    sp = np.load(stage / "spans.npy", mmap_mode="r")
    tpp = float((2 * sp[:, 1] + sp[:, 3] + sp[:, 5]).mean()) if pairs else 0.0
    meta = {"source": str(src), "tokenizer": tok.path, "reward_token": reward_token, "pairs": pairs,
            "tokens": int(offsets[-1]), "tokens_per_pair": tpp}
    del sp
    (stage / "meta.json").write_text(json.dumps(meta))
    os.rename(stage, root / key)
    shutil.rmtree(work, ignore_errors=True)
    with open(root / BUILDS_LOG, "a") as f:
        f.write(json.dumps({"key": key, "pid": os.getpid(), "host": socket.gethostname(), "pairs": pairs,
                            "seconds": round(time.monotonic() - t0, 3), "time": time.time()}) + "\n")


class CacheWaitError(RuntimeError):
    """A rank gave up waiting for rank 0's tokenization (it failed, or took longer than allowed)."""


def wait_for_cache(folder: Path, *, timeout_s: float = 24 * 3600.0, poll_s: float = 0.5) -> Path:
    """Wait until another process (rank 0) has built `folder`; raise if its build failed."""
    failed = folder.parent / f".{folder.name}.failed"
    t0 = time.monotonic()
    while not is_built(folder):
        # a failure marker from this build (not one left by an earlier job long ago) ends the wait
        if failed.is_file() and failed.stat().st_mtime >= time.time() - (time.monotonic() - t0) - 60:
            raise CacheWaitError(f"{folder}: rank 0's tokenization failed: {failed.read_text().strip()}")
        if time.monotonic() - t0 > timeout_s:
            raise CacheWaitError(f"{folder}: not built after {timeout_s:.0f} s; run `wps data tokenize SWEEP.yaml` "
                                 "before the job")
        time.sleep(poll_s)
    return folder


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

    def __init__(self, folder: Path, *, seed: int, rank: int = 0, world: int = 1,
                 max_pairs: int | None = None, ctx_len: int, max_prompt: int | None = None):
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
            p, c, r = ids[:s[1]], ids[s[1]:s[1] + s[3]], ids[s[1] + s[3]:]
        else:
            p, c, r = (self.tokens.read(s[j], s[j + 1]) for j in (0, 2, 4))
        p1, c = _fit(p, c, self.ctx_len, self.max_prompt)
        p2, r = _fit(p, r, self.ctx_len, self.max_prompt)
        p = p1 if len(p1) <= len(p2) else p2  # one prompt for both replies
        return TokenizedPair(prompt=p, chosen=c, rejected=r, chosen_markdown=bool(self.flags[k, 0]),
                             rejected_markdown=bool(self.flags[k, 1]))


def open_train_pairs(data, *, seed: int, rank: int = 0, world: int = 1, max_pairs: int | None = None,
                     ctx_len: int, reward_token: str = DEFAULT_REWARD_TOKEN) -> TokenizedPairs:
    """The training stream of a `config.DataSpec`: cached tokens, shuffled by `seed`, sharded by rank.

    The cache is built once: `wps data tokenize SWEEP.yaml` beforehand, else rank 0 here while the
    other ranks wait for it (they never tokenize)."""
    tok = load_tokenizer(data.tokenizer)
    folder = cache_folder(data.source, tok, reward_token)
    if not is_built(folder):
        log.warning("rank %d: %s is not tokenized yet; %s (run `wps data tokenize SWEEP.yaml` before a job "
                    "to skip this)", rank, data.source, "tokenizing it" if rank == 0 else "waiting for rank 0")
    if rank == 0:
        folder = build_cache(data.source, tok, reward_token=reward_token)
    else:
        folder = wait_for_cache(folder)
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
