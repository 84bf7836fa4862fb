"""What does the tokenize-once cache key cost on a large pairs file? (issue 30, finding 6)

The key must not depend on the path a host mounts the data at, so it names the file's content. Side by
side on one file of --gib GiB (default 4), each computed 3 times, warm (file in the page cache) and cold
(evicted with posix_fadvise(DONTNEED) before each run, as on a node that has not read it yet):
- format 1 (old): the resolved path, size and mtime (path-dependent; no reads);
- format 2 (now, data.tokenized.source_identity): size, mtime and SHA-256 of 16 × 64 KiB blocks;
- a full SHA-256 of the file (the alternative: reads the whole file, on every rank of every job);
and tokenizer_identity of an 11 MiB tokenizer file (Qwen2's tokenizer.json + vocab.json + merges.txt).
Writes bench/results/tokcache_key.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from worldpm_scaling.data.tokenized import source_identity, tokenizer_identity


def old_fingerprint(p: Path) -> str:
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def full_sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evict(p: Path) -> None:
    with open(p, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def timed(fn, p: Path, cold: bool, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        if cold:
            evict(p)
        t = time.perf_counter()
        fn(p)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=4.0, help="size of the test file in GiB (default 4)")
    ap.add_argument("--dir", default=None, help="folder for the test file (default: the system temp folder)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "tokcache_key.txt"))
    args = ap.parse_args()
    size = int(args.gib * (1 << 30))
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        p = Path(d) / "train.parquet"
        block = os.urandom(1 << 20)
        with open(p, "wb") as f:
            for i in range(size >> 20):
                f.write(block[i % 4096 :] + block[: i % 4096])  # every MiB differs
            f.flush()
            os.fsync(f.fileno())
        rows = []
        for name, fn in (
            ("format 1: path+size+mtime", old_fingerprint),
            ("format 2: size+mtime+16x64KiB", source_identity),
            ("full SHA-256 of the file", full_sha256),
        ):
            for cold in (False, True):
                if not cold:
                    fn(p)  # warm the page cache for the warm runs
                ts = timed(fn, p, cold, args.repeats)
                rows.append(
                    f"{name:32s} {'cold' if cold else 'warm'}: "
                    f"median {statistics.median(ts) * 1e3:10.2f} ms  (runs: "
                    + ", ".join(f"{t * 1e3:.2f}" for t in ts)
                    + ")"
                )
        tj = Path(d) / "tokenizer.json"
        tj.write_bytes(os.urandom(11 << 20))
        tok = type("Tok", (), {"path": str(tj)})()
        ts = timed(lambda _: tokenizer_identity(tok), tj, False, args.repeats)
        rows.append(f"{'tokenizer_identity, 11 MiB':32s} warm: median {statistics.median(ts) * 1e3:10.2f} ms")
    text = (
        "\n".join(
            [
                f"tokcache_key: one {size / (1 << 30):.2f} GiB file, {args.repeats} runs each",
                f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs "
                "(shared with other work: timings are noisy)",
                *rows,
            ]
        )
        + "\n"
    )
    print(text, end="")
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
