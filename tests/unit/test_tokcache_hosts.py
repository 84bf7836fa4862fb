"""Tokenize-once across hosts (issue 30, finding 6): a lock that cannot be taken ends the other ranks'
wait with a named error; the cache key does not depend on the path a host mounts the data at; a failure
marker is judged by its attempt id / launch token, never by comparing clocks of different hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import subprocess_env
from worldpm_scaling.data import CacheWaitError, build_cache, cache_folder, load_tokenizer, train_bpe, write_pairs
from worldpm_scaling.data.tokenized import CacheLockError, cache_key, launch_token, wait_for_cache

REPO = Path(__file__).resolve().parents[2]

BUILDER = textwrap.dedent("""
    import errno, fcntl, sys
    def no_locks(*a, **k):  # Lustre mounted without -o flock / NFS without lockd
        raise OSError(errno.ENOLCK, "No locks available")
    fcntl.flock = no_locks
    from worldpm_scaling.data import build_cache, load_tokenizer
    build_cache(sys.argv[1], load_tokenizer(sys.argv[2]))
""")

WAITER = textwrap.dedent("""
    import sys, time
    from worldpm_scaling.data import CacheWaitError, cache_folder, load_tokenizer, wait_for_cache
    folder = cache_folder(sys.argv[1], load_tokenizer(sys.argv[2]))
    print("waiting", flush=True)
    t0 = time.monotonic()
    try:
        wait_for_cache(folder, timeout_s=float(sys.argv[3]), poll_s=0.1)
        print("built", flush=True)
    except CacheWaitError as e:
        print(f"{time.monotonic() - t0:.2f} {e}", flush=True)
""")


def _pairs(folder: Path, n: int = 40, name: str = "train.parquet") -> Path:
    rows = [{"prompt": f"question {i}", "chosen": f"a good answer {i}", "rejected": "bad"} for i in range(n)]
    return write_pairs(pd.DataFrame(rows), folder / name)


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe([f"question {i} a good answer bad" for i in range(50)], out, vocab_size=300)
    return out


def _builds(folder: Path) -> list[dict]:
    log = folder / ".tokcache" / "builds.log"
    return [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []


# -- a lock that cannot be taken -------------------------------------------------------------------


def test_unlockable_filesystem_ends_the_wait_of_another_process(tmp_path, tok_file):
    src = _pairs(tmp_path / "data")
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(src), str(tok_file), "60"],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiter.stdout.readline().strip() == "waiting"
        b = subprocess.run(
            [sys.executable, "-c", BUILDER, str(src), str(tok_file)],
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        ended = time.monotonic()
        out, err = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
    assert b.returncode != 0 and "CacheLockError" in b.stderr and "ENOLCK" in b.stderr, b.stderr[-2000:]
    assert waiter.returncode == 0, err[-2000:]
    waited_s, _, msg = out.strip().partition(" ")
    # named: the build failed, the lock file, the errno and what to do; within seconds, not at the timeout
    assert "failed" in msg and ".lock" in msg and "ENOLCK" in msg and "-o flock" in msg and "--no-lock" in msg, msg
    assert float(waited_s) < 30 and time.monotonic() - ended < 15, out


def test_lock_error_is_named_and_no_lock_builds(tmp_path, tok_file, monkeypatch):
    import errno
    import fcntl

    src = _pairs(tmp_path / "data")
    tok = load_tokenizer(tok_file)

    def no_locks(*a, **k):
        raise OSError(errno.ENOSYS, "Function not implemented")  # Lustre mounted -o noflock

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(CacheLockError, match="ENOSYS") as e:
        build_cache(src, tok)
    assert isinstance(e.value, ValueError) and e.value.errno == errno.ENOSYS  # the CLI names it (exit 2)
    marker = json.loads((src.parent / ".tokcache" / f".{cache_key(src, tok)}.failed").read_text())
    assert "ENOSYS" in marker["error"] and ".lock" in marker["error"] and "-o flock" in marker["error"]
    folder = build_cache(src, tok, lock=False)  # `wps data tokenize --no-lock`: the one builder, no lock
    assert (folder / "meta.json").is_file() and len(_builds(src.parent)) == 1
    assert wait_for_cache(folder, timeout_s=1) == folder  # built wins over the old marker


def test_cli_no_lock_flag(tmp_path, tok_file):
    src = _pairs(tmp_path / "data")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(f"""
        name: nl
        models: [{{name: tk, hidden: 32, layers: 2, heads: 2, kv_heads: 1, intermediate: 64, vocab: 300,
                  tie_embeddings: true, max_positions: 512, rope_theta: 10000.0}}]
        data: {{source: {src}, tokenizer: {tok_file}, pairs: 40, tokens_per_pair: 64}}
        milestones: {{pairs: [40]}}
        train: {{global_batch_pairs: 8, micro_batch_pairs: 4, ctx_len: 64}}
        cluster: {{executor: local, gpu_type: cpu}}
        out_dir: {tmp_path / "out"}
    """)
    )
    hook = tmp_path / "hook"  # this filesystem refuses flock, as Lustre without -o flock does
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BUILDER.split("from worldpm_scaling")[0])
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    cmd = [sys.executable, "-m", "worldpm_scaling", "data", "tokenize", str(sweep)]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().startswith("error: "), r.stderr
    assert "cannot take the tokenize lock (flock: ENOLCK" in r.stderr, r.stderr
    r = subprocess.run(cmd + ["--no-lock"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "tokenized in" in r.stdout, r.stderr[-2000:]
    assert len(_builds(src.parent)) == 1


PAUSED_BUILDER = textwrap.dedent("""
    import fcntl, os, sys, time
    from pathlib import Path
    fcntl.flock = lambda *a: None  # a lock that holds on this host only (Lustre -o localflock)
    from worldpm_scaling.data import build_cache, load_tokenizer
    sync = Path(sys.argv[3])

    def pause(done, total):  # all chunks tokenized, not yet assembled: wait for the other host's build
        if done == total and not (sync / "ready").exists():
            (sync / "ready").touch()
            while not (sync / "go").exists():
                time.sleep(0.05)

    print(build_cache(sys.argv[1], load_tokenizer(sys.argv[2]), chunk_pairs=16, batch=8, progress=pause))
""")


def test_two_hosts_building_at_once_under_a_host_local_lock_share_one_cache(tmp_path, tok_file):
    """Host A has tokenized every chunk when host B (its lock not seen by A) builds and publishes the
    cache and removes the chunks: A then uses B's cache instead of failing its job."""
    src = _pairs(tmp_path / "data")
    sync = tmp_path / "sync"
    sync.mkdir()
    a = subprocess.Popen(
        [sys.executable, "-c", PAUSED_BUILDER, str(src), str(tok_file), str(sync)],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (sync / "ready").exists():
            assert a.poll() is None and time.monotonic() < deadline, a.stderr.read()[-2000:] if a.poll() else "slow"
            time.sleep(0.05)
        b = subprocess.run(
            [sys.executable, "-c", PAUSED_BUILDER, str(src), str(tok_file), str(sync)],
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert b.returncode == 0, b.stderr[-2000:]
        (sync / "go").touch()
        out, err = a.communicate(timeout=60)
    finally:
        a.kill()
    assert a.returncode == 0, err[-2000:]
    assert out.strip() == b.stdout.strip() and Path(out.strip()).name == cache_key(src, load_tokenizer(tok_file))
    assert json.loads((Path(out.strip()) / "meta.json").read_text())["pairs"] == 40
    cache = src.parent / ".tokcache"
    assert not list(cache.glob(".stage-*")) and not (cache / f".{Path(out.strip()).name}.failed").exists()


# -- a key that does not depend on the mount path ---------------------------------------------------


def test_same_file_at_another_path_reads_the_cache_built_at_the_first(tmp_path, tok_file):
    src = _pairs(tmp_path / "host1" / "data")
    tok = load_tokenizer(tok_file)
    built = build_cache(src, tok)
    assert len(_builds(src.parent)) == 1
    # host 2 mounts the export elsewhere: the same folder (same inodes, mtimes) under another path
    (tmp_path / "host1").rename(tmp_path / "mnt-host2")
    src2 = tmp_path / "mnt-host2" / "data" / "train.parquet"
    tok_copy = tmp_path / "tok-elsewhere" / "tokenizer.json"  # and its tokenizer at another path too
    tok_copy.parent.mkdir()
    shutil.copy(tok_file, tok_copy)
    tok2 = load_tokenizer(tok_copy)
    assert cache_key(src2, tok2) == built.name
    assert build_cache(src2, tok2) == src2.parent / ".tokcache" / built.name
    (tmp_path / "alias").symlink_to(tmp_path / "mnt-host2" / "data")  # and through a symlinked folder
    assert cache_folder(tmp_path / "alias" / "train.parquet", tok2).name == built.name
    assert len(_builds(src2.parent)) == 1  # read, not rebuilt


def test_changed_content_or_tokenizer_changes_the_key(tmp_path, tok_file):
    src = _pairs(tmp_path / "data", name="train.jsonl")
    tok = load_tokenizer(tok_file)
    key = cache_key(src, tok)
    st = src.stat()
    data = bytearray(src.read_bytes())
    i = data.index(b"good answer 7")
    data[i : i + 4] = b"GOOD"  # same size, same mtime: the content hash tells
    src.write_bytes(bytes(data))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache_key(src, tok) != key
    src.write_bytes(bytes(data).replace(b"GOOD", b"good"))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache_key(src, tok) == key  # the same content again
    other = tmp_path / "tok2.json"
    train_bpe([f"question {i} bad" for i in range(50)], other, vocab_size=280)
    assert cache_key(src, load_tokenizer(other)) != key


def test_large_file_key_samples_blocks_and_mtime(tmp_path, tok_file):
    from worldpm_scaling.data.tokenized import SAMPLE_BLOCK_BYTES, SAMPLE_BLOCKS, source_identity

    big = tmp_path / "big.jsonl"
    size = 4 * SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES
    big.write_bytes(b"x" * size)
    ident = source_identity(big)
    with open(big, "r+b") as f:  # the tail block changes (a Parquet file's footer lives there)
        f.seek(size - 10)
        f.write(b"y")
    st = big.stat()
    assert source_identity(big) != ident
    ident = source_identity(big)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a rewrite: only the mtime says so here
    assert source_identity(big) != ident


def test_old_format_caches_are_not_reused(tmp_path, tok_file):
    """A folder named by format 1's key (resolved path + size + mtime) is never read as a format-2 cache."""
    import hashlib

    src = _pairs(tmp_path / "data")
    tok = load_tokenizer(tok_file)
    st, tst = src.stat(), tok_file.stat()
    old = hashlib.sha256(
        f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}|{tok_file.resolve()}:{tst.st_size}:"
        f"{tst.st_mtime_ns}|endoftext".encode()
    ).hexdigest()[:16]
    assert cache_key(src, tok) != old


# -- failure markers judged without clocks ----------------------------------------------------------


def _marker(folder: Path, *, launch: str | None, mtime_offset_s: float, error: str = "RuntimeError: boom") -> None:
    """A failure marker as another host writes it, its mtime (and `written`) by a skewed clock."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    marker = folder.parent / f".{folder.name}.failed"
    skewed = time.time() + mtime_offset_s
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "attempt": uuid.uuid4().hex,
                "launch": launch,
                "host": "node7",
                "pid": 1,
                "error": error,
                "written": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(skewed)),
            }
        )
    )
    os.utime(tmp, (skewed, skewed))
    os.replace(tmp, marker)


def _built_later(folder: Path, after_s: float) -> threading.Thread:
    def build():
        time.sleep(after_s)
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text("{}")

    t = threading.Thread(target=build, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("offset_s", [3600.0, -3600.0, 0.0])
def test_stale_marker_of_an_earlier_launch_is_not_this_failure(tmp_path, offset_s):
    """An old failure left by another launch, whatever its writer's clock said: the wait goes on."""
    folder = tmp_path / ".tokcache" / "k"
    _marker(folder, launch="slurm:11.0:0", mtime_offset_s=offset_s)
    t = _built_later(folder, 0.5)
    assert wait_for_cache(folder, timeout_s=20, poll_s=0.05, launch="slurm:12.0:0") == folder
    t.join()
    with pytest.raises(CacheWaitError, match="not built after"):  # without a launch token: waits, too
        wait_for_cache(tmp_path / ".tokcache" / "never", timeout_s=0.3, poll_s=0.05)


@pytest.mark.parametrize("offset_s", [-3600.0, 3600.0])
def test_failure_written_while_waiting_ends_the_wait_whatever_its_clock(tmp_path, offset_s):
    """A failure written after the wait began (a new attempt id), by a host whose clock is an hour off."""
    folder = tmp_path / ".tokcache" / "k"
    _marker(folder, launch=None, mtime_offset_s=-7200)  # an older failure is there when the wait begins

    def fail():
        time.sleep(0.5)
        _marker(folder, launch=None, mtime_offset_s=offset_s, error="RuntimeError: rank 0 ran out of disk")

    threading.Thread(target=fail, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(CacheWaitError, match="out of disk.*node7|node7.*out of disk"):
        wait_for_cache(folder, timeout_s=20, poll_s=0.05)
    assert time.monotonic() - t0 < 10


def test_failure_of_this_launch_before_the_wait_began(tmp_path):
    """Rank 0 failed before this rank began to wait: its marker carries this launch's token."""
    folder = tmp_path / ".tokcache" / "k"
    _marker(folder, launch="slurm:42.0:1", mtime_offset_s=-7200)
    with pytest.raises(CacheWaitError, match="boom"):
        wait_for_cache(folder, timeout_s=20, poll_s=0.05, launch="slurm:42.0:1")
    with pytest.raises(CacheWaitError, match="not built after"):  # the same job before its requeue: old
        wait_for_cache(folder, timeout_s=0.3, poll_s=0.05, launch="slurm:42.0:2")


def test_launch_token_from_the_environment():
    assert launch_token({}) is None
    assert launch_token({"TORCHELASTIC_RUN_ID": "none"}) is None  # torchrun's default id names nothing
    a = launch_token({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0"})
    assert a == launch_token({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_RESTART_COUNT": "0"})
    assert a != launch_token({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_RESTART_COUNT": "1"})
    assert a != launch_token({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "1"})
    assert launch_token({"TORCHELASTIC_RUN_ID": "r1", "TORCHELASTIC_RESTART_COUNT": "2"}) == "elastic:r1:2"
