"""System metrics on a cell run, sampled by MLflow's own system-metrics monitor.

MLflow's `SystemMetricsMonitor` brings the collectors (CPU utilisation, system memory, disk, network,
and per-GPU utilisation/memory/power through NVML when `nvidia-ml-py` and a driver are present) and
their aggregation; the UI shows the resulting `system/…` keys in the run's *System metrics* tab.
Two parts of it do not fit a training job, so this subclass replaces them:

- its sampling loop asks the server for the run's status after every sample (`MlflowClient.get_run`,
  which retries an unreachable server for minutes) and its `BatchMetricsLogger` writes with a client
  of its own: with the server away the monitor would stall and then stop, and its points would be
  lost. Here the loop only samples, and each aggregated sample goes through the cell's `MlflowRun`
  like any other metric: batched with the training metrics, spooled during an outage, replayed.
- its constructor opens an `MlflowClient`, which for the default `sqlite:///mlflow.db` creates that
  file in the working directory. This one opens nothing.

Steps: MLflow numbers system-metric samples 0, 1, 2, … (not optimizer steps); a requeued job
continues after the highest `system/` step the run already has, as MLflow's `resume_logging` does.
Those keys are left out of `last_step()`, which tells the trainer where to resume.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Mapping

from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from .base import SYSTEM_PREFIX

_log = logging.getLogger(__name__)


def next_system_step(last_steps: Mapping[str, int]) -> int:
    """The step after the highest `system/…` step already logged (0 if none)."""
    steps = [s for k, s in last_steps.items() if k.startswith(SYSTEM_PREFIX)]
    return max(steps) + 1 if steps else 0


class RunSystemMetrics(SystemMetricsMonitor):
    """MLflow's system-metrics collectors, logging through a Tracker `Run` (anything with
    `log_metrics(metrics, step)`; `last_steps()` if it has one, for resuming the step counter).

    interval_s: seconds between samples; samples_before_logging: samples averaged into one logged
    step (MLflow's default 1). node_id: None on rank 0 (keys `system/<name>`); a node name gives
    `system/<node>/<name>` (MLflow's multi-node convention). $MLFLOW_SYSTEM_METRICS_NODE_ID wins,
    as in MLflow."""

    def __init__(self, run, *, interval_s: float = 10.0, samples_before_logging: int = 1, node_id: str | None = None):
        if interval_s <= 0:
            raise ValueError(f"tracking.system_metrics_interval_s must be > 0, got {interval_s}")
        # Not SystemMetricsMonitor.__init__: it opens an MlflowClient (see the module docstring).
        self.monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
        gpu = self._initialize_gpu_monitor()  # NVIDIA (pynvml), else AMD (pyrsmi), else None
        if gpu is not None:
            self.monitors.append(gpu)
        self.sampling_interval = float(interval_s)
        self.samples_before_logging = max(1, int(samples_before_logging))
        self.node_id = os.environ.get("MLFLOW_SYSTEM_METRICS_NODE_ID") or node_id
        self._metrics_prefix = SYSTEM_PREFIX
        self._shutdown_event = threading.Event()
        self._process: threading.Thread | None = None
        self._run = run
        self._run_id = getattr(run, "run_id", None)
        last = run.last_steps() if hasattr(run, "last_steps") else {}
        self._logging_step = next_system_step(last)
        self.samples_logged = 0
        self.errors: list[str] = []
        self.cpu_s = 0.0
        """CPU seconds the sampling thread spent collecting and logging (for the overhead benchmark)."""
        import psutil

        psutil.cpu_percent()  # the first call only starts psutil's interval; the first sample is then real

    @property
    def gpu(self) -> bool:
        """Whether a GPU collector (NVML or ROCm) is among the monitors."""
        return len(self.monitors) > 3

    def monitor(self) -> None:
        """Sample every `interval_s`; log the aggregate every `samples_before_logging` samples. On
        shutdown a partial window is still logged, so even a short run gets one sample."""
        while not self._shutdown_event.is_set():
            taken = 0
            for _ in range(self.samples_before_logging):
                c0 = time.thread_time()
                try:
                    self.collect_metrics()
                    taken += 1
                except Exception as e:  # noqa: BLE001 — e.g. a GPU that fell off the bus: keep training
                    self.errors.append(repr(e)[:300])
                self.cpu_s += time.thread_time() - c0
                if self._shutdown_event.wait(self.sampling_interval):
                    break
            if taken:
                c0 = time.thread_time()
                self._publish_safely()
                self.cpu_s += time.thread_time() - c0

    def _publish_safely(self) -> None:
        try:
            metrics = self.aggregate_metrics()
            if metrics:
                self.publish_metrics(metrics)
        except Exception as e:  # noqa: BLE001 — a failing collector must never stop training
            self.errors.append(repr(e)[:300])
            _log.warning("system metrics: %s", e)
            for m in self.monitors:
                m.clear_metrics()

    def publish_metrics(self, metrics: Mapping[str, float]) -> None:
        prefix = self._metrics_prefix + (f"{self.node_id}/" if self.node_id else "")
        self._run.log_metrics({prefix + k: float(v) for k, v in metrics.items()}, step=self._logging_step)
        self._logging_step += 1
        self.samples_logged += 1
        for m in self.monitors:
            m.clear_metrics()

    def finish(self, timeout_s: float = 10.0) -> None:
        """Stop sampling (the last partial window is logged by the loop before it exits)."""
        if self._process is None:
            return
        self._shutdown_event.set()
        if self._process is not threading.current_thread():
            self._process.join(timeout_s)
        self._process = None


def start_system_metrics(run, *, interval_s: float, node_id: str | None = None) -> RunSystemMetrics | None:
    """Start sampling into `run`; None (with a warning) where the collectors cannot start (no psutil)."""
    try:
        mon = RunSystemMetrics(run, interval_s=interval_s, node_id=node_id)
    except ImportError as e:
        _log.warning("system metrics off: %s", e)
        return None
    mon.start()
    return mon
