"""Pair files: Parquet or JSONL, written atomically, read as a stream or a frame, checked row by row.

Schema (data/pairs.py): `prompt`, `chosen`, `rejected`, optionally `chosen_markdown`/`rejected_markdown`
and the eval-set columns `group`/`chosen_slot`/`rejected_slot`. A prompt is a string (one user turn)
or a conversation, a list of {"role", "content"} turns ending with the user turn the replies answer.
Storage of a conversation (docs/eval_sets.md):
- JSONL: the prompt is a JSON string or a JSON list of turns, row by row.
- Parquet: one column type per file, so when any prompt of a file is a conversation every prompt is
  written as a list<struct<role, content>> column (a string prompt becomes one user turn, which the
  chat template renders identically); a file of string prompts keeps a plain string column.

Bad input is a PairsFileError naming the file, the line (JSONL) or row, and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from .chat import ConversationError, conversation
from .pairs import REQUIRED

SUFFIXES = (".parquet", ".jsonl")


class PairsFileError(ValueError):
    """A pairs file that is missing, unreadable or lacks the required columns (named)."""


# -- rows -----------------------------------------------------------------------------------------


def _turns(prompt) -> list[dict] | None:
    """A conversation prompt as plain [{"role", "content"}] (None for a string prompt)."""
    if isinstance(prompt, str):
        return None
    if hasattr(prompt, "tolist"):  # numpy array of turns (pandas over a Parquet list column)
        prompt = prompt.tolist()
    return [{"role": t["role"], "content": t["content"]} if isinstance(t, dict) else t for t in prompt]


def normalize_prompt(prompt):
    """A string, or the conversation as a list of {"role", "content"}; a conversation of one user
    turn becomes that turn's string (the two render identically). Raises ConversationError."""
    if isinstance(prompt, str):
        return prompt
    turns = _turns(prompt) if isinstance(prompt, (list, tuple)) or hasattr(prompt, "tolist") else prompt
    conversation(turns)  # validates: roles, contents, ends with a user turn
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return turns


def check_row(row, where: str) -> dict:
    """`row` with its prompt normalized; a PairsFileError naming `where` and the field when a required
    field is missing or of the wrong type (a reply must be a string; a prompt a string or turns)."""
    if not isinstance(row, dict):
        raise PairsFileError(f"{where}: expected an object with {list(REQUIRED)}, got {type(row).__name__}")
    missing = [c for c in REQUIRED if c not in row]
    if missing:
        raise PairsFileError(f"{where}: missing field(s) {missing}")
    for c in ("chosen", "rejected"):
        if not isinstance(row[c], str):
            got = "null" if row[c] is None else type(row[c]).__name__
            raise PairsFileError(f"{where}: field {c!r} must be a string, got {got}")
    try:
        prompt = normalize_prompt(row["prompt"])
    except (ConversationError, TypeError, KeyError) as e:
        raise PairsFileError(f"{where}: field 'prompt': {e}") from None
    if prompt is not row["prompt"]:
        row = {**row, "prompt": prompt}
    return row


# -- writing --------------------------------------------------------------------------------------


def write_pairs(df, path: str | Path) -> Path:
    """Write a pairs DataFrame as Parquet (or JSONL by suffix) via temp + rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    if p.suffix == ".jsonl":
        write_jsonl(df.to_dict("records"), tmp)
    else:
        if "prompt" in df.columns and any(not isinstance(x, str) for x in df["prompt"]):
            df = df.assign(prompt=[_turns(x) or [{"role": "user", "content": x}] for x in df["prompt"]])
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
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


# -- reading --------------------------------------------------------------------------------------


def pairs_file(path: str | Path) -> Path:
    """The pairs file `data.source` names: the file itself, or a folder's train/pairs file; a
    PairsFileError naming the path when there is none, or it is empty or not .parquet/.jsonl."""
    p = Path(path)
    if p.is_dir():
        for name in ("train.parquet", "train.jsonl", "pairs.parquet", "pairs.jsonl"):
            if (p / name).is_file():
                return p / name
        raise PairsFileError(f"{p}: folder holds no train.parquet / train.jsonl / pairs.parquet / pairs.jsonl")
    if not p.is_file():
        raise PairsFileError(f"{p}: no such pairs file")
    if p.suffix not in SUFFIXES:
        raise PairsFileError(f"{p}: a pairs file must be .parquet or .jsonl, not {p.suffix or 'suffix-less'}")
    if p.stat().st_size == 0:
        raise PairsFileError(f"{p}: empty file (0 bytes)")
    return p


def _parquet(p: Path):
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(p)
    except Exception as e:  # noqa: BLE001 — any reader error means a bad file
        raise PairsFileError(f"{p}: not a readable Parquet file ({e})") from None
    missing = [c for c in REQUIRED if c not in f.schema_arrow.names]
    if missing:
        raise PairsFileError(f"{p}: missing columns {missing}")
    return f


def read_pairs(path: str | Path, columns: list[str] | None = None):
    """The whole file as a DataFrame, every row checked (check_row); prompts normalized."""
    import pandas as pd

    p = pairs_file(path)
    if p.suffix == ".parquet":
        f = _parquet(p)
        try:
            df = f.read().to_pandas()
        except Exception as e:  # noqa: BLE001 — any reader error means a bad file
            raise PairsFileError(f"{p}: cannot read pairs: {e}") from None
        checked = [check_row(r, f"{p}: row {i}") for i, r in enumerate(df.to_dict("records"))]
    else:
        checked = [check_row(r, f"{p}:{ln}") for ln, r in _jsonl_rows(p)]
    if not checked:
        raise PairsFileError(f"{p}: no pairs in the file")
    out = pd.DataFrame(checked)
    if columns is not None:
        out = out[[c for c in columns if c in out.columns]]
    return out


def _jsonl_rows(p: Path) -> Iterator[tuple[int, dict]]:
    with open(p) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    raise PairsFileError(f"{p}:{i}: bad JSON: {e.msg}") from None


def iter_pairs(path: str | Path, batch_rows: int = 4096) -> Iterator[dict]:
    """Stream rows without loading the file (Parquet row groups or JSONL lines), each one checked."""
    p = pairs_file(path)
    if p.suffix == ".jsonl":
        for i, r in _jsonl_rows(p):
            yield check_row(r, f"{p}:{i}")
        return
    n = 0
    try:
        batches = _parquet(p).iter_batches(batch_size=batch_rows)
        for batch in batches:
            for r in batch.to_pylist():
                yield check_row(r, f"{p}: row {n}")
                n += 1
    except PairsFileError:
        raise
    except Exception as e:  # noqa: BLE001 — a corrupt row group
        raise PairsFileError(f"{p}: cannot read pairs after row {n}: {e}") from None
