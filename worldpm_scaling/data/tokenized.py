"""Tokenize once per (pairs file, tokenizer); jobs memory-map the result.

Cache layout (next to the pairs file, `.tokcache/<key>/`): `tokens.npy` (all ids, int32, one flat
array), `spans.npy` (per pair: prompt, chosen, rejected start/length — 6 × int64), `flags.npy`
(chosen/rejected markdown), `meta.json` (pairs, tokens, `tokens_per_pair`: usable as data.stats_file).
The key names what is tokenized, not where a host mounts it: the pairs file's size, mtime and a hash of
sampled blocks (source_identity), the tokenizer files' content and the reward token, so every host that
reaches one file by any path (automount, symlink, bind mount) finds one cache, and a changed input is
re-tokenized.

Built once (`wps data tokenize SWEEP.yaml`, or rank 0 of a job while the others wait): one process
at a time under a file lock, in chunks that a restart keeps (resumable), assembled by streaming and
made visible by one rename (atomic). A failed build, or a lock that cannot be taken, leaves a failure
marker that ends the other ranks' wait (judged by its attempt id, never by a clock of another host).
`builds.log` beside the caches records every build. Jobs map
spans and flags read-only and read each pair's ids with one `pread`, so a rank's memory (RSS) does
not grow with the corpus: the ids live in the page cache that all ranks of a node share.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import hashlib
import itertools
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..style import has_markdown
from .io import iter_pairs, pairs_file
from .pairs import TokenizedPair
from .tokenizer import DEFAULT_REWARD_TOKEN, Tok, load_tokenizer, prompt_text, reply_text

log = logging.getLogger(__name__)


KEY_FORMAT = "tokcache-2"
"""Part of every cache key. Bump it when what a cache holds, or how pairs are rendered to text, changes:
caches of an older format are then rebuilt, never reused. (Format 1 keyed on resolved paths.)"""

SAMPLE_BLOCKS = 16
SAMPLE_BLOCK_BYTES = 64 * 1024
"""source_identity reads 16 evenly spaced 64 KiB blocks (1 MiB, head and tail included) of a pairs file:
a constant cost whatever the file's size (bench/results/tokcache_key.txt), where a full hash reads it all
on every rank of every job."""

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
"""The files of a tokenizer folder that load_tokenizer reads (a model folder's weights are not hashed)."""


def source_identity(p: Path) -> str:
    """The pairs file as every host sees it, whatever path reaches it: size, mtime (stored by the
    filesystem, so one value for all clients) and a SHA-256 of sampled blocks (of the whole file when it
    is no larger than the sample). A same-size edit outside the blocks still changes the mtime."""
    st = p.stat()
    size = st.st_size
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            span = size - SAMPLE_BLOCK_BYTES
            for i in range(SAMPLE_BLOCKS):
                h.update(os.pread(f.fileno(), SAMPLE_BLOCK_BYTES, span * i // (SAMPLE_BLOCKS - 1)))
    return f"size={size}:mtime_ns={st.st_mtime_ns}:blocks={h.hexdigest()[:32]}"


def tokenizer_identity(tok: Tok) -> str:
    """A SHA-256 of the tokenizer's files (name and content), not of their path."""
    tp = Path(tok.path)
    files = [tp] if tp.is_file() else [tp / n for n in TOKENIZER_FILES if (tp / n).is_file()] if tp.is_dir() else []
    if not files:  # a tokenizer not read from files: its vocabulary and special ids are all there is
        return f"unfiled:{tok.path}:{tok.vocab_size}:{tok.eos_id}:{tok.pad_id}"
    h = hashlib.sha256()
    for f in files:
        data = f.read_bytes()
        h.update(f"{f.name}:{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()[:32]


def cache_key(source: Path, tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> str:
    """16 hex digits naming (pairs content, tokenizer content, reward token, KEY_FORMAT): the same on
    every host, whatever path it mounts the data at."""
    ident = f"{KEY_FORMAT}|{source_identity(Path(source))}|{tokenizer_identity(tok)}|{reward_token}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _encode_rows(
    rows: list[dict], tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    return (
        tok.encode_batch([prompt_text(r["prompt"]) for r in rows]),
        tok.encode_batch([reply_text(r["chosen"], reward_token) for r in rows]),
        tok.encode_batch([reply_text(r["rejected"], reward_token) for r in rows]),
    )


CHUNK_PAIRS = 65536
"""Pairs per resumable chunk of a build (a restart redoes at most one chunk)."""

BUILDS_LOG = "builds.log"
"""One JSON line per tokenization actually run (key, pid, host, pairs, seconds), next to the caches."""


def cache_folder(source: str | Path, tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> Path:
    """Where the cache of (`source`, `tok`, `reward_token`) lives (built or not)."""
    src = pairs_file(source)
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


def _me() -> str:
    """This process, unique among the hosts that share a cache folder (its temp and staging names)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _atomic_save(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.{_me()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
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


class CacheLockError(ValueError):
    """The cache's lock file cannot be locked (a filesystem without flock: Lustre mounted without
    `-o flock`, NFS without lockd). A ValueError, so the CLI reports it as a named error."""

    def __init__(self, message: str, *, errno: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.errno, self.filename = errno, filename


LOCK_HINT = (
    "this filesystem cannot lock files: mount it with flock support (Lustre: `-o flock`; NFS: run "
    "lockd/rpc.statd), or build the cache once without the lock, from one process, with "
    "`wps data tokenize SWEEP.yaml --no-lock` before the job (its ranks then only read the cache)"
)


@contextlib.contextmanager
def _exclusive(lock: Path):
    """One builder per cache on this filesystem: a second process waits here, then finds it built.
    A lock that cannot be taken is a CacheLockError naming the file and the errno."""
    import fcntl

    try:
        f = open(lock, "a")
    except OSError as e:
        raise CacheLockError(
            f"{lock}: cannot open the tokenize lock file ({_errname(e)}: {e.strerror})",
            errno=e.errno,
            filename=str(lock),
        ) from e
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:
            raise CacheLockError(
                f"{lock}: cannot take the tokenize lock (flock: {_errname(e)}, {e.strerror}); {LOCK_HINT}",
                errno=e.errno,
                filename=str(lock),
            ) from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _errname(e: OSError) -> str:
    return _errno.errorcode.get(e.errno or 0, f"errno {e.errno}")


def launch_token(env=None) -> str | None:
    """An id that every rank of one launch shares and no earlier launch had: the SLURM job, step and
    restart count, and/or the torchelastic run id and restart count (None outside both). A failure
    marker carrying the waiter's own token is this launch's failure, however early it was written."""
    env = os.environ if env is None else env
    parts = []
    if env.get("SLURM_JOB_ID"):
        step, restarts = env.get("SLURM_STEP_ID", ""), env.get("SLURM_RESTART_COUNT", "0")
        parts.append(f"slurm:{env['SLURM_JOB_ID']}.{step}:{restarts}")
    if env.get("TORCHELASTIC_RUN_ID", "none") != "none":
        parts.append(f"elastic:{env['TORCHELASTIC_RUN_ID']}:{env.get('TORCHELASTIC_RESTART_COUNT', '0')}")
    return "|".join(parts) or None


def _failure_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.failed"


def _write_failure(folder: Path, error: BaseException, *, launch: str | None) -> None:
    """Write the failure marker that ends the waits on `folder` (best effort: the error is raised anyway).
    Its `attempt` is new for every write, so a waiter knows a new failure from an old one without a clock;
    `written` is the writing host's clock, for people only."""
    marker = _failure_path(folder)
    rec = {
        "attempt": uuid.uuid4().hex,
        "launch": launch,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "error": f"{type(error).__name__}: {error}",
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = marker.with_name(f"{marker.name}.{rec['attempt']}.tmp")
    try:
        tmp.write_text(json.dumps(rec) + "\n")
        os.replace(tmp, marker)  # atomic: a waiter reads a whole marker or none
    except OSError as e:
        log.error("%s: could not write the failure marker (%s); ranks waiting for this cache will not know", marker, e)
        tmp.unlink(missing_ok=True)


def _read_failure(folder: Path) -> bytes | None:
    try:
        return _failure_path(folder).read_bytes()
    except FileNotFoundError:
        return None


def _describe_failure(raw: bytes) -> tuple[str, str | None]:
    """(a sentence for the error, the launch token) of a marker; a marker of format 1 is plain text."""
    try:
        rec = json.loads(raw)
        where = f"on host {rec.get('host')} (pid {rec.get('pid')}, written {rec.get('written')} by its clock)"
        return f"{where}: {rec.get('error')}", rec.get("launch")
    except (ValueError, AttributeError):
        return raw.decode(errors="replace").strip(), None


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
        guard = _exclusive(root / f".{key}.lock") if lock else contextlib.nullcontext()
        with guard:
            if is_built(final):
                return final
            _failure_path(final).unlink(missing_ok=True)
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
                _write_failure(final, e, launch=launch)  # ranks waiting on this build stop waiting
                raise
    except CacheLockError as e:
        _write_failure(final, e, launch=launch)  # its message names the file, the errno and the way out
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
        ps, cs, rs = _encode_rows(buf, tok, reward_token)
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


class CacheWaitError(RuntimeError):
    """A rank gave up waiting for rank 0's tokenization (it failed, or took longer than allowed)."""


def wait_for_cache(
    folder: Path, *, timeout_s: float = 24 * 3600.0, poll_s: float = 0.5, launch: str | None = None
) -> Path:
    """Wait until another process (rank 0) has built `folder`; raise CacheWaitError if its build failed.

    A failure marker counts when it was written after this wait began (its attempt id differs from the
    one found at the start) or when it carries this launch's token (`launch`, default launch_token():
    rank 0 failed before this rank began to wait). No clock is compared: hosts' clocks may disagree."""
    launch = launch_token() if launch is None else launch
    at_start = _read_failure(folder)
    t0 = time.monotonic()
    while not is_built(folder):
        raw = _read_failure(folder)
        if raw is not None:
            what, marker_launch = _describe_failure(raw)
            if raw != at_start or (launch is not None and marker_launch == launch):
                raise CacheWaitError(
                    f"{folder}: the tokenization this rank waits for failed {what} (marker {_failure_path(folder)})"
                )
        if time.monotonic() - t0 > timeout_s:
            raise CacheWaitError(
                f"{folder}: not built after {timeout_s:.0f} s; run `wps data tokenize SWEEP.yaml` before the job"
            )
        time.sleep(poll_s)
    return folder


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


def tokenized_stats(rows: list[dict], tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> dict:
    """Token lengths of a sample: `tokens_per_pair` = mean of 2·prompt + chosen + rejected."""
    ps, cs, rs = _encode_rows(rows, tok, reward_token)
    p = np.array([len(x) for x in ps])
    c = np.array([len(x) for x in cs])
    r = np.array([len(x) for x in rs])
    pct = lambda a: {f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)}
    return {
        "tokens_per_pair": float(np.mean(2 * p + c + r)),
        "sample_pairs": len(rows),
        "prompt_tokens": {"mean": float(p.mean()), **pct(p)},
        "reply_tokens": {"mean": float(np.concatenate([c, r]).mean()), **pct(np.concatenate([c, r]))},
        "tokenizer": tok.path,
        "reward_token": reward_token,
    }


def write_token_stats(
    pairs: str | Path,
    tokenizer: str | Path,
    out: str | Path,
    *,
    reward_token: str = DEFAULT_REWARD_TOKEN,
    sample: int = 10_000,
) -> dict:
    """Measure tokens per pair on (up to `sample` of) a pairs file with a real tokenizer, in the training
    format (chat template, reward token), and write the stats JSON a sweep's `data.stats_file` reads
    (`tokens_per_pair` = mean tokens of prompt+chosen and prompt+rejected together). Returns it."""
    rows = []
    for r in iter_pairs(pairs):
        rows.append(r)
        if len(rows) >= sample:
            break
    if not rows:
        raise ValueError(f"{pairs}: no pairs to measure")
    stats = {**tokenized_stats(rows, load_tokenizer(tokenizer), reward_token), "source": str(pairs)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, indent=1))
    tmp.replace(out)
    return stats
