"""Pair files: Parquet or JSONL, written atomically, read as a stream or a frame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

REQUIRED = ("prompt", "chosen", "rejected")


class PairsFileError(ValueError):
    """A pairs file that is missing, unreadable or lacks the required columns (named)."""


def write_pairs(df, path: str | Path) -> Path:
    """Write a pairs DataFrame as Parquet (or JSONL by suffix) via temp + rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    if p.suffix == ".jsonl":
        write_jsonl(df.to_dict("records"), tmp)
    else:
        df.to_parquet(tmp, index=False)
    tmp.replace(p)
    return p


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp") if not p.name.startswith(".") else p
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, default=_plain) + "\n")
    if tmp != p:
        tmp.replace(p)
    return p


def _plain(o):
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        for name in ("train.parquet", "train.jsonl", "pairs.parquet", "pairs.jsonl"):
            if (p / name).is_file():
                return p / name
        raise PairsFileError(f"{p}: folder holds no train.parquet / train.jsonl / pairs.parquet / pairs.jsonl")
    if not p.is_file():
        raise PairsFileError(f"{p}: no such pairs file")
    return p


def read_pairs(path: str | Path, columns: list[str] | None = None):
    """The whole file as a DataFrame (checked for prompt/chosen/rejected)."""
    import pandas as pd

    p = _resolve(path)
    try:
        df = pd.read_parquet(p, columns=columns) if p.suffix != ".jsonl" else pd.read_json(p, lines=True)
    except Exception as e:  # noqa: BLE001 — any reader error means a bad file
        raise PairsFileError(f"{p}: cannot read pairs: {e}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise PairsFileError(f"{p}: missing columns {missing}")
    return df


def iter_pairs(path: str | Path, batch_rows: int = 4096) -> Iterator[dict]:
    """Stream rows without loading the file (Parquet row groups or JSONL lines)."""
    p = _resolve(path)
    if p.suffix == ".jsonl":
        with open(p) as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise PairsFileError(f"{p}:{i}: bad JSON: {e.msg}") from None
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(p).iter_batches(batch_size=batch_rows):
        yield from batch.to_pylist()
