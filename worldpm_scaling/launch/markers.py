"""A cell's files on disk that say how it stands: `status.json` (one writer: rank 0 of the cell's
job) and `ranks/<rank>.json` (each rank its own: host, address, pid, and how it ended).

Statuses of `status.json`: RUNNING, FINISHED, FAILED, KILLED (stopped by the user), REQUEUED (saved,
the job requeued itself after a USR2), PREEMPTED (saved after SLURM's SIGTERM: the scheduler requeues
or cancels the job; a relaunch resumes). Writes go through a temporary file named for this host and
process, renamed into place: several writers never share a temporary file (finding #2 of the two-host
review: every rank raced on one `status.tmp` and the loser died before rendezvous).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

NOT_ENDED = ("RUNNING", "REQUEUED", "PREEMPTED")
"""Statuses after which the cell is expected to run again (or is running)."""


def _atomic_write(p: Path, payload: dict) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(p)


def write_marker(out_dir: str, status: str, **extra) -> None:
    _atomic_write(Path(out_dir) / "status.json", {"status": status, "time": time.time(), **extra})


def read_marker(out_dir: str) -> dict:
    p = Path(out_dir) / "status.json"
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def write_rank_record(out_dir: str, rank: int, **fields) -> None:
    """This rank's own record (merged into what it wrote before in this attempt)."""
    p = Path(out_dir) / "ranks" / f"{rank}.json"
    old = read_rank_records(out_dir).get(rank, {}) if fields.get("status") != "STARTING" else {}
    _atomic_write(p, {**old, "rank": rank, **fields, "time": time.time()})


def read_rank_records(out_dir: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    folder = Path(out_dir) / "ranks"
    if not folder.is_dir():
        return out
    for p in folder.glob("*.json"):
        try:
            d = json.loads(p.read_text())
            out[int(d["rank"])] = d
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def describe_lost_rank(error: str, records: dict[int, dict], *, me: int) -> str | None:
    """Which peer a collective failure names ("… closed by peer [10.0.0.3]:45213"): 'rank 1 on host
    n2 (10.0.0.3, pid 4242)', matched by address against the ranks' records, or the ranks that recorded
    an error of their own; None when nothing points at a peer."""
    hits = [r for r, d in sorted(records.items()) if r != me and d.get("address") and f"{d['address']}" in error]
    if not hits:
        hits = [r for r, d in sorted(records.items()) if r != me and d.get("status") == "FAILED"]
    if not hits:
        return None
    return ", ".join(
        f"rank {r} on host {records[r].get('host', '?')} ({records[r].get('address') or '?'}, "
        f"pid {records[r].get('pid', '?')})"
        for r in hits
    )
