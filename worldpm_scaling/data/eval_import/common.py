"""What every release reader shares: the named error, reading JSON / JSONL(.gz) / Parquet files and
folders of them, checked field access, and the pair rows and skip counts an importer returns.

The importers themselves are pure: rows (dicts, as the release has them) in, pair rows out.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ...style import has_markdown


class EvalImportError(ValueError):
    """A release file or row that cannot be imported: names the file, the row and the field."""


@dataclass
class Result:
    """What an importer made of its rows: pair rows (the registry's schema) and skipped rows by reason."""

    pairs: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    prompts: set = field(default_factory=set)
    """Distinct prompts (JSON of the string or conversation) that gave at least one pair."""

    def skip(self, reason: str, row_id: Any) -> None:
        self.skipped[reason] += 1
        ex = self.skipped_examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(str(row_id))

    def add(
        self,
        prompt,
        chosen: str,
        rejected: str,
        *,
        group: str,
        chosen_slot: int = -1,
        rejected_slot: int = -1,
        chosen_markdown: bool | None = None,
        rejected_markdown: bool | None = None,
    ) -> None:
        """One pair; markdown labels default to detection from the text (style.has_markdown)."""
        self.pairs.append(
            {
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected,
                "chosen_markdown": has_markdown(chosen) if chosen_markdown is None else bool(chosen_markdown),
                "rejected_markdown": has_markdown(rejected) if rejected_markdown is None else bool(rejected_markdown),
                "group": group,
                "chosen_slot": int(chosen_slot),
                "rejected_slot": int(rejected_slot),
            }
        )
        self.prompts.add(json.dumps(prompt))


@dataclass(frozen=True)
class Row:
    """One release record and where it came from (for error messages and skip examples)."""

    data: dict
    where: str

    def get(self, key: str, kind: type | tuple[type, ...] | None = None, *, optional: bool = False):
        """`data[key]`, checked: a missing key or a value of the wrong type is a named EvalImportError."""
        if key not in self.data or (optional and self.data[key] is None):
            if optional:
                return None
            raise EvalImportError(f"{self.where}: missing field {key!r}")
        v = self.data[key]
        if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy values from Parquet
            v = v.tolist()
        kinds = (kind,) if isinstance(kind, type) else kind
        if kinds is not None and (not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds)):
            names = " or ".join(k.__name__ for k in kinds)
            got = "null" if v is None else type(v).__name__
            raise EvalImportError(f"{self.where}: field {key!r} must be {names}, got {got}")
        return v

    def text(self, key: str) -> str:
        return self.get(key, str)


# -- files ----------------------------------------------------------------------------------------

FORMATS = (".json", ".jsonl", ".jsonl.gz", ".json.gz", ".parquet")


def _suffix(p: Path) -> str:
    name = p.name.lower()
    for s in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(s):
            return s
    return p.suffix.lower()


def release_files(source: str | Path, formats: tuple[str, ...]) -> list[Path]:
    """The release files of `source`: the file itself, or every file of those formats under the folder
    (sorted, recursive). Missing, empty or of another format: a named EvalImportError."""
    p = Path(source)
    if p.is_dir():
        files = sorted(q for q in p.rglob("*") if q.is_file() and _suffix(q) in formats and not q.name.startswith("."))
        if not files:
            raise EvalImportError(f"{p}: folder holds no {' / '.join(formats)} file")
        return files
    if not p.is_file():
        raise EvalImportError(f"{p}: no such file or folder")
    if _suffix(p) not in formats:
        raise EvalImportError(f"{p}: expected a {' / '.join(formats)} file, got {_suffix(p) or 'no suffix'}")
    return [p]


def read_records(path: Path) -> Iterator[Row]:
    """Records of one release file: a JSON array (or an object of arrays, one per category), JSONL
    (optionally gzipped) or Parquet. Unreadable or empty: a named EvalImportError."""
    s = _suffix(path)
    if path.stat().st_size == 0:
        raise EvalImportError(f"{path}: empty file (0 bytes)")
    n = 0
    if s in (".jsonl", ".jsonl.gz"):
        opener = gzip.open if s.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        d = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise EvalImportError(f"{path}:{i}: bad JSON ({e.msg})") from None
                    if not isinstance(d, dict):
                        raise EvalImportError(f"{path}:{i}: expected a JSON object, got {type(d).__name__}")
                    n += 1
                    yield Row(d, f"{path}:{i}")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise EvalImportError(f"{path}: cannot read ({e})") from None
    elif s in (".json", ".json.gz"):
        opener = gzip.open if s.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                doc = json.load(f)
        except json.JSONDecodeError as e:
            raise EvalImportError(f"{path}: bad JSON at line {e.lineno} ({e.msg})") from None
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise EvalImportError(f"{path}: cannot read ({e})") from None
        items: Iterable[tuple[str, Any]]
        if isinstance(doc, list):
            items = ((f"{path}: item {i}", d) for i, d in enumerate(doc))
        elif isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
            items = ((f"{path}: {k!r} item {i}", d) for k, v in doc.items() for i, d in enumerate(v))
        else:
            raise EvalImportError(
                f"{path}: expected a JSON array of records (or an object of arrays), got {type(doc).__name__}"
            )
        for where, d in items:
            if not isinstance(d, dict):
                raise EvalImportError(f"{where}: expected an object, got {type(d).__name__}")
            n += 1
            yield Row(d, where)
    elif s == ".parquet":
        import pyarrow.parquet as pq

        try:
            f = pq.ParquetFile(path)
            batches = list(f.iter_batches(batch_size=4096))
        except Exception as e:  # noqa: BLE001 — any reader error means a bad file
            raise EvalImportError(f"{path}: not a readable Parquet file ({e})") from None
        for b in batches:
            for d in b.to_pylist():
                yield Row(d, f"{path}: row {n}")
                n += 1
    else:
        raise EvalImportError(f"{path}: unsupported format {s!r}")
    if n == 0:
        raise EvalImportError(f"{path}: no records")


def records(source: str | Path, formats: tuple[str, ...]) -> Iterator[Row]:
    for p in release_files(source, formats):
        yield from read_records(p)
