"""MLflow behind the Tracker protocol: one experiment per sweep, a parent run per sweep, a child per cell.

Why it is built this way:
- Metrics are buffered and sent with `log_batch` from a background thread: one HTTP call per point
  costs ~60 ms here, a 10k-point batch ~2.4 s (docs/measurements.md). Flushed every
  `flush_every_s` or `flush_every_points`, on `flush()`/`finish()`, at exit and on SIGTERM/SIGUSR2
  (chained to whatever handler was installed before, e.g. submitit's requeue handler).
- Never twice: a step at or below the last step logged *for that key* is dropped; a requeued job
  reattaches to its cell's child run (tag `cell_id`) and starts from the server's per-key maxima.
- Nothing lost: when a batch fails (server away, timeout) the batch goes to the fsync'd spool
  (spool.py) and every later batch follows it there, in order, until the server answers `/health`
  again; then the spool is replayed (points the server already has are skipped — a batch whose
  answer was lost may have been stored) and live sending resumes. A server unreachable at start
  gives a run that lives in the spool until it can be created or reattached by `cell_id`.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Mapping

from .. import faults
from .base import STATUSES, SYSTEM_PREFIX, Status
from .mlflow_store import Store, TrackingAuthError
from .secrets import scrub
from .source import source_tags, sweep_file
from .spool import Point, Spool, cell_key, sweep_key
from .sync import attach, replay_key

if TYPE_CHECKING:  # imports mlflow's monitors: only when a cell run asks for system metrics
    from .system_metrics import RunSystemMetrics

SPOOL_PREFIX = "spool:"


def git_commit(cwd: str | None = None) -> str | None:
    """HEAD of the repository the job runs from (None outside git)."""
    try:
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd or os.getcwd()
        )
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def job_tags(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where this attempt runs: SLURM job id (array jobs as `<job>_<task>`), host, git commit."""
    env = os.environ if environ is None else environ
    tags = {"host": socket.gethostname()}
    if env.get("SLURM_ARRAY_JOB_ID"):
        tags["slurm_job_id"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    elif env.get("SLURM_JOB_ID"):
        tags["slurm_job_id"] = env["SLURM_JOB_ID"]
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


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
        _register(self)

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

    def _at_exit(self) -> None:
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


# -- process-wide flush on exit and signals -------------------------------------------------------
_LIVE: "weakref.WeakSet[MlflowRun]" = weakref.WeakSet()
_HOOKS_INSTALLED = False
_HOOK_LOCK = threading.Lock()


def _register(run: MlflowRun) -> None:
    """Flush at interpreter exit. Signals are not touched here: a cell's owner (launch/cell.py) installs
    its handlers once and flushes through its checkpoint; a standalone script that wants a flush on
    SIGTERM/USR2 calls `install_signal_flush()`."""
    global _HOOKS_INSTALLED
    _LIVE.add(run)
    with _HOOK_LOCK:
        if _HOOKS_INSTALLED:
            return
        atexit.register(_flush_all_at_exit)
        _HOOKS_INSTALLED = True


def install_signal_flush(signals=(signal.SIGTERM, signal.SIGUSR2)) -> None:
    """Flush every live run on these signals, then do what the previous handler did (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            _chain_signal(sig)


def _flush_all_at_exit() -> None:
    for run in list(_LIVE):
        run._at_exit()


def _chain_signal(sig: signal.Signals) -> None:
    """Flush every live run on `sig`, then do what the previous handler would have done."""
    prev = signal.getsignal(sig)

    def handler(signum, frame):
        for run in list(_LIVE):
            try:
                run.flush_from_signal()
            except Exception:  # noqa: BLE001 — the previous handler must still run
                pass
        if callable(prev):
            prev(signum, frame)
        elif prev == signal.SIG_DFL:  # die as the signal would have killed us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(sig, handler)


# -- trackers -----------------------------------------------------------------------------------------
class MlflowTracker:
    """Tracker over an MLflow URI (HTTP server or database); spools to `spool_dir` when it is away.

    `offline=True` never contacts a server (the `spool` backend): runs live in the spool until
    `wps sync DIR --uri …` replays them.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        experiment: str | None = None,
        spool_dir: str | os.PathLike | None = None,
        flush_every_s: float = 5.0,
        flush_every_points: int = 1000,
        offline: bool = False,
        start_timeout_s: float = 5.0,
        request_timeout_s: float = 15.0,
        finish_wait_s: float = 60.0,
        system_metrics: bool = False,
        system_metrics_interval_s: float = 10.0,
        source: bool = True,
    ):
        self.store = None if offline else Store(uri, timeout_s=request_timeout_s)
        self.uri = self.store.uri if self.store else None
        self.experiment = experiment
        self.spool = Spool(spool_dir) if spool_dir is not None else None
        self.start_timeout_s = start_timeout_s
        self._kw: dict[str, Any] = {
            "flush_every_s": flush_every_s,
            "flush_every_points": flush_every_points,
            "finish_wait_s": 0.0 if offline else finish_wait_s,
        }
        self._reachable: bool | None = None
        self._access_checked = False
        self.system_metrics = bool(system_metrics)
        """Sample MLflow's system metrics into each cell run (`open_tracker`: tracking.system_metrics)."""
        self.system_metrics_interval_s = float(system_metrics_interval_s)
        self.source = bool(source)
        """Tag runs with MLflow's source tags (command, git state) and log the sweep YAML to the parent."""

    def _online_now(self) -> bool:
        if self.store is None:
            return False
        if not self.store.is_http:
            return True
        ok = self.store.healthy(timeout_s=self.start_timeout_s)
        if ok and not self._access_checked:  # /health needs no credentials: ask once with them
            try:
                self.store.check_access()
            except TrackingAuthError:
                raise  # at start: a named error, never a silent run in the spool
            except Exception:  # noqa: BLE001 — went away between the two requests: spool below
                ok = False
            else:
                self._access_checked = True
        if not ok and self.spool is None:
            raise ConnectionError(f"MLflow server {self.store.safe_uri} unreachable and no spool folder given")
        if not ok and self._reachable is not False and self.spool is not None:
            print(
                f"warning: MLflow server {self.store.safe_uri} unreachable; spooling to {self.spool.dir} "
                "(replayed when it answers again, or with `wps sync`)",
                file=sys.stderr,
            )
        self._reachable = ok
        return ok

    def _open(self, meta: dict, key: str, role: str, params: Mapping[str, Any] | None) -> MlflowRun:
        online = self._online_now()  # first: refused credentials stop here, before anything is spooled
        if self.spool is not None:
            self.spool.update_meta(key, **meta)
            if params:
                self.spool.update_meta(key, params=scrub(params))
        run_id: str | None = None
        last: dict[str, int] = {}
        if online and self.store is not None:
            run_id, last = attach(self.store, {**meta, "params": scrub(params or {})}, self.spool, key)
        if self.spool is not None:  # points spooled by an earlier attempt count as logged too
            pts, _ = self.spool.read(key)
            for k, _v, _t, s in pts:
                last[k] = max(last.get(k, s), s)
        return MlflowRun(
            store=self.store, spool=self.spool, key=key, run_id=run_id, last_steps=last, role=role, **self._kw
        )

    def start_sweep(self, sweep: str, *, params: Mapping[str, Any] | None = None) -> MlflowRun:
        meta = {"role": "sweep", "sweep": sweep, "name": sweep, "experiment": self.experiment or sweep}
        run = self._open(meta, sweep_key(sweep), "sweep", params)
        if self.source:
            run.set_tags(source_tags())
            yaml_file = sweep_file()
            if yaml_file is not None:  # the spec as the user wrote it, beside the parent's params
                try:
                    run.log_artifact(yaml_file, "sweep")
                except Exception as e:  # noqa: BLE001 — no spool and no server: say so, keep training
                    print(f"warning: sweep spec {yaml_file} not logged: {e}", file=sys.stderr)
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
    ) -> MlflowRun:
        parent = parent_run_id if parent_run_id and not parent_run_id.startswith(SPOOL_PREFIX) else None
        src = source_tags() if self.source else {}
        meta = {
            "role": "cell",
            "sweep": sweep,
            "cell_id": cell_id,
            "name": name,
            "experiment": self.experiment or sweep,
            "parent_run_id": parent,
            "tags": scrub({**job_tags(), **src, **(tags or {})}, max_len=8000),
            "status": None,
        }
        run = self._open(meta, cell_key(cell_id), "cell", params)
        if self.system_metrics:
            from .system_metrics import start_system_metrics

            run._sysmon = start_system_metrics(run, interval_s=self.system_metrics_interval_s)
        return run


def SpoolTracker(folder: str | os.PathLike, *, experiment: str | None = None) -> MlflowTracker:
    """The `spool` backend: offline only; `wps sync FOLDER` sends the runs to a server later."""
    return MlflowTracker(None, experiment=experiment, spool_dir=folder, offline=True)
