"""Experiment tracking behind one protocol (see base.py)."""

from .base import STATUSES, Run, Status, Tracker
from .memory import InMemoryTracker, MemoryRun

__all__ = ["Run", "Tracker", "Status", "STATUSES", "InMemoryTracker", "MemoryRun"]
