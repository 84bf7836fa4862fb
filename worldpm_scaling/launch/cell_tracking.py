"""A cell's tracking across its ranks: rank 0 opens the store (the sweep's parent run, the cell's
run), the others log into memory; every rank's host is tagged on the run, and the first rank of each
other node logs that node's system metrics into rank 0's run (MLflow's node-id convention)."""

from __future__ import annotations

import logging
import os
import socket

from ..config import RunSpec
from .ranks import Ranks

log = logging.getLogger(__name__)


def open_tracking(run: RunSpec, rank: int, job_id: str | None):
    """Rank 0 opens the tracking store (parent sweep run + this cell's run); the others log into memory."""
    from ..track import InMemoryTracker, open_tracker

    if rank != 0:
        return InMemoryTracker().start_cell(run.sweep, run.cell_id, name="rank")
    tracker = open_tracker(run.tracking, spool_dir=f"{run.out_dir}/spool", experiment=run.sweep)
    parent = tracker.start_sweep(run.sweep)
    child = tracker.start_cell(
        run.sweep,
        run.cell_id,
        name=f"{run.model.name}-{run.pairs}-s{run.seed}",
        parent_run_id=parent.run_id,
        params=run.flat_params(),
        tags={
            "slurm_job_id": job_id or "",
            "host": socket.gethostname(),
            "executor": os.environ.get("SUBMITIT_EXECUTOR", ""),
        },
    )
    from ..track.datasets import log_cell_inputs

    log_cell_inputs(child, run)  # training pairs and eval sets: the runs table's Dataset column
    return child


def tag_hosts(trainer, child, host: str) -> tuple[list[str], str | None]:
    """Every rank's host, in rank order, on the tracked run (`hosts`, `world_size`, `nodes`); returns the
    hosts and rank 0's run id (broadcast: the other nodes log their system metrics into it)."""
    from ..train import distributed as dist

    hosts = dist.all_gather_objects(host)
    if trainer.rank == 0:
        child.set_tags(
            {"hosts": ",".join(hosts), "world_size": str(len(hosts)), "nodes": str(len(dict.fromkeys(hosts)))}
        )
    run_id = dist.broadcast_object(getattr(child, "run_id", None) if trainer.rank == 0 else None)
    return hosts, run_id


class NodeMetricsRun:
    """Where a node other than rank 0's logs its system metrics: straight into rank 0's run on the
    tracking *server* (`log_batch`; keys `system/<host>/…`, MLflow's node-id convention). It opens no
    store of its own: with a file or SQLite store only rank 0's node is sampled."""

    def __init__(self, uri: str, run_id: str):
        from mlflow.tracking import MlflowClient

        self.run_id, self._client = run_id, MlflowClient(uri)

    def log_metrics(self, metrics, step: int) -> None:
        import time as _time

        from mlflow.entities import Metric

        ts = int(_time.time() * 1000)
        try:
            self._client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])
        except Exception as e:  # noqa: BLE001 — system metrics never stop training
            log.warning("system metrics of this node not logged: %s", e)


def node_system_metrics(run: RunSpec, ranks: Ranks, hosts: list[str], run_id: str | None):
    """The first rank of every node but rank 0's samples that node (None elsewhere, or where the store is
    not a server)."""
    t = run.tracking
    if ranks.rank == 0 or not run_id or t.backend != "mlflow" or not t.system_metrics:
        return None
    host = hosts[ranks.rank]
    if host == hosts[0] or hosts.index(host) != ranks.rank:  # rank 0's node, or not this node's first rank
        return None
    from ..track.mlflow_store import resolve_uri

    uri = resolve_uri(t.uri)
    if not uri.startswith(("http://", "https://")):
        log.info("system metrics of %s not logged: tracking store %s is not a server", host, uri)
        return None
    from ..track.system_metrics import start_system_metrics

    return start_system_metrics(NodeMetricsRun(uri, run_id), interval_s=t.system_metrics_interval_s, node_id=host)
