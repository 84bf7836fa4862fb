"""Reading `wps score`'s input: a conversations file (JSON lines or parquet), or a pairs file, row by
row, each malformed row a ScoreError naming the file and line (or row)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

CONVERSATION_KEYS = ("messages", "conversation")
"""Keys under which a conversations file's row may hold its turns (or the row is the list itself)."""


class ScoreError(ValueError):
    """Bad `wps score` input: not an exported folder, a malformed row (file:line), an output in the way."""


def _check_conversation(turns, where: str) -> list[dict]:
    if hasattr(turns, "tolist"):
        turns = turns.tolist()
    if not isinstance(turns, list) or not turns:
        raise ScoreError(f"{where}: a conversation must be a non-empty list of {{role, content}} turns")
    out = []
    for k, t in enumerate(turns):
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            raise ScoreError(f"{where}: turn {k} must be an object with string 'role' and 'content'")
        if t["role"] not in ("system", "user", "assistant"):
            raise ScoreError(f"{where}: turn {k} has role {t['role']!r} (system, user or assistant)")
        out.append({"role": t["role"], "content": t["content"]})
    if out[-1]["role"] != "assistant":
        raise ScoreError(f"{where}: the last turn must be the assistant reply to score, got {out[-1]['role']!r}")
    return out


def _as_turns(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": t["role"], "content": t["content"]} for t in prompt]


def _jsonl(path: Path) -> Iterator[tuple[str, object]]:
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield f"{path}:{i}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise ScoreError(f"{path}:{i}: bad JSON: {e.msg}") from None


def input_kind(path: Path) -> str:
    """`pairs` (prompt/chosen/rejected) or `conversations` (a list of turns per row)."""
    from ..data.pairs import REQUIRED

    if not path.is_file():
        raise ScoreError(f"{path}: no such input file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except Exception as e:  # noqa: BLE001 — any reader error means a bad file
            raise ScoreError(f"{path}: not a readable Parquet file ({e})") from None
        if all(c in names for c in REQUIRED):
            return "pairs"
        if any(c in names for c in CONVERSATION_KEYS):
            return "conversations"
        raise ScoreError(
            f"{path}: columns {names}: expected prompt/chosen/rejected (pairs) or messages (conversations)"
        )
    if path.suffix != ".jsonl":
        raise ScoreError(f"{path}: input must be .jsonl or .parquet")
    for where, row in _jsonl(path):
        if isinstance(row, dict) and all(c in row for c in REQUIRED):
            return "pairs"
        if isinstance(row, list) or (isinstance(row, dict) and any(c in row for c in CONVERSATION_KEYS)):
            return "conversations"
        raise ScoreError(
            f"{where}: a row must be a pair (prompt, chosen, rejected), a list of turns, or an object with 'messages'"
        )
    raise ScoreError(f"{path}: no rows")


def count_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def iter_items(path: Path, kind: str) -> Iterator[tuple[dict, list[list[dict]]]]:
    """(the row, the conversations to score: [chosen, rejected] for a pair, [itself] otherwise)."""
    if kind == "pairs":
        from ..data.io import PairsFileError, iter_pairs

        try:
            for r in iter_pairs(path):
                prompt = _as_turns(r["prompt"])
                yield (
                    r,
                    [
                        prompt + [{"role": "assistant", "content": r["chosen"]}],
                        prompt + [{"role": "assistant", "content": r["rejected"]}],
                    ],
                )
        except PairsFileError as e:
            raise ScoreError(str(e)) from None
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        f, n = pq.ParquetFile(path), 0
        for batch in f.iter_batches(batch_size=1024):
            for r in batch.to_pylist():
                key = next(k for k in CONVERSATION_KEYS if k in r)
                yield r, [_check_conversation(r[key], f"{path}: row {n}")]
                n += 1
        return
    for where, row in _jsonl(path):
        turns: object = None
        if isinstance(row, list):
            turns = row
        elif isinstance(row, dict):
            turns = next((row[k] for k in CONVERSATION_KEYS if k in row), None)
        if turns is None:
            raise ScoreError(f"{where}: a row must be a list of turns or an object with 'messages'")
        yield (row if isinstance(row, dict) else {"messages": row}), [_check_conversation(turns, where)]
