"""Checkpoints that survive preemption: atomic, verified, rotated.

A checkpoint is one `step_XXXXXXXX.pt` (torch.save of model, optimizer, step, pairs/tokens seen,
next milestone, RNG states) plus a `.sha256` sidecar written after it. Both appear by rename, so a
job killed mid-write leaves either the old set or the new one, never a torn file; a file whose hash
does not match is refused with CheckpointCorruptError.

DeepSpeed engines shard their state over ranks: there a checkpoint is a folder `step_XXXXXXXX.ds/`
written by every rank into a temporary folder, given a `manifest.json` of sha256 (and size) per
file and renamed into place by rank 0; loading verifies every file against the manifest first. Both
hashing passes are split over the ranks (`share`), so none serializes on rank 0 (`verify_sharded`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch

from .. import faults

_NAME = re.compile(r"step_(\d{8})\.pt$")
_DIR = re.compile(r"step_(\d{8})\.ds$")
MANIFEST = "manifest.json"


class CheckpointCorruptError(RuntimeError):
    """A checkpoint whose bytes do not match its recorded hash (or cannot be read); names the file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(state: dict, folder: str | Path, step: int, *, keep: int) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:08d}.pt"
    tmp = folder / f".step_{step:08d}.pt.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    digest = _sha256(tmp)
    faults.point("ckpt.before_rename")
    tmp.replace(final)
    faults.point("ckpt.after_rename")
    side_tmp = folder / f".step_{step:08d}.sha256.tmp"
    side_tmp.write_text(digest + "\n")
    side_tmp.replace(folder / f"step_{step:08d}.sha256")
    faults.point("ckpt.before_rotate")
    rotate(folder, keep)
    return final


def rotate(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints (files or folders)."""
    for old in list_checkpoints(folder)[:-keep]:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
            old.with_suffix(".sha256").unlink(missing_ok=True)


def step_of(path: str | Path) -> int:
    m = _NAME.search(Path(path).name) or _DIR.search(Path(path).name)
    if m is None:
        raise ValueError(f"{path}: not a checkpoint name")
    return int(m.group(1))


def sharded_tmp(folder: str | Path, step: int) -> Path:
    """Where every rank writes its shard of step `step` before `seal_sharded` renames it."""
    return Path(folder) / f".step_{step:08d}.ds.tmp"


def prepare_sharded_tmp(tmp: Path) -> None:
    """Rank 0, before a sharded save: an empty temporary folder."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)


def share(files: dict[str, int], rank: int, world: int) -> list[str]:
    """The files (relative path → size) rank `rank` hashes: a deterministic size-balanced split
    (largest first, each to the least-loaded rank), the same on every rank without communication."""
    load = [0] * world
    mine: list[str] = []
    for rel, size in sorted(files.items(), key=lambda kv: (-kv[1], kv[0])):
        r = min(range(world), key=lambda i: (load[i], i))
        load[r] += size
        if r == rank:
            mine.append(rel)
    return mine


def list_shards(tmp: str | Path) -> dict[str, int]:
    """The files under a sharded checkpoint's temporary folder (relative path → size): one rank lists,
    every rank hashes its share of that one list (`hash_listed`)."""
    tmp = Path(tmp)
    return {str(p.relative_to(tmp)): p.stat().st_size for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST}


def hash_listed(tmp: str | Path, files: dict[str, int], rank: int, world: int) -> dict[str, str]:
    """sha256 of this rank's share of `files` (rank 0's listing); a listed file this rank cannot see
    with its listed size raises CheckpointCorruptError naming it."""
    tmp = Path(tmp)
    mine = share(files, rank, world)
    for rel in mine:
        f = tmp / rel
        if not f.is_file() or f.stat().st_size != files[rel]:
            raise CheckpointCorruptError(
                f"{f}: listed with {files[rel]} bytes by rank 0 but "
                + ("missing" if not f.is_file() else f"{f.stat().st_size} bytes")
                + " here"
            )
    return {rel: _sha256(tmp / rel) for rel in mine}


def hash_share(tmp: str | Path, rank: int, world: int) -> dict[str, str]:
    """sha256 of this rank's share of the files under `tmp`, listed here (one process: world 1)."""
    return hash_listed(tmp, list_shards(tmp), rank, world)


def seal_sharded(folder: str | Path, step: int, *, keep: int, digests: dict[str, str] | None = None) -> Path:
    """Rank 0, after all ranks wrote into `sharded_tmp`: write the manifest, rename into place, rotate.

    `digests`: sha256 per file, hashed by all ranks in parallel (`hash_share` + a gather); None
    hashes every file here (one process)."""
    folder = Path(folder)
    tmp = sharded_tmp(folder, step)
    if digests is None:
        digests = hash_share(tmp, 0, 1)
    on_disk = {str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file() and p.name != MANIFEST}
    if on_disk != set(digests):
        raise CheckpointCorruptError(f"{tmp}: files hashed {sorted(set(digests) ^ on_disk)} differ from those written")
    sizes = {rel: (tmp / rel).stat().st_size for rel in digests}
    (tmp / MANIFEST).write_text(
        json.dumps({"step": step, "files": dict(sorted(digests.items())), "sizes": sizes}, indent=1)
    )
    final = folder / f"step_{step:08d}.ds"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    rotate(folder, keep)
    return final


def verify_sharded(path: str | Path, *, rank: int = 0, world: int = 1) -> None:
    """This rank's share of a sharded checkpoint matches its manifest (else CheckpointCorruptError).

    Integrity check: sha256 of every file, as at save time, but split over the ranks (`share`, the
    same size-balanced split every rank computes alike), so a 72B checkpoint is hashed by all ranks
    at once rather than serially by rank 0; together the ranks hash every byte, so the guarantee is
    the full one (a torn, truncated or altered file anywhere is refused). Every rank also checks that
    every listed file exists with its recorded size, a cheap stat that catches truncation before
    the ranks' results are combined. The caller combines the ranks' verdicts (any failure fails all).
    With world=1 it hashes everything."""
    p = Path(path)
    try:
        manifest = json.loads((p / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointCorruptError(f"{p}: no readable {MANIFEST} ({e})") from None
    files: dict[str, str] = manifest["files"]
    sizes: dict[str, int] = manifest.get("sizes") or {}
    for rel in files:
        f = p / rel
        if not f.is_file():
            raise CheckpointCorruptError(f"{f}: listed in {p / MANIFEST} but missing")
        if rel in sizes and f.stat().st_size != sizes[rel]:
            raise CheckpointCorruptError(f"{f}: {f.stat().st_size} bytes, {p / MANIFEST} records {sizes[rel]}")
    split = sizes if len(sizes) == len(files) else {rel: (p / rel).stat().st_size for rel in files}
    for rel in share(split, rank, world):
        if _sha256(p / rel) != files[rel]:
            raise CheckpointCorruptError(f"{p / rel}: sha256 does not match {p / MANIFEST}")


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints (file + sidecar, or folder + manifest), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if (_NAME.search(p.name) and p.with_suffix(".sha256").is_file())
        or (_DIR.search(p.name) and (p / MANIFEST).is_file())
    ]
    return sorted(faults.hide_listed(found), key=step_of)


def load(path: str | Path) -> dict:
    """Verify the hash, then load; a mismatch or unreadable file raises CheckpointCorruptError."""
    p = Path(path)
    side = p.with_suffix(".sha256")
    if not side.is_file():
        raise CheckpointCorruptError(f"{p}: no .sha256 sidecar (incomplete checkpoint)")
    want = side.read_text().strip()
    got = _sha256(p)
    if got != want:
        raise CheckpointCorruptError(f"{p}: sha256 {got[:12]}… does not match the recorded {want[:12]}…")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 — torch.load raises many types for a bad file
        raise CheckpointCorruptError(f"{p}: cannot be loaded: {e}") from None


def latest(folder: str | Path) -> Path | None:
    cks = list_checkpoints(folder)
    return cks[-1] if cks else None
