"""Phase 1 of a StackExchange conversion: find Posts.xml and scan it into buckets by question id.

The XML is streamed (expat iterparse, each row cleared once read) and every question and answer is
appended to one of B bucket files chosen by question id, so phase 2 (stackexchange_pairs.py) can group
answers with their questions one bucket at a time, whatever the dump's size.
"""

from __future__ import annotations

import hashlib
import pickle
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .stackexchange_options import ConvertOptions, ConvertSummary, StackExchangeError

# -- locating the dump ------------------------------------------------------------------------------


def site_name(dump: Path) -> str:
    """`math.stackexchange.com.7z` → `math.stackexchange.com`; a folder gives its name."""
    p = dump.parent if dump.name.lower() == "posts.xml" else dump
    name = p.name[:-3] if p.name.endswith(".7z") else p.name
    return name or "stackexchange"


def find_posts(folder: Path) -> Path:
    for name in ("Posts.xml", "posts.xml"):
        if (folder / name).is_file():
            return folder / name
    raise StackExchangeError(f"{folder}: folder holds no Posts.xml")


def extract_7z(archive: Path, into: Path) -> Path:
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


def scan_buckets(
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
            rec: tuple[object, ...]
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
                parent = _int(attrs.get("ParentId"))
                if parent is None:
                    s.filtered["orphan_answer"] += 1
                    continue
                qid = parent
                rec = (2, pid, body, qid, _int(attrs.get("Score")) or 0, attrs.get("CreationDate", ""))
            pickle.dump(rec, files[_bucket_of(qid, n_buckets)], protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for f in files:
            f.close()
    return paths
