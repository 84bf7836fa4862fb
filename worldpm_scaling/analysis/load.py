"""Runs → one tidy DataFrame: (sweep, cell, model, N, pairs, tokens, compute, step, metric, value).

`pairs`/`tokens` are `train/pairs_seen`/`train/tokens_seen` at the point's step (the paper's x-axis is
pairs; compute is C = 6·N·tokens with N the non-embedding parameters). I/O lives here only: MLflow
(child runs of the sweep's experiment, histories fetched in parallel, cached to Parquet) or a
CSV/Parquet export of the same table.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from .. import names
from .errors import AnalysisInputError

COLUMNS = ["sweep", "cell", "model", "N", "pairs", "tokens", "compute", "step", "metric", "value"]


def from_file(path: str | Path) -> pd.DataFrame:
    """A tidy table exported earlier (CSV or Parquet), checked for the expected columns."""
    p = Path(path)
    if not p.is_file():
        raise AnalysisInputError(f"{p}: no such file")
    df = pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise AnalysisInputError(f"{p}: missing columns {missing} (expected {COLUMNS})")
    return df


def tidy(runs: list[dict], histories: dict[str, dict[str, list[tuple[int, float]]]]) -> pd.DataFrame:
    """Pure: run records + metric histories → the tidy table.

    `runs`: dicts with run_id, sweep, cell, model, N. `histories[run_id][metric]` = [(step, value)].
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
            frames.append(pd.DataFrame({
                "sweep": r["sweep"], "cell": r["cell"], "model": r["model"], "N": float(r["N"]),
                "pairs": [pairs.get(int(s), np.nan) for s in steps],
                "tokens": [tokens.get(int(s), np.nan) for s in steps],
                "step": steps, "metric": metric, "value": vals}))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df["compute"] = 6.0 * df["N"] * df["tokens"]
    return df[COLUMNS]


def from_mlflow(sweep: str, *, tracking_uri: str | None = None, cache: str | Path | None = None,
                max_workers: int = 8) -> pd.DataFrame:
    """The sweep's child runs (tag cell_id) with full metric histories, fetched in parallel."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    exp = client.get_experiment_by_name(sweep)
    if exp is None:
        raise AnalysisInputError(f"no MLflow experiment named {sweep!r} at {client.tracking_uri}")
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.sweep = '{sweep}'", max_results=5000)
    children = [r for r in found if "cell_id" in r.data.tags]
    if not children:
        raise AnalysisInputError(f"sweep {sweep!r} has no cell runs at {client.tracking_uri}")
    runs = []
    for r in children:
        p = r.data.params
        try:
            n = float(p["model.params_non_embedding"])
        except (KeyError, ValueError):
            raise AnalysisInputError(f"run {r.info.run_id} lacks param model.params_non_embedding") from None
        runs.append({"run_id": r.info.run_id, "sweep": sweep, "cell": r.data.tags["cell_id"],
                     "model": p.get("model.name", r.info.run_name), "N": n,
                     "keys": sorted(r.data.metrics)})

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
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(cache) + ".tmp")
        df.to_parquet(tmp)
        tmp.replace(cache)
    return df


def parent_run_id(sweep: str, *, tracking_uri: str | None = None) -> str | None:
    """The sweep's parent run (tag sweep, no cell_id), for logging the analysis back."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(sweep)
    if exp is None:
        return None
    for r in client.search_runs([exp.experiment_id], filter_string=f"tags.sweep = '{sweep}'", max_results=5000):
        if "cell_id" not in r.data.tags and "mlflow.parentRunId" not in r.data.tags:
            return r.info.run_id
    return None
