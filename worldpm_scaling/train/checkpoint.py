"""Checkpoints that survive preemption: atomic, verified, rotated.

A checkpoint is one `step_XXXXXXXX.pt` (torch.save of model, optimizer, step, pairs/tokens seen,
next milestone, RNG states) plus a `.sha256` sidecar written after it. Both appear by rename, so a
job killed mid-write leaves either the old set or the new one, never a torn file; a file whose hash
does not match is refused with CheckpointCorruptError.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

_NAME = re.compile(r"step_(\d{8})\.pt$")


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
    tmp.replace(final)
    side_tmp = folder / f".step_{step:08d}.sha256.tmp"
    side_tmp.write_text(digest + "\n")
    side_tmp.replace(folder / f"step_{step:08d}.sha256")
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".sha256").unlink(missing_ok=True)
    return final


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints (file + sidecar), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.search(p.name) and p.with_suffix(".sha256").is_file()]
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


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
    except Exception as e:  # noqa: BLE001
        raise CheckpointCorruptError(f"{p}: cannot be loaded: {e}") from None


def latest(folder: str | Path) -> Path | None:
    cks = list_checkpoints(folder)
    return cks[-1] if cks else None
