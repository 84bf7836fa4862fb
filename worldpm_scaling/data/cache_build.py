"""The locked, resumable build of one tokenized cache (docs/tokenization.md).

Built once (`wps data tokenize SWEEP.yaml`, or rank 0 of a job while the others wait): one process
at a time under a file lock (data/cache_coord.py), in chunks that a restart keeps (resumable),
assembled by streaming and made visible by one rename (atomic). `builds.log` beside the caches
records every build.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..style import has_markdown
from .cache_coord import CacheLockError, build_lock, failure_path, launch_token, write_failure
from .cache_key import KEY_FORMAT, cache_key, is_built, source_identity
from .io import iter_pairs, pairs_file
from .tokenizer import DEFAULT_REWARD_TOKEN, Tok, encode_rows

log = logging.getLogger(__name__)

CHUNK_PAIRS = 65536
"""Pairs per resumable chunk of a build (a restart redoes at most one chunk)."""

BUILDS_LOG = "builds.log"
"""One JSON line per tokenization actually run (key, pid, host, pairs, seconds), next to the caches."""


def _count_pairs(src: Path) -> int | None:
    """Rows of a Parquet file from its footer (JSONL: unknown without a pass)."""
    if src.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(src).metadata.num_rows
        except Exception:  # noqa: BLE001 — a bad file: iter_pairs names the error when it reads it
            return None
    return None


def _me() -> str:
    """This process, unique among the hosts that share a cache folder (its temp and staging names)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _atomic_save(path: Path, *, tokens: np.ndarray, spans: np.ndarray, flags: np.ndarray) -> None:
    """Write one chunk's arrays (tokens, spans, flags) to `path` by rename: a restart finds it whole or not."""
    tmp = path.with_name(f"{path.name}.{_me()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, tokens=tokens, spans=spans, flags=flags)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_npy(path: Path, dtype, tail: tuple[int, ...], parts) -> None:
    """Stream `parts` (arrays of shape (k, *tail)) into one .npy file without holding them all."""
    parts = list(parts)
    rows = sum(len(p) for p in parts)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (rows, *tail)}
        )
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


def build_cache(
    source: str | Path,
    tok: Tok,
    *,
    batch: int = 2048,
    reward_token: str = DEFAULT_REWARD_TOKEN,
    chunk_pairs: int = CHUNK_PAIRS,
    progress: Callable[[int, int | None], None] | None = None,
    lock: bool = True,
    launch: str | None = None,
) -> Path:
    """Tokenize `source` into its cache folder, once (no-op when it exists); docs/tokenization.md.

    Resumable: finished chunks of `chunk_pairs` pairs are kept in `.build-<key>/` and a restart skips
    them. Atomic: the folder appears by rename when complete. One process builds (a file lock; `lock=False`
    only where the filesystem cannot lock and this is the only builder); another one asking meanwhile
    waits and then maps the result. A failed build or a lock that cannot be taken writes the failure
    marker (with `launch`, default launch_token()) that ends the waits of other ranks. `progress(done,
    total)` is called after each batch (total None for JSONL)."""
    src = pairs_file(source)
    root = src.parent / ".tokcache"
    key = cache_key(src, tok, reward_token)
    final = root / key
    if is_built(final):
        return final
    launch = launch_token() if launch is None else launch
    root.mkdir(parents=True, exist_ok=True)
    try:
        guard = build_lock(root / f".{key}.lock") if lock else contextlib.nullcontext()
        with guard:
            if is_built(final):
                return final
            failure_path(final).unlink(missing_ok=True)
            try:
                _build_locked(
                    src,
                    tok,
                    root,
                    key,
                    batch=batch,
                    reward_token=reward_token,
                    chunk_pairs=chunk_pairs,
                    progress=progress,
                )
            except BaseException as e:
                if isinstance(e, Exception) and is_built(final):  # another host's builder finished it
                    log.warning(
                        "%s: this build stopped (%s: %s) but another process completed the cache; using it",
                        final,
                        type(e).__name__,
                        e,
                    )
                    return final
                write_failure(final, e, launch=launch)  # ranks waiting on this build stop waiting
                raise
    except CacheLockError as e:
        write_failure(final, e, launch=launch)  # its message names the file, the errno and the way out
        raise
    return final


def _build_locked(
    src: Path, tok: Tok, root: Path, key: str, *, batch: int, reward_token: str, chunk_pairs: int, progress
) -> None:
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
        ps, cs, rs = encode_rows(buf, tok, reward_token)
        for r, p, c, j in zip(buf, ps, cs, rs):
            row = []
            for ids in (p, c, j):
                row += [pos, len(ids)]
                tokens.append(np.asarray(ids, dtype=np.int32))
                pos += len(ids)
            spans.append(row)
            flags.append(
                (
                    bool(r.get("chosen_markdown", has_markdown(r["chosen"]))),
                    bool(r.get("rejected_markdown", has_markdown(r["rejected"]))),
                )
            )
        n += len(buf)
        buf.clear()

    def seal() -> None:
        nonlocal pos, n, done
        i = len(chunks)
        path = work / f"chunk_{i:06d}.npz"
        _atomic_save(
            path,
            tokens=np.concatenate(tokens) if tokens else np.zeros(0, np.int32),
            spans=np.asarray(spans, dtype=np.int64).reshape(-1, 6),
            flags=np.asarray(flags, dtype=bool).reshape(-1, 2),
        )
        chunks.append(path)
        done += n
        tokens.clear()
        spans.clear()
        flags.clear()
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
    stage = root / f".stage-{key}.{_me()}"  # private: a lock that is not shared across hosts (Lustre
    _drop_dead_stages(root, key)  # -o localflock) may let another host build at the same time
    stage.mkdir()
    _write_npy(stage / "tokens.npy", np.int32, (), [_Part(c, "tokens", s[0]) for c, s in zip(chunks, sizes)])
    _write_npy(
        stage / "spans.npy",
        np.int64,
        (6,),
        [_Part(c, "spans", s[1], int(o)) for c, s, o in zip(chunks, sizes, offsets)],
    )
    _write_npy(stage / "flags.npy", np.bool_, (2,), [_Part(c, "flags", s[1]) for c, s in zip(chunks, sizes)])
    pairs = sum(s[1] for s in sizes)
    sp = np.load(stage / "spans.npy", mmap_mode="r")
    tpp = float((2 * sp[:, 1] + sp[:, 3] + sp[:, 5]).mean()) if pairs else 0.0
    meta = {
        "source": str(src),
        "tokenizer": tok.path,
        "reward_token": reward_token,
        "pairs": pairs,
        "tokens": int(offsets[-1]),
        "tokens_per_pair": tpp,
        "key": key,
        "key_format": KEY_FORMAT,
        "source_identity": source_identity(src),
    }  # the paths are the builder's view, for people
    del sp
    (stage / "meta.json").write_text(json.dumps(meta))
    try:
        os.rename(stage, root / key)
    except OSError:
        if not is_built(root / key):
            raise
        shutil.rmtree(stage, ignore_errors=True)  # another builder was first: its cache is the same
        return
    shutil.rmtree(work, ignore_errors=True)
    with open(root / BUILDS_LOG, "a") as f:
        f.write(
            json.dumps(
                {
                    "key": key,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "pairs": pairs,
                    "seconds": round(time.monotonic() - t0, 3),
                    "time": time.time(),
                }
            )
            + "\n"
        )


def _drop_dead_stages(root: Path, key: str) -> None:
    """Remove staging folders of this host's builders that died (their pid is gone); other hosts'
    are left alone (their liveness cannot be told from here)."""
    prefix = f".stage-{key}.{socket.gethostname()}-"
    for d in root.glob(f".stage-{key}.*"):
        pid = d.name[len(prefix) :] if d.name.startswith(prefix) else ""
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a folder of this pid is a leftover of this same build: start it afresh
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
