"""The offline spool: append-only, fsync'd metric files that survive a lost server or a killed job.

Compute nodes often cannot reach the tracking server, and a server can go away mid-run. Points then
go to `<dir>/<key>.jsonl`, one JSON object per line `{"k": key, "v": value, "t": ms, "s": step}`,
appended and fsync'd before `log_metrics` returns to a flush. Each spooled run keeps its identity in
`<dir>/<key>.meta.json` (sweep, cell_id, name, experiment, params, tags, artifacts, the server
run_id once known, the final status if it finished offline), so `wps sync` can create or reattach
the run by `cell_id` even if it never existed online. `<dir>/<key>.cursor` holds the byte offset
up to which a live run has already replayed its file (an optimisation only: replay always checks
the server for points it already has, because MLflow itself does not deduplicate metric points).

Keys: `cell-<cell_id>` for a cell's child run, `sweep-<sweep>` for the sweep's parent run.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Iterable, Mapping

Point = tuple[str, float, int, int]
"""(metric key, value, timestamp in ms, step): one metric point, as MLflow stores it."""

META_SUFFIX = ".meta.json"
POINTS_SUFFIX = ".jsonl"
CURSOR_SUFFIX = ".cursor"


class SpoolError(ValueError):
    """A spool folder or file that cannot be read (names the path)."""


def cell_key(cell_id: str) -> str:
    return f"cell-{_safe(cell_id)}"


def sweep_key(sweep: str) -> str:
    return f"sweep-{_safe(sweep)}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Spool:
    """One spool folder (usually `<cell out_dir>/spool`); safe to share between threads of a process."""

    def __init__(self, folder: str | os.PathLike):
        self.dir = Path(folder)
        self._lock = threading.RLock()

    def _path(self, key: str, suffix: str) -> Path:
        return self.dir / f"{key}{suffix}"

    # -- points ---------------------------------------------------------------------------------
    def append(self, key: str, points: Iterable[Point]) -> int:
        """Append points durably (write + fsync); returns how many. A torn last line left by a
        killed writer is closed first so it cannot corrupt the next record."""
        lines = [json.dumps({"k": k, "v": float(v), "t": int(t), "s": int(s)}) for k, v, t, s in points]
        if not lines:
            return 0
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self._path(key, POINTS_SUFFIX)
            with open(path, "ab+") as f:
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write(("\n".join(lines) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
        return len(lines)

    def read(self, key: str, start: int = 0) -> tuple[list[Point], int]:
        """Points from byte offset `start` to the last complete line, and the offset after it."""
        path = self._path(key, POINTS_SUFFIX)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return [], start
        end = data.rfind(b"\n") + 1  # a torn last line (killed mid-write) is not a record
        out: list[Point] = []
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                out.append((str(d["k"]), float(d["v"]), int(d["t"]), int(d["s"])))
            except (ValueError, KeyError, TypeError):
                continue  # a record cut by a crash and closed by the next append
        return out, start + end

    def scan(self, key: str, start: int = 0) -> tuple[list[Point], int, int, int]:
        """`read`, and what it could not read: (points, offset after the last complete line, lines that
        are not records, bytes of an unterminated last line). `wps sync` reports both: a spool whose
        writer has ended holds nothing that is not a point, so anything skipped is a point lost."""
        path = self._path(key, POINTS_SUFFIX)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return [], start, 0, 0
        end = data.rfind(b"\n") + 1
        out: list[Point] = []
        bad = 0
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                out.append((str(d["k"]), float(d["v"]), int(d["t"]), int(d["s"])))
            except (ValueError, KeyError, TypeError, OverflowError):
                bad += 1
        return out, start + end, bad, len(data) - end

    def size(self, key: str) -> int:
        try:
            return self._path(key, POINTS_SUFFIX).stat().st_size
        except FileNotFoundError:
            return 0

    def max_step(self, key: str) -> int | None:
        pts, _ = self.read(key)
        return max((p[3] for p in pts), default=None)

    # -- replay cursor ----------------------------------------------------------------------------
    def cursor(self, key: str) -> int:
        try:
            return int(self._path(key, CURSOR_SUFFIX).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def set_cursor(self, key: str, offset: int) -> None:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(self._path(key, CURSOR_SUFFIX), str(int(offset)))

    def pending(self, key: str) -> bool:
        """True if the points file holds bytes not yet replayed by this spool's live run."""
        return self.size(key) > self.cursor(key)

    # -- run identity -------------------------------------------------------------------------------
    def meta(self, key: str) -> dict[str, Any]:
        path = self._path(key, META_SUFFIX)
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as e:  # also UnicodeDecodeError: a binary file
            raise SpoolError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(meta, dict):
            raise SpoolError(f"{path}: not a run's metadata (a JSON {type(meta).__name__}, not an object)")
        return meta

    def update_meta(self, key: str, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into the run's metadata (dict fields `params`/`tags` are merged too);
        written to a temp file and renamed, so a crash never leaves half a file."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = self.meta(key)
            for k, v in fields.items():
                if isinstance(v, Mapping) and isinstance(meta.get(k), dict):
                    meta[k] = {**meta[k], **v}
                elif k == "artifacts":
                    meta[k] = [*meta.get(k, []), *[a for a in v if a not in meta.get(k, [])]]
                else:
                    meta[k] = v
            _atomic_write(self._path(key, META_SUFFIX), json.dumps(meta, indent=1, default=str))
            return meta

    def keys(self) -> list[str]:
        """Every run key in this folder (sweep parents first, so children can name their parent); files
        that are not a spool's (a sweep's launches.jsonl, an eval set) are not keys."""
        if not self.dir.is_dir():
            return []
        ks = {k for p in self.dir.iterdir() if (k := spool_key_of(p.name)) is not None}
        return sorted(ks, key=lambda k: (not k.startswith("sweep-"), k))


_KEY = re.compile(r"(?:cell|sweep)-[A-Za-z0-9_.\-]+")


def spool_key_of(name: str) -> str | None:
    """The run key a spool file's name stands for (`cell-<id>.jsonl`, `sweep-<name>.meta.json`), else None."""
    for suffix in (META_SUFFIX, POINTS_SUFFIX):
        if name.endswith(suffix) and _KEY.fullmatch(name[: -len(suffix)]):
            return name[: -len(suffix)]
    return None


def find_spools(root: str | os.PathLike) -> list[Path]:
    """Every folder under `root` (itself included) that holds spooled runs, sorted. Only a spool's own
    files count (so `wps sync out/demo` on a launched sweep skips launches.jsonl and the job logs); a
    folder that cannot be listed is a SpoolError naming it, not "nothing to sync"."""
    root = Path(root)
    if not root.exists():
        raise SpoolError(f"{root}: no such spool folder")
    if not root.is_dir():
        raise SpoolError(f"{root}: a file; give the spool folder (or a folder above spool folders)")
    unreadable: list[str] = []
    hits: set[Path] = set()
    for folder, _dirs, files in os.walk(root, onerror=lambda e: unreadable.append(f"{e.filename}: {e.strerror}")):
        if any(spool_key_of(f) for f in files):
            hits.add(Path(folder))
    if unreadable:
        raise SpoolError(
            f"cannot list {len(unreadable)} folder(s) under {root}, so spooled runs there would be "
            f"missed: {'; '.join(unreadable[:5])} (fix the permissions, or sync a folder below)"
        )
    return sorted(hits)
