"""Process-wide flush of live runs: at interpreter exit always, on SIGTERM/SIGUSR2 only when asked.

Signals are never touched as a side effect of opening a run: a cell's owner (launch/cell.py) installs
its handlers once and flushes through its checkpoint; a standalone script that wants a flush on
SIGTERM/USR2 calls `install_signal_flush()`.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref
from typing import Protocol


class Flushable(Protocol):
    """What a live run offers the hooks (track/mlflow_run.py's MlflowRun)."""

    def flush_at_exit(self) -> None: ...

    def flush_from_signal(self, timeout_s: float = 20.0) -> None: ...


_LIVE: weakref.WeakSet[Flushable] = weakref.WeakSet()
_HOOKS_INSTALLED = False
_HOOK_LOCK = threading.Lock()


def register(run: Flushable) -> None:
    """Flush `run` at interpreter exit (while it lives)."""
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
        run.flush_at_exit()


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
