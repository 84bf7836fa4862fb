"""What a cell trained and was evaluated on, as MLflow dataset inputs (the runs table's Dataset column).

One input per file: the cell's training pairs (context `training`) and each eval set (context
`evaluation`, the eval set's name). Each is an `mlflow.data` MetaDataset over a local-file source
(`{"uri": <absolute path>}`) with

- digest: the first 10 hex digits of SHA-256 over the file's bytes (MLflow recommends ≤ 10
  characters). Files over `FULL_HASH_MAX` bytes hash their size and three 16 MiB windows (start,
  middle, end) instead, so a 20 GB pairs file costs a job under a second, not minutes; the profile
  says which (`digest_kind`). Two runs on different data therefore show different digests.
- profile: `num_rows` (Parquet metadata or JSONL lines) and, for training pairs, `pairs_used` (the
  cell's budget: a cell reads a prefix of a seeded shuffle of the file).

Spooled runs keep these records in their metadata; `wps sync` logs them when it creates the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

FULL_HASH_MAX = 256 << 20
WINDOW = 16 << 20
CONTEXT_TAG = "mlflow.data.context"
TRAIN_CONTEXT = "training"
EVAL_CONTEXT = "evaluation"


def _meta_dataset_class():
    from mlflow.data.meta_dataset import MetaDataset

    class FileDataset(MetaDataset):
        """A MetaDataset (metadata only, nothing loaded) that also carries a profile."""

        def __init__(self, source, *, name: str, digest: str, profile: dict[str, Any]):
            super().__init__(source=source, name=name, digest=digest)
            self._profile = profile

        @property
        def profile(self):
            return self._profile

        def to_dict(self) -> dict[str, str]:
            d = super().to_dict()
            d["profile"] = json.dumps(self._profile)
            return d

    return FileDataset


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> tuple[str, str]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_MAX:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest()[:10], "sha256"
        h.update(str(size).encode())
        for off in (0, size // 2 - WINDOW // 2, size - WINDOW):
            f.seek(off)
            h.update(f.read(WINDOW))
    return h.hexdigest()[:10], "sha256-sampled"


def file_digest(path: str | os.PathLike) -> tuple[str, str]:
    """(digest, kind) of a file's content; cached per (path, size, mtime) within a process."""
    p = Path(path).resolve()
    st = p.stat()
    return _digest(str(p), st.st_size, st.st_mtime_ns)


def file_rows(path: str | os.PathLike) -> int | None:
    """Rows of a Parquet (footer metadata, no data read) or JSONL (non-empty lines) pairs file."""
    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(p).metadata.num_rows)
    if p.suffix in (".jsonl", ".json"):
        with open(p, "rb") as f:
            return sum(1 for line in f if line.strip())
    return None


def describe(path: str | os.PathLike, *, name: str, context: str, **profile: Any) -> dict[str, Any]:
    """One dataset input as a plain record (JSON-able, so a spool can keep it): the fields of
    `mlflow.entities.Dataset` plus the input's `context`."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    p = Path(path).resolve()
    digest, kind = file_digest(p)
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local source
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(p))
    prof = {
        "num_rows": file_rows(p),
        **{k: v for k, v in profile.items() if v is not None},
        "bytes": p.stat().st_size,
        "digest_kind": kind,
    }
    ds = _meta_dataset_class()(source, name=name, digest=digest, profile=prof)
    return {**ds.to_dict(), "context": context}


def cell_inputs(run_spec) -> list[dict[str, Any]]:
    """The dataset inputs of a cell (a `config.RunSpec`): its training pairs file and every eval
    set file that exists (a missing one is the trainer's error to report, not the tracker's)."""
    from ..data.evals import registry
    from ..data.io import pairs_file

    out = []
    train = pairs_file(run_spec.data.source)
    out.append(
        describe(train, name=f"{train.parent.name}/{train.name}", context=TRAIN_CONTEXT, pairs_used=int(run_spec.pairs))
    )
    for set_name, (category, paths) in registry(run_spec.eval).items():
        hit = next((p for p in paths if p.is_file()), None)
        if hit is not None:
            out.append(
                describe(
                    hit,
                    name=set_name,
                    context=EVAL_CONTEXT,
                    category=category,
                    pairs_used=run_spec.eval.max_pairs_per_set,
                )
            )
    return out


def log_cell_inputs(run, run_spec) -> list[dict[str, Any]]:
    """Describe the cell's data and log it to `run` (a Tracker run with `log_inputs`); never fails
    the job: a file that cannot be read is reported on stderr and left out."""
    try:
        records = cell_inputs(run_spec)
    except Exception as e:  # noqa: BLE001 — tracking must not be why a job fails
        print(f"warning: dataset inputs not logged: {type(e).__name__}: {e}", file=sys.stderr)
        return []
    log = getattr(run, "log_inputs", None)
    if log is not None and records:
        log(records)
    return records


def to_entities(records: list[dict[str, Any]]):
    """MLflow `DatasetInput`s for `MlflowClient.log_inputs`."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for r in records:
        ds = Dataset(
            name=r["name"],
            digest=r["digest"],
            source_type=r["source_type"],
            source=r["source"],
            schema=r.get("schema"),
            profile=r.get("profile"),
        )
        out.append(DatasetInput(dataset=ds, tags=[InputTag(key=CONTEXT_TAG, value=r.get("context") or "")]))
    return out
