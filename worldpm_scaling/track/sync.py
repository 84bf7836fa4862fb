"""Find-or-create runs by identity, and replay spooled points into MLflow exactly once.

`attach` is how every run reaches the server — live at job start, live after an outage, and in
`wps sync`: the sweep's parent is the oldest run tagged (sweep, wps.role=sweep), a cell's child
the oldest run tagged `cell_id`.

Jobs race to create these runs (every cell of an array starts at once and each needs the sweep's
parent). "Each creates one, all keep the oldest" is not enough: a run's start time is the client's
clock before its request, so a slow create can commit *after* a faster job already looked, saw
only its own run and kept it (CI caught two parents that way). The sweep parent is therefore
elected: MLflow's one atomic compare-and-set is the unique experiment name, so the job that
creates the lock experiment `wps-lock/<experiment id>/sweep/<sweep>` creates the parent, records
its id as a tag there and deletes the lock experiment (hidden from the UI; the name stays taken);
the others read the id. A cell's child keeps create-and-converge: two jobs of one cell at once
happen only when a cell is submitted twice.

`replay_key` sends what the server lacks. MLflow stores duplicate metric points if asked to, so the
server is asked first: one `get_run` gives the highest step per key (latest_metrics keep each key's
maximum step); points above it cannot be there yet, and only keys with points at or below it need
their history fetched (in parallel). Replaying twice therefore equals replaying once.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, overload

from .mlflow_store import ROLE_TAG, Store, TrackingAuthError, filter_literal
from .secrets import scrub
from .spool import Point, Spool, SpoolError, find_spools, sweep_key

PARENT_TAG = "mlflow.parentRunId"


@dataclass
class ReplayResult:
    """What one replay did for one spooled run."""

    key: str
    run_id: str
    sent: int = 0
    skipped: int = 0
    status: str | None = None
    not_sent: int = 0
    """Points (or lines that should have been points) this replay could not send."""
    problems: list[str] = field(default_factory=list)
    """Why, one line each (a garbled line, a key the server refused, a cursor past the end, …)."""


@dataclass
class SyncReport:
    runs: list[ReplayResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Spooled runs that could not be replayed at all: `key: why`."""

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.runs)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.runs)

    @property
    def not_sent(self) -> int:
        return sum(r.not_sent for r in self.runs)

    def complete(self) -> bool:
        return not self.failed and not self.not_sent and not any(r.problems for r in self.runs)


class SyncIncomplete(SpoolError):
    """`wps sync` could not send everything: names each run and how many points it did not send."""

    def __init__(self, report: SyncReport):
        self.report = report
        lines = [
            f"{r.key}: {r.not_sent} point(s) not sent" + (f" ({'; '.join(r.problems)})" if r.problems else "")
            for r in report.runs
            if r.not_sent or r.problems
        ]
        lines += report.failed
        super().__init__(
            f"sync incomplete: {report.sent} points sent, {report.skipped} already on the server, "
            f"{report.not_sent} NOT sent in {sum(1 for r in report.runs if r.not_sent or r.problems)} run(s), "
            f"{len(report.failed)} run(s) not replayed at all; those runs keep their status (none is marked "
            f"finished with points missing): " + " | ".join(lines[:20]) + (" | …" if len(lines) > 20 else "")
        )


LOCK_TAG = "wps.run_id"
LOCK_WAIT_S = 60.0  # how long losers wait for the winner to record the run before creating one


def _delete_run(store: Store, run_id: str, attempts: int = 5) -> None:
    """Delete a losing duplicate; a busy server gets retried, an already-deleted run is fine."""
    for i in range(attempts):
        try:
            store.client.delete_run(run_id)
            return
        except TrackingAuthError:
            raise
        except Exception as e:  # noqa: BLE001 — retried, or dropped when it already exists
            if "RESOURCE_DOES_NOT_EXIST" in str(e) or "already" in str(e).lower() or i == attempts - 1:
                return
            time.sleep(0.5 * (i + 1))


def _converge(store: Store, exp_id: str, filt: str, mine: str | None) -> str:
    runs = store.find_runs(exp_id, filt)
    if not runs:
        if mine is None:
            raise LookupError(filt)
        return mine
    winner = runs[0].info.run_id
    if mine is not None and mine != winner:
        _delete_run(store, mine)
    return winner


def elect_run(
    store: Store, exp_id: str, filt: str, lock: str, create, *, wait_s: float = LOCK_WAIT_S, poll_s: float = 0.25
) -> str:
    """The one run matching `filt`, created by exactly one of any number of racing callers.

    `create()` makes the run and returns its id. The caller that creates the lock experiment
    `lock` calls it; the others wait (up to `wait_s`) for the id it records. A winner that died
    before recording leaves a lock without the tag: after `wait_s` the others fall back to
    create-and-converge."""
    lock_id = store.create_experiment_once(lock)
    if lock_id is not None:
        found = store.find_runs(exp_id, filt)  # made before the lock existed (an older version)
        run_id = found[0].info.run_id if found else create()
        store.client.set_experiment_tag(lock_id, LOCK_TAG, run_id)
        store.client.delete_experiment(lock_id)
        return run_id
    deadline = time.monotonic() + wait_s
    while True:
        exp = store.client.get_experiment_by_name(lock)
        recorded = (exp.tags or {}).get(LOCK_TAG) if exp is not None else None
        if recorded and _exists(store, recorded):
            return recorded
        found = store.find_runs(exp_id, filt)
        if found:
            return found[0].info.run_id
        if recorded or exp is None or time.monotonic() > deadline:
            break  # the elected run was deleted since, the lock was purged, or its winner died
        time.sleep(poll_s)
    return _converge(store, exp_id, filt, create())


@overload
def sweep_run(store: Store, sweep: str, experiment: str | None = None, *, create: Literal[True] = ...) -> str: ...
@overload
def sweep_run(store: Store, sweep: str, experiment: str | None = None, *, create: bool) -> str | None: ...


def sweep_run(store: Store, sweep: str, experiment: str | None = None, *, create: bool = True) -> str | None:
    """The sweep's parent run id (created if missing and `create`, by one job however many race)."""
    exp = store.experiment_id(experiment or sweep)
    filt = f"tags.sweep = {filter_literal(sweep)} and tags.`{ROLE_TAG}` = 'sweep'"
    found = store.find_runs(exp, filt)
    if found:
        return found[0].info.run_id
    if not create:
        return None
    return elect_run(
        store,
        exp,
        filt,
        f"wps-lock/{exp}/sweep/{sweep}",
        lambda: store.create_run(exp, name=sweep, tags={"sweep": sweep, ROLE_TAG: "sweep"}),
    )


def attach(
    store: Store, meta: Mapping[str, Any], spool: Spool | None = None, key: str | None = None
) -> tuple[str, dict[str, int]]:
    """Create or reattach the run `meta` describes; returns (run_id, per-key last step on the server).

    meta: role (sweep|cell), sweep, experiment, name, and for cells cell_id, parent_run_id, tags,
    params. A reattached run (cell or sweep) is set RUNNING again; its params are completed, never changed."""
    role = meta.get("role", "cell")
    sweep = meta.get("sweep")
    if not sweep:
        raise SpoolError(f"spooled run {key!r} has no sweep in its metadata")
    experiment = meta.get("experiment") or sweep
    if role == "sweep":  # a job (re)starting means its sweep runs again, whatever a last close said
        run_id = sweep_run(store, sweep, experiment)
        store.set_running(run_id)
        existing = None
    else:
        cell_id = meta.get("cell_id")
        if not cell_id:
            raise SpoolError(f"spooled run {key!r} has neither a cell_id nor role 'sweep'")
        exp = store.experiment_id(experiment)
        filt = f"tags.cell_id = {filter_literal(cell_id)} and tags.sweep = {filter_literal(sweep)}"
        parent = meta.get("parent_run_id") or sweep_run(store, sweep, experiment)
        tags = {
            **scrub(meta.get("tags") or {}, max_len=8000),
            "sweep": sweep,
            "cell_id": cell_id,
            ROLE_TAG: "cell",
            PARENT_TAG: parent,
        }
        found = store.find_runs(exp, filt)
        if found:
            run_id = found[0].info.run_id
            store.set_running(run_id)
            store.set_tags(run_id, tags)
            existing = found[0].data.params
        else:
            mine = store.create_run(exp, name=meta.get("name") or cell_id, tags=tags)
            run_id = _converge(store, exp, filt, mine)
            existing = {} if run_id == mine else None
    if meta.get("params"):
        store.ensure_params(run_id, meta["params"], existing=existing)
    if spool is not None and key is not None:
        spool.update_meta(key, run_id=run_id, server=store.safe_uri)
    return run_id, last_steps(store, run_id)


def last_steps(store: Store, run_id: str) -> dict[str, int]:
    """Per metric key, the highest step the server holds for the run (one request)."""
    run = store.client.get_run(run_id)
    return {m.key: int(m.step) for m in run.data.to_proto().metrics}


def missing_points(store: Store, run_id: str, points: list[Point]) -> tuple[list[Point], int]:
    """Points the server does not have yet (first copy of each (key, step)), in step order; and how
    many were skipped as already there or repeated in the spool."""
    top = last_steps(store, run_id)
    check = sorted({k for k, _v, _t, s in points if s <= top.get(k, -1)})
    have: set[tuple[str, int]] = set()
    if check:
        with ThreadPoolExecutor(max_workers=min(8, len(check))) as ex:
            for k, hist in zip(check, ex.map(lambda k: store.history(run_id, k), check)):
                have.update((k, s) for s, _v, _t in hist)
    todo: list[Point] = []
    for p in points:
        ks = (p[0], p[3])
        if ks in have:
            continue
        have.add(ks)
        todo.append(p)
    todo.sort(key=lambda p: p[3])  # stable: file order within a step
    return todo, len(points) - len(todo)


def replay_key(store: Store, spool: Spool, key: str, *, start: int = 0, status: bool = True) -> ReplayResult:
    """Send one spooled run's points from byte `start` (0 = all, checked against the server), its
    params/tags/artifacts and, if `status`, the status it finished with; advance its cursor."""
    meta = spool.meta(key)
    run_id = meta.get("run_id")
    if run_id and not _exists(store, run_id):
        run_id = None  # spooled against another server, or deleted: find it again by identity
    if not run_id:
        if not meta:
            raise SpoolError(f"{spool.dir}/{key}: points without metadata (no run identity to replay into)")
        run_id, _ = attach(store, meta, spool, key)
    problems: list[str] = []
    size = spool.size(key)
    if start > size:  # a cursor from another copy of the file, or a file that was truncated: check it all
        print(
            f"warning: {spool.dir}/{key}: replay cursor {start} is past the end of the points file ({size} "
            "bytes); every point is checked against the server instead",
            file=sys.stderr,
        )
        start = 0
    pts, end, bad, torn = spool.scan(key, start)
    lost = bad
    if bad:
        problems.append(f"{bad} line(s) of {spool.dir / (key + '.jsonl')} are not metric records")
    if torn and meta.get("status"):
        # the writer has ended (its run has a final status): an unterminated last line is a point cut short
        lost += 1
        problems.append(f"the last line of {spool.dir / (key + '.jsonl')} is cut short ({torn} bytes)")
    todo, skipped = missing_points(store, run_id, pts)
    sent, rejected = _send(store, run_id, todo)
    for k, (n, why) in sorted(rejected.items()):
        lost += n
        problems.append(f"the server refused {n} point(s) of {k!r}: {why}")
    spool.set_cursor(key, max(end, spool.cursor(key)))
    if meta.get("tags"):
        tags = dict(meta["tags"])
        if meta.get("role") == "cell":
            tags.update({"cell_id": meta.get("cell_id"), "sweep": meta.get("sweep")})
        store.set_tags(run_id, tags)
    if meta.get("params"):
        store.ensure_params(run_id, meta["params"])
    if meta.get("inputs"):
        store.log_inputs(run_id, meta["inputs"])
    for path, artifact_path in meta.get("artifacts", []):
        if os.path.exists(path):
            store.log_artifact(run_id, path, artifact_path)
        else:
            print(f"warning: spooled artifact {path} no longer exists; not uploaded", file=sys.stderr)
    done = meta.get("status") if status else None
    if done and problems:  # never FINISHED (or any end) with points missing: the run stays as it is, tagged
        store.set_tags(run_id, {"wps.sync_incomplete": f"{lost} point(s) not sent: {'; '.join(problems)}"[:4000]})
        done = None
    elif done:
        store.set_status(run_id, done)
    return ReplayResult(
        key=key, run_id=run_id, sent=sent, skipped=skipped, status=done, not_sent=lost, problems=problems
    )


def _send(store: Store, run_id: str, todo: list[Point]) -> tuple[int, dict[str, tuple[int, str]]]:
    """Send points; a key the server refuses (a name MLflow rejects) loses only its own points, not the
    run's: (points sent, {refused key: (points, why)}). A server that stopped answering raises, as before
    (the live tracker spools and retries)."""
    try:
        store.log_points(run_id, todo)
        return len(todo), {}
    except TrackingAuthError:  # the credentials, not a key: every key would be refused alike
        raise
    except Exception:
        if store.is_http and not store.healthy(timeout_s=5):
            raise
    left, _ = missing_points(store, run_id, todo)  # batches before the failure are on the server already
    sent, refused = len(todo) - len(left), {}
    by_key: dict[str, list[Point]] = {}
    for p in left:
        by_key.setdefault(p[0], []).append(p)
    for k, pts in by_key.items():
        try:
            store.log_points(run_id, pts)
            sent += len(pts)
        except Exception as e:
            if store.is_http and not store.healthy(timeout_s=5):
                raise
            refused[k] = (len(pts), str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
    return sent, refused


def _exists(store: Store, run_id: str) -> bool:
    try:
        return store.client.get_run(run_id).info.lifecycle_stage == "active"
    except TrackingAuthError:  # not "gone": the same credentials cannot create it either
        raise
    except Exception:  # noqa: BLE001 — RESOURCE_DOES_NOT_EXIST
        return False


def sync(root: str | os.PathLike, uri: str | None = None, *, full: bool = True, progress=None) -> SyncReport:
    """Replay every spool folder under `root` into the store at `uri`.

    full=True re-checks every spooled point against the server (idempotent even if the cursor files
    were lost or the spool was copied); full=False starts each run at its replay cursor."""
    store = Store(uri)
    if store.is_http and not store.healthy(timeout_s=10):
        from .mlflow_store import TrackingError

        raise TrackingError(f"MLflow server {store.safe_uri} is not answering /health")
    report = SyncReport()
    for folder in find_spools(Path(root)):
        spool = Spool(folder)
        for key in spool.keys():
            start = 0 if full else spool.cursor(key)
            try:
                report.runs.append(replay_key(store, spool, key, start=start))
            except (SpoolError, OSError) as e:  # this run's files: the others still sync
                report.failed.append(f"{folder}/{key}: {e}")
                continue
            if progress is not None:
                progress(report.runs[-1])
    if not report.complete():
        raise SyncIncomplete(report)
    return report


__all__ = [
    "attach",
    "replay_key",
    "sync",
    "sweep_run",
    "missing_points",
    "last_steps",
    "ReplayResult",
    "SyncReport",
    "SyncIncomplete",
    "sweep_key",
]
