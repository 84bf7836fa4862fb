"""Experiment tracking behind one protocol (see base.py).

Implementations: `MlflowTracker` (batched background `log_batch`, spools when the server is away),
`SpoolTracker` (offline only, replayed by `wps sync`), `InMemoryTracker` (tests). Read helpers for
the launcher and analysis live in `track.query`; a local server for `wps ui`/tests in `track.server`.
"""

from __future__ import annotations

from .base import STATUSES, Run, Status, Tracker
from .memory import InMemoryTracker, MemoryRun

__all__ = [
    "Run",
    "Tracker",
    "Status",
    "STATUSES",
    "InMemoryTracker",
    "MemoryRun",
    "open_tracker",
    "reachable",
    "answering",
]


def open_tracker(spec, *, spool_dir=None, experiment=None) -> Tracker:
    """The tracker a `config.TrackingSpec` asks for.

    mlflow: uri = spec.uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db; experiment =
    spec.experiment, else `experiment`, else the sweep name. If the server does not answer at start
    or goes away mid-run, points go to the spool in `spool_dir` and are replayed in order when it
    answers again (or later with `wps sync`). spool: offline only, into `spool_dir`.
    memory/none: an InMemoryTracker. Cell runs get MLflow's system metrics every
    spec.system_metrics_interval_s unless spec.system_metrics is false.
    """
    if spec.backend in ("memory", "none"):
        return InMemoryTracker()
    from .mlflow_tracker import MlflowTracker, SpoolTracker

    if spec.backend == "spool":
        if spool_dir is None:
            raise ValueError("tracking.backend 'spool' needs a spool folder (spool_dir)")
        return SpoolTracker(spool_dir, experiment=spec.experiment or experiment)
    if spec.backend != "mlflow":
        raise ValueError(f"tracking.backend: unknown backend {spec.backend!r}")
    return MlflowTracker(
        spec.uri,
        experiment=spec.experiment or experiment,
        spool_dir=spool_dir,
        flush_every_s=spec.flush_every_s,
        flush_every_points=spec.flush_every_points,
        system_metrics=spec.system_metrics,
        system_metrics_interval_s=spec.system_metrics_interval_s,
    )


def reachable(uri: str, timeout: float = 5.0) -> bool:
    """Whether an HTTP tracking server answers /health (non-HTTP URIs: True)."""
    if not uri.startswith(("http://", "https://")):
        return True
    from .server import healthy

    return healthy(uri, timeout)


_WARNED: set[str] = set()


def answering(uri: str, *, timeout: float = 3.0, doing: str = "reading runs") -> bool:
    """`reachable`, and if not, one warning on stderr per URI per process (credentials masked):
    a server that answers but refuses this process's credentials raises TrackingAuthError;
    a read that is only informative (`wps status`) skips the server instead of spending MLflow's
    minutes of client retries on it."""
    ok = reachable(uri, timeout)
    if ok and uri.startswith(("http://", "https://")):  # /health needs no credentials; reads do
        from .mlflow_store import Store, TrackingAuthError

        try:
            Store(uri, timeout_s=timeout).check_access()
        except TrackingAuthError:
            raise  # a named error (exit 2), not a silently empty column
        except Exception:  # noqa: BLE001 — answered /health, then not: as if away
            ok = False
    if ok:
        return True
    if uri not in _WARNED:
        import sys

        from .secrets import mask_uri

        _WARNED.add(uri)
        print(
            f"warning: tracking server {mask_uri(uri)} is not answering /health; {doing} skipped "
            "(check tracking.uri / $MLFLOW_TRACKING_URI)",
            file=sys.stderr,
        )
    return False
