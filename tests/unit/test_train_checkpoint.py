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


def test_sharded_hashing_is_split_over_ranks_and_together_checks_every_byte(tmp_path, monkeypatch):
    """Save and verify hash each file on exactly one rank (size-balanced), so no rank hashes it all,
    and a flipped byte in any shard is refused by the rank that owns it."""
    sizes = {f"state/zero_pp_rank_{r}_optim_states.pt": 4000 + r for r in range(4)}
    sizes.update({f"state/zero_pp_rank_{r}_model_states.pt": 300 + r for r in range(4)})
    shares = [ckpt.share(sizes, r, 4) for r in range(4)]
    assert sorted(f for s in shares for f in s) == sorted(sizes)  # each file on exactly one rank
    loads = [sum(sizes[f] for f in s) for s in shares]
    assert max(loads) < 0.3 * sum(sizes.values())  # balanced: no rank hashes (nearly) everything

    tmp = ckpt.sharded_tmp(tmp_path, 3)
    ckpt.prepare_sharded_tmp(tmp)
    for rel, n in sizes.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(bytes([len(rel) % 251]) * n)
    hashed: list[str] = []
    real = ckpt._sha256
    monkeypatch.setattr(ckpt, "_sha256", lambda p: hashed.append(p.name) or real(p))
    digests = {}
    for r in range(4):
        hashed.clear()
        part = ckpt.hash_share(tmp, r, 4)
        assert sorted(hashed) == sorted(f.split("/")[-1] for f in shares[r])  # only its own share
        digests.update(part)
    final = ckpt.seal_sharded(tmp_path, 3, keep=2, digests=digests)
    for r in range(4):
        hashed.clear()
        ckpt.verify_sharded(final, rank=r, world=4)
        assert len(hashed) == len(shares[r])
    victim = shares[2][0]
    data = bytearray((final / victim).read_bytes())
    data[7] ^= 1
    (final / victim).write_bytes(bytes(data))  # same size: only the hash can tell
    verdicts = []
    for r in range(4):
        try:
            ckpt.verify_sharded(final, rank=r, world=4)
            verdicts.append(None)
        except CheckpointCorruptError as e:
            verdicts.append(str(e))
    assert [v is not None for v in verdicts] == [False, False, True, False] and victim in verdicts[2]
    (final / victim).write_bytes(b"short")  # truncated: every rank's size check refuses it
    for r in range(4):
        with pytest.raises(CheckpointCorruptError, match="bytes"):
            ckpt.verify_sharded(final, rank=r, world=4)
