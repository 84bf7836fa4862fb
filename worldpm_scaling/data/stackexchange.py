"""StackExchange dump (Posts.xml, its folder, or the site's .7z) → preference pairs.

WorldPM's training data is forum answers ranked by votes (arXiv 2505.10527 §3.1.1 and appendix A.2:
StackExchange pairs, the higher-voted answer preferred; docs/paper_constants.md). Dumps run to tens of
GB and answers arrive long after their questions, so grouping cannot be done in memory:

1. **scan** — stream the XML (expat iterparse, each row cleared once read) and append every
   question and answer to one of B bucket files chosen by question id; B grows with the dump size
   so one bucket stays around `bucket_bytes`.
2. **pair** — load one bucket at a time, group answers by question, and emit a pair for each two
   answers whose net scores (votes, +`accepted_bonus` for the accepted answer) differ by at least
   `min_gap`, the higher one chosen; at most `max_pairs_per_question`, largest gaps first.

Memory is thus one bucket plus one output batch, whatever the dump size. Each question lands in
train or test by a hash of its id, so no question is in both. Outputs appear by rename when
complete; a failure (e.g. malformed XML, reported with file and line) leaves nothing behind.

Phases: stackexchange_scan.py (1) and stackexchange_pairs.py (2); options, summary, errors and columns:
stackexchange_options.py; a fake dump for tests: stackexchange_fake.py. Their public names are
re-exported here, where users import them.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from .stackexchange_fake import write_fake_dump
from .stackexchange_options import COLUMNS, ConvertOptions, ConvertSummary, NoPairsError, StackExchangeError
from .stackexchange_pairs import PairWriter, bucket_rows, question_pairs
from .stackexchange_scan import extract_7z, find_posts, is_test, iter_rows, scan_buckets, site_name

__all__ = [
    "COLUMNS",
    "ConvertOptions",
    "ConvertSummary",
    "NoPairsError",
    "StackExchangeError",
    "convert",
    "is_test",
    "iter_rows",
    "output_paths",
    "question_pairs",
    "site_name",
    "write_fake_dump",
]

DEFAULT_OPTIONS = ConvertOptions()
"""The paper's rule with the defaults of ConvertOptions (frozen: one instance serves every call)."""


def output_paths(out: str | Path, fmt: str = "parquet") -> dict[str, Path]:
    out = Path(out)
    return {"train": out / f"train.{fmt}", "test": out / f"test.{fmt}", "summary": out / "summary.json"}


def convert(
    dump: str | Path,
    out: str | Path,
    opts: ConvertOptions = DEFAULT_OPTIONS,
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ConvertSummary:
    """Convert one site's dump into `out/train.<fmt>`, `out/test.<fmt>` and `out/summary.json`.

    `progress(bytes_read, bytes_total)` is called every 20k posts (the CLI draws a bar with it)."""
    t0 = time.perf_counter()
    dump = Path(dump)
    if not dump.exists():
        raise StackExchangeError(f"{dump}: no such dump (give Posts.xml, its folder, or the site's .7z)")
    outs = output_paths(out, opts.format)
    if not force:
        for p in outs.values():
            if p.exists():
                raise StackExchangeError(f"{p}: already exists (pass --force to replace it)")
    outdir = Path(out)
    created = not outdir.exists()
    outdir.mkdir(parents=True, exist_ok=True)
    s = ConvertSummary(dump=str(dump))
    site = opts.site or site_name(dump)
    work = Path(tempfile.mkdtemp(dir=outdir, prefix=".convert-"))
    tmps = {k: work / f"out.{k}" for k in outs}
    try:
        if dump.is_dir():
            posts = find_posts(dump)
            label = str(posts)
        elif dump.suffix.lower() == ".7z":
            posts = extract_7z(dump, work / "extract")
            label = f"{dump}[{posts.name}]"
        else:
            posts, label = dump, str(dump)
        size = posts.stat().st_size
        n_buckets = max(1, math.ceil(size / opts.bucket_bytes))
        with open(posts, "rb") as f:
            tick = (lambda n: progress(f.tell(), size)) if progress else (lambda n: None)
            buckets = scan_buckets(f, label, work, n_buckets, opts, s, tick)
        if progress:
            progress(size, size)
        writers = {"train": PairWriter(tmps["train"], opts.format), "test": PairWriter(tmps["test"], opts.format)}
        for b in buckets:
            for test, row in bucket_rows(b, site, opts, s):
                writers["test" if test else "train"].add(row, opts.batch_rows)
            b.unlink()
        for w in writers.values():
            w.close()
        s.pairs_train, s.pairs_test = writers["train"].n, writers["test"].n
        if s.pairs_train + s.pairs_test == 0:  # empty outputs would look like a converted site
            kept = "; the existing outputs are kept" if any(p.exists() for p in outs.values()) else ""
            raise NoPairsError(
                f"{dump}: yielded 0 pairs ({s.posts_read:,} posts read, {s.questions:,} questions, "
                f"{s.answers:,} answers; filtered: {', '.join(f'{k} {v:,}' for k, v in s.filtered.items()) or 'none'})"
                f"; nothing written{kept} — is it a StackExchange Posts.xml? try a smaller --min-gap"
            )
        s.seconds = time.perf_counter() - t0
        s.outputs = {k: str(v) for k, v in outs.items()}
        tmps["summary"].write_text(json.dumps({**s.to_dict(), "options": asdict(opts), "site": site}, indent=1))
        for k in ("train", "test", "summary"):  # summary last: its presence means the rest is complete
            tmps[k].replace(outs[k])
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created and not any(outdir.iterdir()):
            outdir.rmdir()  # we made it and wrote nothing: leave no trace
        raise
    shutil.rmtree(work, ignore_errors=True)
    s.seconds = time.perf_counter() - t0
    return s
