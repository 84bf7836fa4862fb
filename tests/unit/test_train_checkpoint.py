"""Checkpoint files and sharded folders: atomic names, verification against recorded hashes, rotation."""

from __future__ import annotations

import pytest
import torch

from worldpm_scaling.train import checkpoint as ckpt
from worldpm_scaling.train.checkpoint import CheckpointCorruptError

pytestmark = pytest.mark.unit


def test_file_checkpoint_round_trip_and_refusals(tmp_path):
    p = ckpt.save({"w": torch.arange(4.0), "step": 3}, tmp_path, 3, keep=2)
    assert p.name == "step_00000003.pt" and ckpt.load(p)["step"] == 3
    p.with_suffix(".sha256").unlink()  # a save killed before its sidecar appeared
    assert ckpt.latest(tmp_path) is None
    with pytest.raises(CheckpointCorruptError, match="no .sha256 sidecar"):
        ckpt.load(p)


def test_sharded_checkpoint_is_sealed_verified_and_rotated(tmp_path):
    for step in (2, 4, 6):
        tmp = ckpt.sharded_tmp(tmp_path, step)
        (tmp / "state").mkdir(parents=True)
        for rank in range(2):
            (tmp / "state" / f"rank{rank}.pt").write_bytes(bytes([step, rank]) * 100)
        assert ckpt.latest(tmp_path) is None or ckpt.step_of(ckpt.latest(tmp_path)) < step  # unsealed: invisible
        ckpt.seal_sharded(tmp_path, step, keep=2)
    kept = ckpt.list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step_00000004.ds", "step_00000006.ds"]
    ckpt.verify_sharded(kept[-1])
    shard = kept[-1] / "state" / "rank1.pt"
    shard.write_bytes(b"torn")
    with pytest.raises(CheckpointCorruptError, match="rank1.pt"):
        ckpt.verify_sharded(kept[-1])
    shard.unlink()
    with pytest.raises(CheckpointCorruptError, match="missing"):
        ckpt.verify_sharded(kept[-1])
