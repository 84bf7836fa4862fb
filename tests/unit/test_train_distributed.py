"""Distributed plumbing at the CUDA boundary (no GPU here): placement binds cuda:LOCAL_RANK before the
process group exists, the group's backend serves CPU tensors, the timeout comes from the run, and
teardown runs in order. torch.cuda.* and init_process_group are mocked; everything else is real."""

from __future__ import annotations

import datetime as dt

import pytest
import torch
import torch.distributed as tdist
from torch.distributed.distributed_c10d import BackendConfig

from worldpm_scaling.models import ModelShape
from worldpm_scaling.track import InMemoryTracker
from worldpm_scaling.train import Trainer
from worldpm_scaling.train import distributed as wdist
from worldpm_scaling.train.synthetic import make_run

pytestmark = [pytest.mark.unit]

SHAPE = ModelShape(
    name="unit",
    hidden=32,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate=64,
    vocab=64,
    tie_embeddings=True,
    max_positions=256,
    rope_theta=10000.0,
)


@pytest.fixture
def fake_4gpu_node(monkeypatch):
    """A node with 4 GPUs, this process rank 3 of 4 (LOCAL_RANK=3); records the calls in order."""
    calls: list[tuple] = []
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(tdist, "is_initialized", lambda: any(c[0] == "init_process_group" for c in calls))
    monkeypatch.setattr(tdist, "init_process_group", lambda **kw: calls.append(("init_process_group", kw)))
    return calls


def test_local_rank_3_binds_cuda3_before_the_group_and_group_serves_cpu_tensors(fake_4gpu_node, tmp_path):
    calls = fake_4gpu_node
    run = make_run(SHAPE, pairs=16, out_dir=str(tmp_path), world=4, global_batch_pairs=8, micro_batch_pairs=2)
    t = Trainer(run, InMemoryTracker().start_cell("s", "c", name="c"), train_pairs=[], eval_sets=[])
    assert [c[0] for c in calls] == ["set_device", "init_process_group"], calls
    assert calls[0][1] == torch.device("cuda", 3)
    kw = calls[1][1]
    assert kw["backend"] == "cpu:gloo,cuda:nccl" and kw["rank"] == 3 and kw["world_size"] == 4
    assert kw["device_id"] == torch.device("cuda", 3)
    assert kw["timeout"] == wdist.group_timeout(run) and kw["timeout"] >= dt.timedelta(minutes=30)
    assert t.device == torch.device("cuda", 3) and (t.rank, t.world) == (3, 4)
    # torch's own parser of that backend string: CPU tensors go to gloo, CUDA tensors to NCCL
    assert BackendConfig(kw["backend"]).get_device_backend_map() == {"cpu": "gloo", "cuda": "nccl"}


def test_explicit_cuda_without_index_means_this_ranks_gpu(fake_4gpu_node):
    p = wdist.place("cuda")
    assert p.device == torch.device("cuda", 3) and fake_4gpu_node == [("set_device", torch.device("cuda", 3))]


def test_local_rank_beyond_visible_gpus_is_a_named_error(fake_4gpu_node, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "5")
    with pytest.raises(wdist.DistributedSetupError, match="LOCAL_RANK=5"):
        wdist.place(None)
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(wdist.DistributedSetupError, match="LOCAL_RANK"):
        wdist.place(None)


def test_cpu_uses_gloo_and_single_process_makes_no_group(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    p = wdist.place(None)
    assert p.device == torch.device("cpu") and wdist.backend_for(p.device) == "gloo"
    assert wdist.init_group(p, dt.timedelta(minutes=1)) is False


def test_group_timeout_grows_with_the_checkpoint_and_follows_the_plan(tmp_path):
    import dataclasses

    from worldpm_scaling.models import CATALOGUE

    small = make_run(SHAPE, pairs=16, out_dir=str(tmp_path))
    big = make_run(CATALOGUE["qwen2.5-72b"], pairs=16, out_dir=str(tmp_path))
    assert small.resources.checkpoint_seconds is None  # no plan figure: derived from the model size
    assert wdist.group_timeout(small) == dt.timedelta(seconds=wdist.MIN_TIMEOUT_S)
    # 72B on one node: ~1.2 TB written and re-read at 0.5 GB/s, three times over: hours, not NCCL's 10 min
    assert wdist.group_timeout(big) > dt.timedelta(hours=3)
    planned = dataclasses.replace(small, resources=dataclasses.replace(small.resources, checkpoint_seconds=600.0))
    assert wdist.group_timeout(planned) == dt.timedelta(seconds=wdist.MIN_TIMEOUT_S + 1800)


def test_shutdown_order_engine_then_barrier_then_destroy(monkeypatch):
    calls = []

    class Engine:
        def destroy(self):
            calls.append("engine.destroy")

    monkeypatch.setattr(tdist, "is_initialized", lambda: True)
    monkeypatch.setattr(tdist, "get_world_size", lambda: 2)
    monkeypatch.setattr(tdist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(tdist, "destroy_process_group", lambda: calls.append("destroy_process_group"))
    wdist.shutdown(Engine())
    assert calls == ["engine.destroy", "barrier", "destroy_process_group"]
    calls.clear()
    wdist.shutdown(Engine(), clean=False)  # error path: no barrier a dead peer would never reach
    assert calls == ["engine.destroy", "destroy_process_group"]


def test_agree_and_broadcast_are_identity_on_one_process():
    assert wdist.agree(True, False, True) == (True, False, True)
    assert wdist.broadcast_int(7) == 7
    assert wdist.all_gather_objects({"a": 1}) == [{"a": 1}]
