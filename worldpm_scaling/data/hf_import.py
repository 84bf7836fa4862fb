"""Preference data held as Hugging Face datasets → this project's pairs files (data/pairs.py schema).

Reads, with the `datasets` library and no hub access, a folder written by `save_to_disk` (a Dataset or a
DatasetDict: pick the split), a Parquet / Arrow / JSONL file exported from a hub dataset, or a folder
of such Parquet files (a hub snapshot's `data/<split>-*.parquet`), and converts one of three schemas:

- `pairs` — one preference per row: prompt / chosen / rejected columns. chosen and rejected may be
  strings or conversations (lists of {role, content}, the reply last; the turns before it are the
  prompt when no prompt column is mapped), as in chat-format preference sets.
- `h4-stack-exchange` — HuggingFaceH4/stack-exchange-preferences: per question `qid`, `question` and
  `answers` (list of {answer_id, pm_score, selected, text}); an optional `title` column. The pairs are
  made by this project's vote rule (`stackexchange.question_pairs`: net score = score + accepted bonus
  for the selected answer, a pair per gap ≥ min_gap, the higher chosen) over the answers' `pm_score`,
  with the same HTML → markdown and length filters as `wps data stackexchange`, so the same questions
  and votes give the same pairs. (The published set's pm_score is already log-scaled from the votes,
  and includes the acceptance: pass accepted_bonus=0 there.)
- `ratings` — HelpSteer2-style: rows of prompt / response with numeric attribute ratings; responses to
  the same prompt are paired by one named attribute (`attribute`, e.g. helpfulness), the higher rated
  chosen when the ratings differ by at least `min_rating_gap`.

A column map renames the schema's fields to the dataset's columns; a map naming a column the dataset
lacks is an HFImportError listing the columns found. Bad rows (a missing or non-text field, malformed
turns, a rating that is not a number) are counted by reason, with the first few named by row, and the
conversion goes on. Outputs appear by rename when complete (OUT/train.<fmt>, OUT/test.<fmt> when
test_frac > 0, OUT/summary.json).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from .hf_options import DEFAULT_COLUMNS, OPTIONAL, SCHEMAS, HFImportError, ImportOptions, ImportSummary
from .hf_rows import BadRow, h4_rows, is_test_text, pairs_rows, ratings_rows

__all__ = [
    "DEFAULT_COLUMNS",
    "OPTIONAL",
    "SCHEMAS",
    "BadRow",
    "HFImportError",
    "ImportOptions",
    "ImportSummary",
    "convert",
    "h4_rows",
    "open_dataset",
    "pairs_rows",
    "ratings_rows",
    "reasons",
    "resolve_columns",
]

DEFAULT_OPTIONS = ImportOptions()
"""The defaults of ImportOptions (frozen: one instance serves every call)."""


# -- reading ---------------------------------------------------------------------------------------


def open_dataset(path: str | Path, split: str | None = None, cache_dir: str | None = None):
    """A `datasets.Dataset` from a save_to_disk folder, a Parquet/Arrow/JSONL file or a folder of Parquet."""
    import datasets

    p = Path(path)
    if not p.exists():
        raise HFImportError(f"{p}: no such dataset folder or file")
    kw = {"cache_dir": cache_dir} if cache_dir else {}
    try:
        if p.is_dir() and any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(p))
        elif p.is_dir():
            files = sorted(str(f) for f in p.rglob("*.parquet"))
            if not files:
                raise HFImportError(
                    f"{p}: neither a save_to_disk folder (dataset_info.json / dataset_dict.json) "
                    "nor a folder of Parquet files"
                )
            by_split: dict[str, list[str]] = {}
            for f in files:
                name = Path(f).name.split("-")[0].split(".")[0]
                by_split.setdefault(name, []).append(f)
            ds = datasets.DatasetDict({s: datasets.Dataset.from_parquet(fs, **kw) for s, fs in by_split.items()})
        elif p.suffix == ".parquet":
            ds = datasets.Dataset.from_parquet(str(p), **kw)
        elif p.suffix == ".arrow":
            ds = datasets.Dataset.from_file(str(p))
        elif p.suffix in (".jsonl", ".json"):
            ds = datasets.Dataset.from_json(str(p), **kw)
        else:
            raise HFImportError(f"{p}: a dataset must be a save_to_disk folder or a .parquet/.arrow/.jsonl file")
    except HFImportError:
        raise
    except Exception as e:  # noqa: BLE001 — any reader error means an unreadable dataset
        raise HFImportError(f"{p}: cannot read as a dataset ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        want = split or ("train" if "train" in ds else (splits[0] if len(splits) == 1 else None))
        if want not in ds:
            raise HFImportError(
                f"{p}: {'split ' + repr(split) + ' not found' if split else 'several splits'}; "
                f"choose one with --split (splits: {', '.join(splits)})"
            )
        ds = ds[want]
    elif split not in (None, "train"):
        raise HFImportError(f"{p}: holds a single dataset, not splits (drop --split {split})")
    return ds


def resolve_columns(ds_columns: list[str], opts: ImportOptions, where: str) -> dict[str, str | None]:
    """Schema field → dataset column (None for an absent optional field); names what is missing."""
    cols = {**DEFAULT_COLUMNS[opts.schema], **{k: v for k, v in opts.columns.items() if k != "attribute"}}
    if opts.schema == "ratings":
        cols["attribute"] = opts.columns.get("attribute", opts.attribute)
    out, missing = {}, []
    for f, c in cols.items():
        if c in ds_columns:
            out[f] = c
        elif f in OPTIONAL[opts.schema] and f not in opts.columns:
            out[f] = None
        else:
            missing.append(f"{f} → {c!r}")
    if missing:
        raise HFImportError(
            f"{where}: column map {', '.join(missing)} not among the dataset's columns "
            f"({', '.join(ds_columns)}); map them with --map FIELD=COLUMN"
        )
    return out


# -- converting --------------------------------------------------------------------------------------


def convert(
    path: str | Path, out: str | Path, opts: ImportOptions = DEFAULT_OPTIONS, *, force: bool = False
) -> ImportSummary:
    """Convert the dataset at `path` into OUT/train.<fmt> (+ test) and OUT/summary.json."""
    import pandas as pd

    from .io import write_pairs

    t0 = time.perf_counter()
    out = Path(out)
    names = ["train"] + (["test"] if opts.test_frac > 0 else [])
    targets = {n: out / f"{n}.{opts.format}" for n in names}
    if not force:
        taken = [str(p) for p in (*targets.values(), out / "summary.json") if p.exists()]
        if taken:
            raise HFImportError(f"--out {out}: {', '.join(taken)} exist (pass --force to replace them)")
    with tempfile.TemporaryDirectory(prefix="wps-hf-") as cache:
        ds = open_dataset(path, opts.split, cache_dir=cache)
        cols = resolve_columns(list(ds.column_names), opts, str(path))
        s = ImportSummary(source=str(path), schema=opts.schema)
        make = {"pairs": pairs_rows, "h4-stack-exchange": h4_rows, "ratings": ratings_rows}[opts.schema]
        rows: dict[str, list[dict]] = {n: [] for n in names}
        for key, r in make(ds, cols, opts, s):
            split = key if key in ("train", "test") else ("test" if is_test_text(key, opts.test_frac) else "train")
            rows[split].append(r)
    s.pairs_train, s.pairs_test = len(rows["train"]), len(rows.get("test", []))
    if not s.pairs_train + s.pairs_test:
        raise HFImportError(
            f"{path}: no pairs ({s.rows} rows read; bad rows {dict(s.bad_rows) or 0}; "
            f"{s.no_pair} without a pair){': ' + s.examples[0] if s.examples else ''}"
        )
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".hf-import-"))
    try:
        for n, p in targets.items():
            write_pairs(
                pd.DataFrame(rows[n], columns=list(rows[n][0]) if rows[n] else ["prompt", "chosen", "rejected"]),
                work / p.name,
            )
        s.seconds = time.perf_counter() - t0
        s.outputs = {n: str(p) for n, p in targets.items()}
        (work / "summary.json").write_text(json.dumps(s.to_dict(), indent=1))
        for p in targets.values():
            (work / p.name).replace(p)
        (work / "summary.json").replace(out / "summary.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return s


def reasons(s: ImportSummary) -> str:
    return ", ".join(f"{k} {v}" for k, v in Counter(s.bad_rows).most_common()) or "none"
