"""InMemoryTracker: the Tracker protocol over dicts, for tests and for code that wants no tracking."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping

from .base import STATUSES, Status


@dataclass
class MemoryRun:
    run_id: str
    name: str
    parent_run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)
    inputs: list[dict] = field(default_factory=list)
    status: str = "RUNNING"
    _last: int | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self._last is not None and step <= self._last:
            return  # already logged before a restart: never twice
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, float(v)))
        self._last = step

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update({k: str(v) for k, v in params.items()})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        self.artifacts.append((path, artifact_path))

    def log_inputs(self, records: list[dict]) -> None:
        self.inputs = [*self.inputs, *[r for r in records if r not in self.inputs]]

    def last_step(self) -> int | None:
        return self._last

    def flush(self) -> None:
        pass

    def finish(self, status: Status = "FINISHED") -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.status = status

    def history(self, key: str) -> list[tuple[int, float]]:
        return list(self.metrics.get(key, []))


class InMemoryTracker:
    """Runs live in `self.runs` (run_id → MemoryRun); reattaches cells by cell_id like MLflow does."""

    def __init__(self) -> None:
        self.runs: dict[str, MemoryRun] = {}
        self._ids = itertools.count()

    def _new(self, name: str, parent: str | None) -> MemoryRun:
        run = MemoryRun(run_id=f"mem-{next(self._ids)}", name=name, parent_run_id=parent)
        self.runs[run.run_id] = run
        return run

    def start_sweep(self, sweep: str, *, params: Mapping[str, Any] | None = None) -> MemoryRun:
        for r in self.runs.values():
            if r.tags.get("sweep") == sweep and r.parent_run_id is None and "cell_id" not in r.tags:
                r.status = "RUNNING"
                return r
        run = self._new(sweep, None)
        run.set_tags({"sweep": sweep})
        run.log_params(params or {})
        return run

    def start_cell(
        self,
        sweep: str,
        cell_id: str,
        *,
        name: str,
        parent_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> MemoryRun:
        for r in self.runs.values():
            if r.tags.get("cell_id") == cell_id and r.tags.get("sweep") == sweep:
                r.status = "RUNNING"
                r.set_tags(tags or {})
                return r
        run = self._new(name, parent_run_id)
        run.set_tags({"sweep": sweep, "cell_id": cell_id, **(tags or {})})
        run.log_params(params or {})
        return run
