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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .htmlmd import has_formatting, html_to_markdown


class StackExchangeError(ValueError):
    """A dump that is missing, malformed (names file:line) or an output that already exists."""


class NoPairsError(StackExchangeError):
    """A dump that gives no pair at all (wrong file, or filters that drop everything); nothing is written."""


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    accepted_bonus: int = 1
    """Added to the accepted answer's vote score before ranking (0 = votes only)."""
    min_gap: int = 1
    """Smallest net-score difference that makes a pair (1 = any difference; equal scores never pair)."""
    max_pairs_per_question: int | None = None
    """Keep at most this many pairs per question, largest score gaps first (None = all)."""
    max_chars: int = 20_000
    """Posts whose HTML body is longer are dropped as over-long."""
    min_chars: int = 1
    """Posts whose markdown text is shorter are dropped as empty."""
    test_frac: float = 0.01
    """Share of questions (by hash of id) written to the test split."""
    site: str | None = None
    """Site name for the `site` column; None = taken from the dump's file or folder name."""
    format: str = "parquet"
    """Output format: parquet or jsonl."""
    bucket_bytes: int = 32 << 20
    """Target size of one scan bucket; bounds the memory of the pair phase."""
    batch_rows: int = 8192

    def __post_init__(self) -> None:
        if self.min_gap < 1:
            raise StackExchangeError("min_gap must be ≥ 1 (equal scores never make a pair)")
        if self.max_pairs_per_question is not None and self.max_pairs_per_question < 1:
            raise StackExchangeError("max_pairs_per_question must be ≥ 1")
        if not 0 <= self.test_frac < 1:
            raise StackExchangeError("test_frac must be within [0, 1)")
        if self.format not in ("parquet", "jsonl"):
            raise StackExchangeError(f"format must be parquet or jsonl, not {self.format!r}")


@dataclass
class ConvertSummary:
    posts_read: int = 0
    questions: int = 0
    answers: int = 0
    pairs_train: int = 0
    pairs_test: int = 0
    questions_train: int = 0
    questions_test: int = 0
    filtered: dict[str, int] = field(
        default_factory=lambda: {
            "empty": 0,
            "deleted": 0,
            "too_long": 0,
            "orphan_answer": 0,
            "other_post_type": 0,
            "questions_without_pair": 0,
        }
    )
    seconds: float = 0.0
    dump: str = ""
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def posts_per_s(self) -> float:
        return self.posts_read / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "pairs": self.pairs_train + self.pairs_test, "posts_per_s": self.posts_per_s}


# Output columns, in order (the pair schema, text level).
COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "chosen_score",
    "rejected_score",
    "question_id",
    "site",
    "chosen_id",
    "rejected_id",
    "chosen_accepted",
    "rejected_accepted",
    "question_created",
    "chosen_created",
    "rejected_created",
    "chosen_markdown",
    "rejected_markdown",
    "prompt_chars",
    "chosen_chars",
    "rejected_chars",
    "question_score",
    "title",
)


# -- locating the dump ------------------------------------------------------------------------------


def site_name(dump: Path) -> str:
    """`math.stackexchange.com.7z` → `math.stackexchange.com`; a folder gives its name."""
    p = dump.parent if dump.name.lower() == "posts.xml" else dump
    name = p.name[:-3] if p.name.endswith(".7z") else p.name
    return name or "stackexchange"


def _find_posts(folder: Path) -> Path:
    for name in ("Posts.xml", "posts.xml"):
        if (folder / name).is_file():
            return folder / name
    raise StackExchangeError(f"{folder}: folder holds no Posts.xml")


def _extract_7z(archive: Path, into: Path) -> Path:
    """Extract only Posts.xml from a site archive (on disk, not in memory)."""
    import py7zr

    try:
        with py7zr.SevenZipFile(archive, "r") as z:
            members = [n for n in z.getnames() if Path(n).name.lower() == "posts.xml"]
            if not members:
                raise StackExchangeError(f"{archive}: archive holds no Posts.xml")
            z.extract(path=into, targets=[members[0]])
    except py7zr.exceptions.Bad7zFile as e:
        raise StackExchangeError(f"{archive}: not a readable .7z archive ({e})") from None
    return into / members[0]


# -- phase 1: scan --------------------------------------------------------------------------------


def _int(v: str | None) -> int | None:
    return int(v) if v not in (None, "") else None


def iter_rows(src: BinaryIO, name: str) -> Iterator[dict[str, str]]:
    """Attribute dicts of each `<row>`, streamed; malformed XML → StackExchangeError(file:line)."""
    it = ET.iterparse(src, events=("start", "end"))
    try:
        _, root = next(it)
        for ev, el in it:
            if ev == "end" and el.tag == "row":
                yield el.attrib
                root.clear()  # drop finished rows: memory stays flat
    except ET.ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else "?"
        raise StackExchangeError(f"{name}:{line}: malformed XML ({e})") from None
    except StopIteration:
        raise StackExchangeError(f"{name}:1: empty file, expected <posts>") from None


def _bucket_of(qid: int, n: int) -> int:
    return (qid * 2654435761) % n


def is_test(qid: int, test_frac: float) -> bool:
    """Stable split: a hash of the question id, never of row order."""
    if test_frac <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(str(qid).encode(), digest_size=8).digest(), "big")
    return h / 2**64 < test_frac


def _scan(
    src: BinaryIO,
    name: str,
    work: Path,
    n_buckets: int,
    opts: ConvertOptions,
    s: ConvertSummary,
    tick: Callable[[int], None],
) -> list[Path]:
    paths = [work / f"b{i:04d}.pkl" for i in range(n_buckets)]
    files = [open(p, "wb") for p in paths]
    try:
        for attrs in iter_rows(src, name):
            s.posts_read += 1
            if s.posts_read % 20000 == 0:
                tick(s.posts_read)
            kind = attrs.get("PostTypeId")
            if kind not in ("1", "2"):
                s.filtered["other_post_type"] += 1
                continue
            if attrs.get("DeletionDate"):
                s.filtered["deleted"] += 1
                continue
            body = attrs.get("Body", "")
            if len(body) > opts.max_chars:
                s.filtered["too_long"] += 1
                continue
            pid = int(attrs["Id"])
            if kind == "1":
                s.questions += 1
                rec = (
                    1,
                    pid,
                    body,
                    attrs.get("Title", ""),
                    _int(attrs.get("AcceptedAnswerId")),
                    attrs.get("CreationDate", ""),
                    _int(attrs.get("Score")) or 0,
                )
                qid = pid
            else:
                s.answers += 1
                qid = _int(attrs.get("ParentId"))  # type: ignore[assignment]
                if qid is None:
                    s.filtered["orphan_answer"] += 1
                    continue
                rec = (2, pid, body, qid, _int(attrs.get("Score")) or 0, attrs.get("CreationDate", ""))  # type: ignore[assignment]
            pickle.dump(rec, files[_bucket_of(qid, n_buckets)], protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for f in files:
            f.close()
    return paths


# -- phase 2: pair --------------------------------------------------------------------------------


def _load(path: Path) -> Iterator[tuple]:
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def question_pairs(answers: list[dict], accepted_id: int | None, opts: ConvertOptions) -> list[tuple[dict, dict]]:
    """(chosen, rejected) answer pairs of one question — pure, so it is tested on its own.

    Net score = votes + accepted_bonus·accepted; a pair needs a gap ≥ min_gap; with a cap, the
    largest gaps are kept (ties: lower answer ids first)."""
    net = {a["id"]: a["score"] + (opts.accepted_bonus if a["id"] == accepted_id else 0) for a in answers}
    ordered = sorted(answers, key=lambda a: a["id"])
    out = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            gap = net[a["id"]] - net[b["id"]]
            if abs(gap) >= opts.min_gap:
                out.append((a, b) if gap > 0 else (b, a))
    if opts.max_pairs_per_question is not None and len(out) > opts.max_pairs_per_question:
        out.sort(
            key=lambda cr: (
                -(net[cr[0]["id"]] - net[cr[1]["id"]]),
                min(cr[0]["id"], cr[1]["id"]),
                max(cr[0]["id"], cr[1]["id"]),
            )
        )
        out = out[: opts.max_pairs_per_question]
    return out


def _bucket_rows(path: Path, site: str, opts: ConvertOptions, s: ConvertSummary) -> Iterator[tuple[bool, tuple]]:
    questions: dict[int, tuple] = {}
    answers: dict[int, list[dict]] = {}
    for rec in _load(path):
        if rec[0] == 1:
            questions[rec[1]] = rec
        else:
            _, aid, body, qid, score, created = rec
            answers.setdefault(qid, []).append({"id": aid, "html": body, "score": score, "created": created})
    for qid in sorted(answers.keys() - questions.keys()):
        s.filtered["orphan_answer"] += len(answers[qid])
    for qid in sorted(questions):
        if len(answers.get(qid, ())) < 2:  # most forum questions: no pair possible, skip the conversion
            s.filtered["questions_without_pair"] += 1
            continue
        _, _, qbody, title, accepted_id, qcreated, qscore = questions[qid]
        prompt = html_to_markdown(qbody)
        prompt = f"{title}\n\n{prompt}".strip() if title else prompt
        if len(prompt) < opts.min_chars:
            s.filtered["empty"] += 1 + len(answers.get(qid, []))
            continue
        kept = []
        for a in answers.get(qid, []):
            a["text"] = html_to_markdown(a["html"])
            if len(a["text"]) < opts.min_chars:
                s.filtered["empty"] += 1
            else:
                a["md"] = has_formatting(a["html"])  # from the tags: ~50× cheaper than a regex on the text
                kept.append(a)
        pairs = question_pairs(kept, accepted_id, opts)
        if not pairs:
            s.filtered["questions_without_pair"] += 1
            continue
        test = is_test(qid, opts.test_frac)
        if test:
            s.questions_test += 1
        else:
            s.questions_train += 1
        for c, r in pairs:
            yield (
                test,
                (  # in COLUMNS order: tuples, not dicts, are ~2× cheaper to build and write
                    prompt,
                    c["text"],
                    r["text"],
                    c["score"],
                    r["score"],
                    qid,
                    site,
                    c["id"],
                    r["id"],
                    c["id"] == accepted_id,
                    r["id"] == accepted_id,
                    qcreated,
                    c["created"],
                    r["created"],
                    c["md"],
                    r["md"],
                    len(prompt),
                    len(c["text"]),
                    len(r["text"]),
                    qscore,
                    title,
                ),
            )


class _Writer:
    """Batched, schema-fixed writer into a temp path (renamed by the caller when all went well)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.n = path, fmt, 0
        self.rows: list[tuple] = []
        self._pq = None
        self._f = open(path, "w") if fmt == "jsonl" else None

    def add(self, row: tuple, batch_rows: int) -> None:
        self.rows.append(row)
        if len(self.rows) >= batch_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.n += len(self.rows)
        if self.fmt == "jsonl":
            self._f.write("".join(json.dumps(dict(zip(COLUMNS, r))) + "\n" for r in self.rows))  # type: ignore[union-attr]
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = _schema()
            cols = list(zip(*self.rows))
            t = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, t.schema)
            self._pq.write_table(t)  # type: ignore[attr-defined]
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self._f is not None:
            self._f.close()
        elif self._pq is not None:
            self._pq.close()
        else:  # no rows at all: still a valid, empty file with the schema
            import pyarrow.parquet as pq

            pq.write_table(_schema().empty_table(), self.path)


def _schema():
    import pyarrow as pa

    types = {
        "chosen_score": pa.int64(),
        "rejected_score": pa.int64(),
        "question_id": pa.int64(),
        "chosen_id": pa.int64(),
        "rejected_id": pa.int64(),
        "question_score": pa.int64(),
        "chosen_accepted": pa.bool_(),
        "rejected_accepted": pa.bool_(),
        "chosen_markdown": pa.bool_(),
        "rejected_markdown": pa.bool_(),
        "prompt_chars": pa.int64(),
        "chosen_chars": pa.int64(),
        "rejected_chars": pa.int64(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])


# -- the whole conversion ---------------------------------------------------------------------------


def output_paths(out: str | Path, fmt: str = "parquet") -> dict[str, Path]:
    out = Path(out)
    return {"train": out / f"train.{fmt}", "test": out / f"test.{fmt}", "summary": out / "summary.json"}


def convert(
    dump: str | Path,
    out: str | Path,
    opts: ConvertOptions = ConvertOptions(),
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
            posts = _find_posts(dump)
            label = str(posts)
        elif dump.suffix.lower() == ".7z":
            posts = _extract_7z(dump, work / "extract")
            label = f"{dump}[{posts.name}]"
        else:
            posts, label = dump, str(dump)
        size = posts.stat().st_size
        n_buckets = max(1, math.ceil(size / opts.bucket_bytes))
        with open(posts, "rb") as f:
            tick = (lambda n: progress(f.tell(), size)) if progress else (lambda n: None)
            buckets = _scan(f, label, work, n_buckets, opts, s, tick)
        if progress:
            progress(size, size)
        writers = {"train": _Writer(tmps["train"], opts.format), "test": _Writer(tmps["test"], opts.format)}
        for b in buckets:
            for test, row in _bucket_rows(b, site, opts, s):
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


# -- a dump generator for tests and the benchmark --------------------------------------------------


def write_fake_dump(path: str | Path, n_posts: int, *, seed: int = 0, body_words: int = 40) -> Path:
    """A StackExchange-format Posts.xml of `n_posts` rows (questions with 0–6 answers each, some
    answers arriving far later, as in real dumps). Written by temp + rename."""
    import random
    from xml.sax.saxutils import quoteattr

    rng = random.Random(seed)
    words = [f"w{i}" for i in range(2000)]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    late: list[str] = []
    pid = 1
    written = 0
    with open(tmp, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        while written < n_posts:
            qid = pid
            pid += 1
            n_ans = rng.randint(0, 6)
            aids = list(range(pid, pid + n_ans))
            pid += n_ans
            acc = f' AcceptedAnswerId="{rng.choice(aids)}"' if aids and rng.random() < 0.5 else ""
            text = " ".join(rng.choices(words, k=body_words))
            f.write(
                f'  <row Id="{qid}" PostTypeId="1"{acc} CreationDate="2020-01-01T00:00:00.000" Score="3" '
                f'Title="question {qid}" Body={quoteattr("<p>" + text + "</p>")} />\n'
            )
            written += 1
            for aid in aids:
                body = "<p>" + " ".join(rng.choices(words, k=body_words)) + "</p>"
                if rng.random() < 0.3:
                    body += "<pre><code>x = 1\n</code></pre>"
                row = (
                    f'  <row Id="{aid}" PostTypeId="2" ParentId="{qid}" CreationDate="2020-01-02T00:00:00.000" '
                    f'Score="{rng.randint(-2, 12)}" Body={quoteattr(body)} />\n'
                )
                if rng.random() < 0.2:
                    late.append(row)  # answered years later: appears far down the file
                else:
                    f.write(row)
                written += 1
            if len(late) > 5000:
                f.writelines(late)
                late.clear()
        f.writelines(late)
        f.write("</posts>\n")
    os.replace(tmp, path)
    return path
