"""Fault injection for the reliability tests: `point(name)` kills this process with SIGKILL when the
environment asks for it, so a test can stop the real trainer at an exact place (between an update and
its logging, inside a checkpoint save before or after the rename, inside a tracker flush …) and then
check that a resumed run loses and duplicates nothing.

    WPS_FAULT=<name>[:<nth>]     kill at the nth time (1-based, default 1) `point(name)` is reached
    WPS_FAULT_RANK=<r>           only on this rank (default: every rank)
    WPS_FAULT_ACTION=stop        SIGSTOP instead of SIGKILL: the test holds the process there (and
                                 later sends SIGCONT), e.g. to take the tracking server away mid-run
    WPS_FAULT_ACTION=raise       raise InjectedFault (an OSError) there instead: a rank that fails
                                 where the others do not (e.g. cannot read the chosen checkpoint)
    WPS_FAULT_HIDE=<name>        checkpoint listings leave out entries of this name (on WPS_FAULT_RANK
                                 only, if set): a stale directory listing of a shared filesystem

Unset, `point` is one dictionary lookup. The names in use are listed in POINTS (docs/reliability.md
says what each guards).
"""

from __future__ import annotations

import os
import signal
import sys

POINTS = (
    "train.after_update",  # optimizer step applied, its metrics not yet handed to the tracker
    "train.after_log",  # metrics handed to the tracker (buffered, not yet sent)
    "ckpt.before_save",  # tracker flushed, checkpoint not yet written
    "ckpt.before_rename",  # checkpoint bytes written to the .tmp file and fsync'd, not yet renamed
    "ckpt.after_rename",  # step_N.pt in place, its .sha256 sidecar not yet written
    "ckpt.before_rotate",  # checkpoint and sidecar complete, older checkpoints not yet deleted
    "tracker.before_send",  # a batch taken out of the tracker's buffer, not yet sent
    "tracker.after_send",  # a batch accepted by the server, the tracker's bookkeeping not updated
)

OTHER_POINTS = (
    "ckpt.load",  # a plain-torch checkpoint about to be read on resume (with WPS_FAULT_ACTION=raise)
)
"""Points outside the kill chain of tests/integration/test_faults_trainer.py: failures of one rank."""


class InjectedFault(OSError):
    """WPS_FAULT_ACTION=raise: the failure a test asked for at a fault point."""


def _on_rank() -> bool:
    rank = os.environ.get("WPS_FAULT_RANK")
    return rank is None or rank == os.environ.get("RANK", "0")


def hide_listed(paths: list) -> list:
    """`paths` without those named by WPS_FAULT_HIDE (comma-separated names) on the chosen rank."""
    hide = os.environ.get("WPS_FAULT_HIDE")
    if not hide or not _on_rank():
        return paths
    names = set(hide.split(","))
    return [p for p in paths if getattr(p, "name", str(p)) not in names]


_seen: dict[str, int] = {}


def _parse(spec: str) -> tuple[str, int]:
    name, _, nth = spec.partition(":")
    try:
        n = int(nth) if nth else 1
    except ValueError:
        raise ValueError(f"WPS_FAULT={spec!r}: the part after ':' must be an integer (the nth hit)") from None
    if name not in POINTS + OTHER_POINTS or n < 1:
        raise ValueError(
            f"WPS_FAULT={spec!r}: expected <point>[:<nth ≥ 1>] with point one of {', '.join(POINTS + OTHER_POINTS)}"
        )
    return name, n


def point(name: str) -> None:
    """SIGKILL this process if WPS_FAULT names `name` and this is its nth hit (a no-op otherwise)."""
    spec = os.environ.get("WPS_FAULT")
    if not spec:
        return
    want, nth = _parse(spec)
    if want != name:
        return
    if not _on_rank():
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == nth:
        if os.environ.get("WPS_FAULT_ACTION") == "raise":
            raise InjectedFault(f"injected fault at {name} (hit {nth}, rank {os.environ.get('RANK', '0')})")
        stop = os.environ.get("WPS_FAULT_ACTION") == "stop"
        sys.stderr.write(f"faults: {'SIGSTOP' if stop else 'SIGKILL'} at {name} (hit {nth})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP if stop else signal.SIGKILL)
