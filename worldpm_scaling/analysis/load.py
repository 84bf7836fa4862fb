"""Runs → one tidy DataFrame: (sweep, cell, model, N, pairs, tokens, compute, step, metric, value, status, seed).

`pairs`/`tokens` are `train/pairs_seen`/`train/tokens_seen` at the point's step (the paper's x-axis is
pairs; compute is C = 6·N·tokens with N the non-embedding parameters). I/O lives here only: MLflow
(child runs of the sweep's experiment, histories fetched in parallel, cached to Parquet) or a
CSV/Parquet export of the same table. `status` is the run's MLflow status (FINISHED, FAILED, KILLED,
RUNNING, SCHEDULED): analysis fits only FINISHED runs unless told otherwise. `seed` is the cell's
training seed (a sweep's `seeds:`): cells that differ only in it are repeats of one measurement, which
the analysis averages, not points of a grid.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Collection

import numpy as np
import pandas as pd

from .. import names
from .errors import AnalysisInputError

COLUMNS = ["sweep", "cell", "model", "N", "pairs", "tokens", "compute", "step", "metric", "value"]
"""The columns a tidy table must have."""
STATUS = "status"
SEED = "seed"
ALL_COLUMNS = COLUMNS + [STATUS, SEED]
"""What `tidy` and `from_mlflow` return: the run status and seed ride along (optional in files: a file
without `seed` is one seed, 0)."""


def from_file(path: str | Path) -> pd.DataFrame:
    """A tidy table exported earlier (CSV or Parquet), checked for the expected columns."""
    p = Path(path)
    if not p.is_file():
        raise AnalysisInputError(f"{p}: no such file")
    df = pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise AnalysisInputError(f"{p}: missing columns {missing} (expected {COLUMNS})")
    if STATUS not in df.columns:
        df.attrs["status_note"] = f"{p.name} has no {STATUS!r} column: every run in it is taken as FINISHED"
    return with_seed(df)


def with_seed(df: pd.DataFrame) -> pd.DataFrame:
    """A table without a seed column (an older export, a hand-made frame) is one seed, 0."""
    return df if SEED in df.columns else df.assign(**{SEED: 0})


def tidy(runs: list[dict], histories: dict[str, dict[str, list[tuple[int, float]]]]) -> pd.DataFrame:
    """Pure: run records + metric histories → the tidy table.

    `runs`: dicts with run_id, sweep, cell, model, N, status and (optional, default 0) seed.
    `histories[run_id][metric]` = [(step, value)].
    """
    frames = []
    for r in runs:
        h = histories.get(r["run_id"], {})
        pairs = dict(h.get(names.TRAIN_PAIRS_SEEN, []))
        tokens = dict(h.get(names.TRAIN_TOKENS_SEEN, []))
        for metric, points in h.items():
            if not points:
                continue
            steps = np.array([s for s, _ in points])
            vals = np.array([v for _, v in points], dtype=float)
            frames.append(
                pd.DataFrame(
                    {
                        "sweep": r["sweep"],
                        "cell": r["cell"],
                        "model": r["model"],
                        "N": float(r["N"]),
                        "pairs": [pairs.get(int(s), np.nan) for s in steps],
                        "tokens": [tokens.get(int(s), np.nan) for s in steps],
                        "step": steps,
                        "metric": metric,
                        "value": vals,
                        STATUS: r.get("status", "UNKNOWN"),
                        SEED: int(r.get("seed", 0)),
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=ALL_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df["compute"] = 6.0 * df["N"] * df["tokens"]
    return df[ALL_COLUMNS]


def default_uri(tracking_uri: str | None = None) -> str:
    """Same resolution as the tracker (track.open_tracker): given, else $MLFLOW_TRACKING_URI, else ./mlflow.db."""
    import os

    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def _existing_store(uri: str) -> str:
    """Refuse a sqlite URI whose file does not exist: opening it would create an empty store."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.is_file():
            raise AnalysisInputError(f"no MLflow store at {uri} (no file {path}); pass --tracking-uri")
    return uri


def _experiment(client, sweep: str, experiment: str | None):
    name = experiment or sweep
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise AnalysisInputError(f"no MLflow experiment named {name!r} at {client.tracking_uri}")
    return exp


def _all_runs(client, exp_id: str, sweep: str) -> list:
    """Every run tagged with the sweep, page by page (a sweep can exceed one page)."""
    out, token = [], None
    for _ in range(10_000):  # bounded: 10k pages of 1000 runs
        page = client.search_runs(
            [exp_id],
            filter_string=f"tags.sweep = '{sweep}'",
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        out.extend(page)
        token = page.token
        if not token:
            break
    return out


def from_mlflow(
    sweep: str,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    cache: str | Path | None = None,
    max_workers: int = 8,
    cells: Collection[str] | None = None,
) -> pd.DataFrame:
    """The sweep's child runs (tag cell_id) with full metric histories, fetched in parallel.

    `experiment` defaults to the sweep name, as the tracker does (TrackingSpec.experiment).
    `cells`: keep only these cell ids (the sweep YAML's current plan): editing a sweep and
    re-launching it under the same name leaves the old cells' runs in MLflow, and they must not
    mix into the new fits. `df.attrs["left_out"]` counts the runs dropped that way; `df.attrs["runs"]`
    lists every kept cell run as {cell, model, status}, including runs that logged no metric.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(_existing_store(default_uri(tracking_uri)))
    exp = _experiment(client, sweep, experiment)
    found = _all_runs(client, exp.experiment_id, sweep)
    children = [r for r in found if "cell_id" in r.data.tags]
    left_out = 0
    if cells is not None and children:
        wanted = set(cells)
        keep = [r for r in children if r.data.tags["cell_id"] in wanted]
        left_out = len(children) - len(keep)
        if not keep:
            raise AnalysisInputError(
                f"sweep {sweep!r} has {len(children)} cell runs at {client.tracking_uri}, "
                f"none of them a cell of the sweep's current plan (launch it first)"
            )
        children = keep
    if not children:
        raise AnalysisInputError(f"sweep {sweep!r} has no cell runs at {client.tracking_uri}")
    stamp = {r.info.run_id: [r.info.status, r.info.end_time] for r in children}
    # every cell run with its status, also those that logged no metric (a job that failed at start)
    run_list = [
        {
            "cell": r.data.tags["cell_id"],
            "model": r.data.params.get("model.name", r.info.run_name),
            "status": r.info.status,
            "seed": _seed(r),
        }
        for r in children
    ]
    cached = _read_cache(cache, stamp)
    if cached is not None:
        cached.attrs["left_out"] = left_out
        cached.attrs["runs"] = run_list
        return cached
    runs = []
    for r in children:
        p = r.data.params
        try:
            n = float(p["model.params_non_embedding"])
        except (KeyError, ValueError):
            raise AnalysisInputError(f"run {r.info.run_id} lacks param model.params_non_embedding") from None
        # keys: not system/… (MLflow system metrics are numbered by sample, not by optimizer step)
        runs.append(
            {
                "run_id": r.info.run_id,
                "sweep": sweep,
                "cell": r.data.tags["cell_id"],
                "model": p.get("model.name", r.info.run_name),
                "N": n,
                "status": r.info.status,
                "seed": _seed(r),
                "keys": sorted(k for k in r.data.metrics if not k.startswith("system/")),
            }
        )

    def fetch(job):
        rid, key = job
        return rid, key, [(m.step, m.value) for m in client.get_metric_history(rid, key)]

    jobs = [(r["run_id"], k) for r in runs for k in r["keys"]]
    histories: dict[str, dict[str, list]] = {}
    with ThreadPoolExecutor(max_workers=max_workers) as ex:
        for rid, key, pts in ex.map(fetch, jobs):
            histories.setdefault(rid, {})[key] = sorted(pts)
    df = tidy(runs, histories)
    if cache is not None:
        _write_cache(cache, df, stamp)
    df.attrs["left_out"] = left_out
    df.attrs["runs"] = run_list
    return df


def _seed(run) -> int:
    """The cell's training seed (param `seed`, logged by every cell run; 0 for runs that predate it)."""
    v = run.data.params.get("seed", "0")
    try:
        return int(v)
    except ValueError:
        raise AnalysisInputError(f"run {run.info.run_id}: param seed={v!r} is not an integer") from None


def _stamp_path(cache: str | Path) -> Path:
    return Path(str(cache) + ".runs.json")


def _read_cache(cache: str | Path | None, stamp: dict) -> pd.DataFrame | None:
    """The cached table, only if every run had finished and nothing changed since it was written."""
    import json

    if cache is None or not Path(cache).is_file() or not _stamp_path(cache).is_file():
        return None
    if any(status != "FINISHED" for status, _ in stamp.values()):
        return None
    try:
        if json.loads(_stamp_path(cache).read_text()) != stamp:
            return None
        df = pd.read_parquet(cache)
    except (OSError, ValueError):
        return None
    return df if all(c in df.columns for c in ALL_COLUMNS) else None  # written by a version with fewer columns


def _write_cache(cache: str | Path, df: pd.DataFrame, stamp: dict) -> None:
    """Parquet + a sidecar of run status/end time, each written to a temp file and renamed."""
    import json

    p = Path(cache)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    df.to_parquet(tmp)
    tmp.replace(p)
    sp = _stamp_path(p)
    tmp = sp.with_name(sp.name + ".tmp")
    tmp.write_text(json.dumps(stamp))
    tmp.replace(sp)


def parent_run_id(sweep: str, *, tracking_uri: str | None = None, experiment: str | None = None) -> str | None:
    """The sweep's parent run (tag sweep, no cell_id, no parent; the tracker also tags it role=sweep)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(default_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment or sweep)
    if exp is None:
        return None
    found = _all_runs(client, exp.experiment_id, sweep)
    parents = [r for r in found if "cell_id" not in r.data.tags and "mlflow.parentRunId" not in r.data.tags]
    parents.sort(key=lambda r: r.data.tags.get("role") != "sweep")  # stable: role=sweep first, then oldest
    return parents[0].info.run_id if parents else None
