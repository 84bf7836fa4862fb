"""One MLflow run behind the Run protocol: buffered metrics, a background sender, the spool fallback.

Why it is built this way:
- Metrics are buffered and sent with `log_batch` from a background thread: one HTTP call per point
  costs ~60 ms here, a 10k-point batch ~2.4 s (docs/measurements.md). Flushed every
  `flush_every_s` or `flush_every_points`, on `flush()`/`finish()`, at exit (track/flush_hooks.py) and,
  where asked, on signals.
- Never twice: a step at or below the last step logged *for that key* is dropped.
- Nothing lost: when a batch fails (server away, timeout) the batch goes to the fsync'd spool
  (spool.py) and every later batch follows it there, in order, until the server answers `/health`
  again; then the spool is replayed (points the server already has are skipped — a batch whose
  answer was lost may have been stored) and live sending resumes.

One class, one job (the life of a run's points: buffer, send, spool, replay, finish); it is long
because the failure paths (server away, credentials refused, signal mid-send, exit) are each spelled out.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping

from .. import faults
from .base import STATUSES, SYSTEM_PREFIX, Status
from .flush_hooks import register
from .mlflow_store import Store, TrackingAuthError
from .secrets import scrub
from .spool import Point, Spool
from .sync import attach, replay_key

if TYPE_CHECKING:  # imports mlflow's monitors: only when a cell run asks for system metrics
    from .system_metrics import RunSystemMetrics

SPOOL_PREFIX = "spool:"
"""A run id that starts with it names a run that lives only in the spool (no server run yet)."""


class MlflowRun:
    """One run (parent or child): buffered metrics, background flush, spool fallback."""

    def __init__(
        self,
        *,
        store: Store | None,
        spool: Spool | None,
        key: str,
        run_id: str | None,
        last_steps: Mapping[str, int] | None = None,
        role: str = "cell",
        flush_every_s: float = 5.0,
        flush_every_points: int = 1000,
        background: bool = True,
        finish_wait_s: float = 60.0,
    ):
        self.store = store
        self._finish_wait_s = float(finish_wait_s)
        self.spool = spool
        self.key = key
        self.role = role
        self._run_id = run_id
        self._last: dict[str, int] = dict(last_steps or {})
        self._buf: list[Point] = []
        # _lock guards _buf and _last (held for microseconds). Re-entrant, and taken with a timeout by
        # senders: a signal can interrupt the main thread while it holds it, and the handler or the
        # exit hook then flushes from that same thread while the sender thread waits.
        self._lock = threading.RLock()
        self._send_lock = threading.RLock()  # one sender at a time (thread, flush(), signal, exit)
        self._every_s = float(flush_every_s)
        self._every_n = int(flush_every_points)
        self._wake = threading.Event()
        self._closed = False
        self._finished: str | None = None
        self._sysmon: RunSystemMetrics | None = None  # on cell runs
        self._offline = run_id is None or bool(spool and spool.pending(key))
        self._requested = 0
        self._done = 0
        self.errors: list[str] = []  # last failures, for diagnostics (no secrets: URIs masked)
        self.auth_error: TrackingAuthError | None = None
        """The server's 401/403 mid-run: points stay in the spool, the error is printed at once and
        raised by finish() (a run whose metrics were refused must not end as if it had succeeded)."""
        self.stats = {"points_sent": 0, "requests": 0, "points_spooled": 0, "send_wall_s": 0.0, "send_cpu_s": 0.0}
        """What sending cost (the sender's own CPU time included): for benchmarks and diagnostics."""
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._loop, name=f"wps-track-{key}", daemon=True)
            self._thread.start()
        register(self)

    # -- protocol ---------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """The MLflow run id, or `spool:<key>` while the run exists only in the spool."""
        return self._run_id or f"{SPOOL_PREFIX}{self.key}"

    @property
    def online(self) -> bool:
        return self._run_id is not None and not self._offline

    def _live(self) -> tuple[Store, str] | None:
        """The store and the run's id while the run is online; None while it is offline (spooling)."""
        if self.store is None or self._run_id is None or self._offline:
            return None
        return self.store, self._run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        step = int(step)
        ts = int(time.time() * 1000)
        pts = [(str(k), float(v), ts, step) for k, v in metrics.items()]
        with self._lock:
            fresh = [p for p in pts if step > self._last.get(p[0], -1 << 62)]
            if not fresh:
                return
            self._buf.extend(fresh)  # one C call: a signal handler cannot split it
            for p in fresh:
                self._last[p[0]] = step
            n = len(self._buf)
        if n >= self._every_n:
            self._wake.set()

    def log_params(self, params: Mapping[str, Any]) -> None:
        clean = scrub(params)
        if self.spool is not None:
            self.spool.update_meta(self.key, params=clean)
        if (live := self._live()) is not None:
            try:
                changed = live[0].ensure_params(live[1], clean)
                if changed:
                    print(
                        f"warning: run {self._run_id} keeps its earlier values of params {changed[:5]} "
                        "(MLflow params are immutable)",
                        file=sys.stderr,
                    )
            except Exception as e:  # noqa: BLE001 — the spool meta keeps them for `wps sync`
                self._went_offline(e)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        clean = scrub(tags, max_len=8000)
        if self.spool is not None:
            self.spool.update_meta(self.key, tags=clean)
        if (live := self._live()) is not None:
            try:
                live[0].set_tags(live[1], clean)
            except Exception as e:  # noqa: BLE001 — server away: spool, replay later
                self._went_offline(e)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        if (live := self._live()) is not None:
            try:
                live[0].log_artifact(live[1], path, artifact_path)
                return
            except Exception as e:  # noqa: BLE001 — server away: spool, replay later
                self._went_offline(e)
        if self.spool is None:
            raise RuntimeError(f"cannot upload {path}: tracking server unreachable and no spool folder")
        self.spool.update_meta(self.key, artifacts=[[os.path.abspath(path), artifact_path]])

    def log_inputs(self, records: list[dict]) -> None:
        """Dataset inputs (`datasets.describe` records): logged now, or kept in the spool's metadata
        for when the run reaches the server."""
        if self.spool is not None:
            self.spool.update_meta(self.key, inputs=records)
        if (live := self._live()) is not None:
            try:
                live[0].log_inputs(live[1], records)
            except Exception as e:  # noqa: BLE001 — server away: spool, replay later
                self._went_offline(e)

    def last_step(self) -> int | None:
        """The highest optimizer step logged (system-metric sample counters are not steps)."""
        with self._lock:
            steps = [s for k, s in self._last.items() if not k.startswith(SYSTEM_PREFIX)]
            return max(steps) if steps else None

    def last_steps(self) -> dict[str, int]:
        """Per metric key, the last step logged (or reattached from the server/spool)."""
        with self._lock:
            return dict(self._last)

    def flush(self) -> None:
        """Send (or spool) everything buffered, now, in the caller's thread."""
        self._send()

    def finish(self, status: Status = "FINISHED", *, wait_s: float | None = None) -> None:
        """Flush, then close the run with `status`. If the server is away, keep trying for
        `wait_s` (default: the tracker's finish_wait_s) before leaving the rest to `wps sync`."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self._stop_system_metrics()
        self._stop_thread()
        self._send(final=True)
        # Wait only while the server answers /health but the replay has not gone through yet (it is
        # back, or flapping); a server that is away is left to `wps sync` at once instead of holding
        # every job for `wait_s`.
        deadline = time.monotonic() + (self._finish_wait_s if wait_s is None else wait_s)
        while (
            self.store is not None
            and self.spool is not None
            and not self.online
            and self.auth_error is None
            and time.monotonic() < deadline
            and self.store.healthy(timeout_s=2.0)
        ):
            time.sleep(1.0)
            self._send(final=True)
        self._finished = status
        if self.spool is not None:
            self.spool.update_meta(self.key, status=status)
        if (live := self._live()) is not None:
            try:
                live[0].set_status(live[1], status)
                return
            except Exception as e:  # noqa: BLE001 — server away: spool, replay later
                self._went_offline(e)
        if self.auth_error is not None:
            raise self.auth_error
        if self.store is not None:
            print(
                f"warning: run {self.run_id} ended {status} while {self.store.safe_uri} was unreachable; "
                f"its points are in {self.spool.dir if self.spool else '(no spool)'} — run `wps sync`",
                file=sys.stderr,
            )

    # -- sending ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._every_s)
            self._wake.clear()
            if self._closed:
                break
            target = self._requested
            try:
                self._send()
            except Exception as e:  # noqa: BLE001 — never kill the flusher; keep the points
                self.errors.append(repr(e)[:300])
            self._done = max(self._done, target)

    def _stop_system_metrics(self) -> None:
        mon, self._sysmon = self._sysmon, None
        if mon is not None:
            mon.finish()  # its last (partial) sample lands in the buffer before the final flush

    def _stop_thread(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)

    def flush_from_signal(self, timeout_s: float = 20.0) -> None:
        """Ask the sender thread to flush and wait for it (a signal handler must not take locks the
        interrupted main thread may hold)."""
        if self._thread is None or not self._thread.is_alive():
            if self._send_lock.acquire(timeout=timeout_s):
                try:
                    self._send()
                finally:
                    self._send_lock.release()
            return
        self._requested += 1
        target = self._requested
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self._done < target and time.monotonic() < deadline:
            time.sleep(0.02)

    def _went_offline(self, err: BaseException) -> None:
        self.errors.append(repr(err)[:300])
        if self._auth_refused(err):
            self._offline = True
            return
        if not self._offline:
            where = self.store.safe_uri if self.store else "?"
            print(
                f"warning: tracking server {where} failed ({type(err).__name__}); spooling run "
                f"{self.run_id} to {self.spool.dir if self.spool else 'memory'}",
                file=sys.stderr,
            )
        self._offline = True

    def _send(self, final: bool = False) -> None:
        with self._send_lock:
            if not self._lock.acquire(timeout=5.0):
                return  # the interrupted main thread holds it: the points stay buffered for the next flush
            try:
                batch, self._buf = self._buf, []
            finally:
                self._lock.release()
            live = self._live()
            if live is None:
                self._send_offline(batch, final)
                return
            if not batch:
                return
            c0, t0 = time.thread_time(), time.perf_counter()
            try:
                faults.point("tracker.before_send")
                live[0].log_points(live[1], batch)
                faults.point("tracker.after_send")
                self.stats["points_sent"] += len(batch)
                self.stats["requests"] += -(-len(batch) // 1000)
            except Exception as e:  # noqa: BLE001 — server away or timed out: spool, replay later
                self._went_offline(e)
                self._keep(batch)
            finally:
                self.stats["send_cpu_s"] += time.thread_time() - c0
                self.stats["send_wall_s"] += time.perf_counter() - t0

    def _keep(self, batch: list[Point]) -> None:
        if self.spool is not None:
            self.stats["points_spooled"] += self.spool.append(self.key, batch)
        else:  # no spool: hold the points in memory, in order, for the next attempt
            with self._lock:
                self._buf[:0] = batch

    def _auth_refused(self, err: BaseException) -> bool:
        """Record a 401/403 (`err` or what it wraps) and say so once, loudly, naming the URI and the
        credential source; True if it was one."""
        if self.store is None:
            return False
        if not isinstance(err, TrackingAuthError):
            try:
                self.store.raise_if_auth(err)
                return False
            except TrackingAuthError as e:
                err = e
        if self.auth_error is None:
            print(
                f"error: {err}; run {self.run_id}'s points are kept in "
                f"{self.spool.dir if self.spool else 'memory'} (nothing is sent as if it had succeeded): "
                "fix the credentials, then `wps sync`",
                file=sys.stderr,
            )
        self.auth_error = err
        return True

    def _send_offline(self, batch: list[Point], final: bool) -> None:
        self._keep(batch)
        if self.store is None or self.spool is None:
            return
        if not self.store.healthy(timeout_s=2.0):
            return
        try:
            if self._run_id is None:
                self._run_id, _ = attach(self.store, self.spool.meta(self.key), self.spool, self.key)
            replay_key(self.store, self.spool, self.key, start=self.spool.cursor(self.key), status=False)
            self._offline = False
            print(
                f"info: tracking server {self.store.safe_uri} is back; run {self._run_id} replayed from the spool",
                file=sys.stderr,
            )
            self.auth_error = None
        except Exception as e:  # noqa: BLE001 — still away: the points stay in the spool
            self.errors.append(repr(e)[:300])
            self._auth_refused(e)

    def flush_at_exit(self) -> None:
        """Interpreter exit: flush; a cell run that was never finished ends KILLED (truthful: this
        attempt did not complete; a requeued attempt reattaches and sets RUNNING again)."""
        if self._finished is not None:
            return
        try:
            self._stop_system_metrics()
            self._stop_thread()
            self._send(final=True)
            if self.role == "cell":
                if self.spool is not None:
                    self.spool.update_meta(self.key, status="KILLED")
                if (live := self._live()) is not None:
                    live[0].set_status(live[1], "KILLED")
                self._finished = "KILLED"
        except Exception:  # noqa: BLE001 — best effort at interpreter exit
            pass
