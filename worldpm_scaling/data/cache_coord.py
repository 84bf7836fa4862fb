"""Who builds a cache and who waits: the build lock, the failure marker, and the waiting ranks.

One process builds under a file lock. A failed build, or a lock that cannot be taken, leaves a failure
marker that ends the other ranks' wait (judged by its attempt id, never by a clock of another host).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from .cache_key import is_built

log = logging.getLogger(__name__)


class CacheLockError(ValueError):
    """The cache's lock file cannot be locked (a filesystem without flock: Lustre mounted without
    `-o flock`, NFS without lockd). A ValueError, so the CLI reports it as a named error."""

    def __init__(self, message: str, *, errno: int | None = None, filename: str | None = None):
        super().__init__(message)
        self.errno, self.filename = errno, filename


LOCK_HINT = (
    "this filesystem cannot lock files: mount it with flock support (Lustre: `-o flock`; NFS: run "
    "lockd/rpc.statd), or build the cache once without the lock, from one process, with "
    "`wps data tokenize SWEEP.yaml --no-lock` before the job (its ranks then only read the cache)"
)


@contextlib.contextmanager
def build_lock(lock: Path):
    """One builder per cache on this filesystem: a second process waits here, then finds it built.
    A lock that cannot be taken is a CacheLockError naming the file and the errno."""
    import fcntl

    try:
        f = open(lock, "a")
    except OSError as e:
        raise CacheLockError(
            f"{lock}: cannot open the tokenize lock file ({_errname(e)}: {e.strerror})",
            errno=e.errno,
            filename=str(lock),
        ) from e
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:
            raise CacheLockError(
                f"{lock}: cannot take the tokenize lock (flock: {_errname(e)}, {e.strerror}); {LOCK_HINT}",
                errno=e.errno,
                filename=str(lock),
            ) from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _errname(e: OSError) -> str:
    return _errno.errorcode.get(e.errno or 0, f"errno {e.errno}")


def launch_token(env=None) -> str | None:
    """An id that every rank of one launch shares and no earlier launch had: the SLURM job, step and
    restart count, and/or the torchelastic run id and restart count (None outside both). A failure
    marker carrying the waiter's own token is this launch's failure, however early it was written."""
    env = os.environ if env is None else env
    parts = []
    if env.get("SLURM_JOB_ID"):
        step, restarts = env.get("SLURM_STEP_ID", ""), env.get("SLURM_RESTART_COUNT", "0")
        parts.append(f"slurm:{env['SLURM_JOB_ID']}.{step}:{restarts}")
    if env.get("TORCHELASTIC_RUN_ID", "none") != "none":
        parts.append(f"elastic:{env['TORCHELASTIC_RUN_ID']}:{env.get('TORCHELASTIC_RESTART_COUNT', '0')}")
    return "|".join(parts) or None


def failure_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.failed"


def write_failure(folder: Path, error: BaseException, *, launch: str | None) -> None:
    """Write the failure marker that ends the waits on `folder` (best effort: the error is raised anyway).
    Its `attempt` is new for every write, so a waiter knows a new failure from an old one without a clock;
    `written` is the writing host's clock, for people only."""
    marker = failure_path(folder)
    rec = {
        "attempt": uuid.uuid4().hex,
        "launch": launch,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "error": f"{type(error).__name__}: {error}",
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = marker.with_name(f"{marker.name}.{rec['attempt']}.tmp")
    try:
        tmp.write_text(json.dumps(rec) + "\n")
        os.replace(tmp, marker)  # atomic: a waiter reads a whole marker or none
    except OSError as e:
        log.error("%s: could not write the failure marker (%s); ranks waiting for this cache will not know", marker, e)
        tmp.unlink(missing_ok=True)


def _read_failure(folder: Path) -> bytes | None:
    try:
        return failure_path(folder).read_bytes()
    except FileNotFoundError:
        return None


def _describe_failure(raw: bytes) -> tuple[str, str | None]:
    """(a sentence for the error, the launch token) of a marker; a marker of format 1 is plain text."""
    try:
        rec = json.loads(raw)
        where = f"on host {rec.get('host')} (pid {rec.get('pid')}, written {rec.get('written')} by its clock)"
        return f"{where}: {rec.get('error')}", rec.get("launch")
    except (ValueError, AttributeError):
        return raw.decode(errors="replace").strip(), None


class CacheWaitError(RuntimeError):
    """A rank gave up waiting for rank 0's tokenization (it failed, or took longer than allowed)."""


def wait_for_cache(
    folder: Path, *, timeout_s: float = 24 * 3600.0, poll_s: float = 0.5, launch: str | None = None
) -> Path:
    """Wait until another process (rank 0) has built `folder`; raise CacheWaitError if its build failed.

    A failure marker counts when it was written after this wait began (its attempt id differs from the
    one found at the start) or when it carries this launch's token (`launch`, default launch_token():
    rank 0 failed before this rank began to wait). No clock is compared: hosts' clocks may disagree."""
    launch = launch_token() if launch is None else launch
    at_start = _read_failure(folder)
    t0 = time.monotonic()
    while not is_built(folder):
        raw = _read_failure(folder)
        if raw is not None:
            what, marker_launch = _describe_failure(raw)
            if raw != at_start or (launch is not None and marker_launch == launch):
                raise CacheWaitError(
                    f"{folder}: the tokenization this rank waits for failed {what} (marker {failure_path(folder)})"
                )
        if time.monotonic() - t0 > timeout_s:
            raise CacheWaitError(
                f"{folder}: not built after {timeout_s:.0f} s; run `wps data tokenize SWEEP.yaml` before the job"
            )
        time.sleep(poll_s)
    return folder
