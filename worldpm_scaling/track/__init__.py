"""Experiment tracking behind one protocol (see base.py)."""

from .base import STATUSES, Run, Status, Tracker
from .memory import InMemoryTracker, MemoryRun

__all__ = ["Run", "Tracker", "Status", "STATUSES", "InMemoryTracker", "MemoryRun"]


def open_tracker(spec, *, spool_dir=None, experiment=None) -> Tracker:
    """The tracker a TrackingSpec asks for. (The track layer extends this with mlflow and spool.)"""
    if spec.backend in ("memory", "none"):
        return InMemoryTracker()
    raise NotImplementedError(f"tracking backend {spec.backend!r} is not available in this checkout")
