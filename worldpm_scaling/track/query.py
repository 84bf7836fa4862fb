"""Read a sweep back from MLflow: the runs of a sweep and their metric histories.

For the launcher (`wps status`: which cells ran, how far) and analysis (runs → DataFrame). Histories
are fetched in parallel (one request per run × key; each ~tens of ms over HTTP), which is what
makes reading a whole sweep take seconds instead of minutes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

from .base import SYSTEM_PREFIX
from .mlflow_store import ROLE_TAG, Store, filter_literal

PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class RunInfo:
    """One run of a sweep as MLflow has it (params/tags/metrics are the latest values)."""

    run_id: str
    name: str
    sweep: str
    cell_id: str | None  # None for the sweep's parent run
    role: str  # "sweep" | "cell" | "" (a run not made by this tracker)
    status: str  # RUNNING | FINISHED | FAILED | KILLED | SCHEDULED
    parent_run_id: str | None
    start_time_ms: int | None
    end_time_ms: int | None
    last_step: int | None  # highest optimizer step any metric reached (system/ sample counters left out)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest value per key
    metric_steps: dict[str, int] = field(default_factory=dict)  # highest step per key
    experiment_id: str = ""


def _info(run, sweep: str) -> RunInfo:
    tags = dict(run.data.tags)
    protos = run.data.to_proto().metrics
    steps = {m.key: int(m.step) for m in protos}
    train_steps = [s for k, s in steps.items() if not k.startswith(SYSTEM_PREFIX)]
    return RunInfo(
        run_id=run.info.run_id,
        name=run.info.run_name or tags.get("mlflow.runName", ""),
        sweep=sweep,
        cell_id=tags.get("cell_id"),
        role=tags.get(ROLE_TAG, ""),
        status=run.info.status,
        parent_run_id=tags.get(PARENT_TAG),
        start_time_ms=run.info.start_time,
        end_time_ms=run.info.end_time,
        last_step=max(train_steps) if train_steps else None,
        params=dict(run.data.params),
        tags=tags,
        metrics=dict(run.data.metrics),
        metric_steps=steps,
        experiment_id=run.info.experiment_id,
    )


def sweep_runs(
    uri: str | None, sweep: str, *, experiment: str | None = None, include_parent: bool = True
) -> list[RunInfo]:
    """Every active run tagged with `sweep` in its experiment (default: named after the sweep),
    the parent first, then cells by name. Empty if the experiment does not exist."""
    store = Store(uri)
    exp = store.experiment_id(experiment or sweep, create=False)
    if exp is None:
        return []
    runs, token = [], None
    for _ in range(10_000):
        page = store.client.search_runs(
            [exp], filter_string=f"tags.sweep = {filter_literal(sweep)}", max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    out = [_info(r, sweep) for r in runs]
    if not include_parent:
        out = [r for r in out if r.role != "sweep"]
    return sorted(out, key=lambda r: (r.role != "sweep", r.name, r.run_id))


def find_cell_runs(uri: str | None, sweep: str, *, experiment: str | None = None) -> dict[str, RunInfo]:
    """cell_id → its child run (the oldest, if a race ever left two)."""
    out: dict[str, RunInfo] = {}
    for r in sorted(
        sweep_runs(uri, sweep, experiment=experiment, include_parent=False),
        key=lambda r: (r.start_time_ms or 0, r.run_id),
    ):
        if r.cell_id and r.cell_id not in out:
            out[r.cell_id] = r
    return out


def metric_history(uri: str | None, run_id: str, key: str) -> list[tuple[int, float, int]]:
    """[(step, value, timestamp ms)] of one metric, sorted by step then timestamp."""
    return sorted(Store(uri).history(run_id, key))


def histories(
    uri: str | None, pairs: Iterable[tuple[str, str]], *, workers: int = 8
) -> dict[tuple[str, str], list[tuple[int, float, int]]]:
    """{(run_id, key): history} for many (run_id, key) pairs, fetched in parallel."""
    store = Store(uri)
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pairs)))) as ex:
        got = ex.map(lambda p: sorted(store.history(*p)), pairs)
        return dict(zip(pairs, got))


def experiment_url(uri: str, experiment: str) -> str | None:
    """The UI's runs table URL for an experiment on an HTTP server (None if it does not exist)."""
    store = Store(uri)
    exp = store.experiment_id(experiment, create=False)
    return store.runs_table_url(exp) if exp is not None else None
