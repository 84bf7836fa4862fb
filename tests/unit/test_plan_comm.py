"""The planner's step-time model: micro-batches that fit, ZeRO communication, sharded evaluation,
checkpoint time and the signal-delay warning (docs/planner.md)."""

import dataclasses
import math

import pytest

from worldpm_scaling.config import load_sweep
from worldpm_scaling.plan import GIB, USABLE_FRACTION, memory_per_gpu, plan


@pytest.fixture
def paper(repo):
    return load_sweep(repo / "sweeps/worldpm.yaml", cluster=repo / "slurm/h100.yaml")


def _with(spec, train=None, cluster=None, **kw):
    if train:
        kw["train"] = dataclasses.replace(spec.train, **train)
    if cluster:
        kw["cluster"] = dataclasses.replace(spec.cluster, **cluster)
    return dataclasses.replace(spec, **kw)


def test_comm_hours_of_the_72b_cell_by_hand(paper):
    p = plan(paper)
    run, cost = p.runs[2], p.costs[2]
    assert run.model.name == "qwen2.5-72b" and cost.gpus == 128 and cost.nodes == 16
    # Reward model parameters Ψ: embedding 152064·8192, 80 decoder layers + final norm, head h→h→1.
    d, kv, inter = 8192, 8 * 128, 29568
    layer = (d * d + d) + 2 * (d * kv + kv) + d * d + 3 * d * inter + 2 * d
    psi = 152064 * d + (80 * layer + d) + (d * d + d + d + 1)
    micro = cost.micro_batch_pairs
    accum = math.ceil(math.ceil(10240 / 128) / micro)
    steps = math.ceil(15_000_000 / 10240)
    # ZeRO-3, bf16: all-gather (fwd) + all-gather (bwd) + reduce-scatter, 2 bytes each, every micro-step;
    # a ring moves 127/128 of each message per GPU; 16 nodes → the profile's 40 GB/s inter-node bandwidth.
    bytes_per_step = 3 * 2 * psi * 127 / 128 * accum
    assert cost.comm_bytes_per_step == pytest.approx(bytes_per_step, rel=1e-12)
    assert cost.comm_hours == pytest.approx(steps * bytes_per_step / 40e9 / 3600, rel=1e-9)
    assert 5 < cost.comm_hours < 100  # about a quarter of the compute at 16-pair micro-batches
    assert cost.hours == pytest.approx(cost.compute_hours + cost.comm_hours + cost.eval_hours)
    assert cost.gpu_hours == pytest.approx(cost.hours * 128)


def test_zero2_all_reduces_once_per_step_and_one_gpu_moves_nothing(paper):
    z2 = _with(paper, train={"zero_stage": 2}, models=(paper.models[0],))
    c = plan(z2).costs[0]
    psi = paper.models[0].params_reward_model
    g = c.gpus
    assert c.comm_bytes_per_step == pytest.approx(2 * 2 * psi * (g - 1) / g)  # independent of accumulation
    bw = 40e9 if g > 8 else 360e9
    assert c.comm_hours == pytest.approx(math.ceil(15_000_000 / 10240) * c.comm_bytes_per_step / bw / 3600)
    one = plan(
        _with(paper, models=(paper.models[0],), cluster={"gpus_per_node": 1, "max_nodes": 1, "target_hours": None})
    )
    assert one.costs[0].gpus == 1 and one.costs[0].comm_hours == 0


def test_auto_micro_batch_is_the_largest_power_of_two_that_fits(paper):
    p = plan(paper)
    by = {r.model.name: (r, c) for r, c in zip(p.runs, p.costs)}
    run72, c72 = by["qwen2.5-72b"]
    assert c72.micro_batch_pairs >= 8  # issue 14's acceptance on H100-80G
    assert run72.resources.micro_batch_pairs == c72.micro_batch_pairs == run72.micro_batch_pairs
    assert run72.train.micro_batch_pairs == "auto"  # the sweep's value; the choice rides in Resources
    for r, c in by.values():
        m, g, share = c.micro_batch_pairs, c.gpus, math.ceil(10240 / c.gpus)
        assert m & (m - 1) == 0 and m <= share
        fits = memory_per_gpu(r.model, paper.train, gpus=g, zero_stage=3, tokens_per_micro=m * 2000)
        assert fits.total <= 80 * GIB * USABLE_FRACTION
        if 2 * m <= share:  # the next power of two would not fit
            over = memory_per_gpu(r.model, paper.train, gpus=g, zero_stage=3, tokens_per_micro=2 * m * 2000)
            assert over.total > 80 * GIB * USABLE_FRACTION, r.model.name
        assert r.resources.grad_accum == math.ceil(share / m)
    assert len({c.micro_batch_pairs for c in p.costs}) > 1  # not one number pinned for every size
    pinned = plan(_with(paper, train={"micro_batch_pairs": 2}))
    assert {c.micro_batch_pairs for c in pinned.costs} == {2}
    assert pinned.costs[2].comm_hours > 2 * c72.comm_hours  # smaller micro-steps gather Ψ more often


def test_evaluation_is_sharded_over_the_ranks(paper):
    one = _with(paper, models=(paper.models[0],), cluster={"target_hours": None, "min_gpus_per_cell": 8})
    two = _with(one, cluster={"target_hours": None, "min_gpus_per_cell": 16})
    e8, e16 = plan(one).costs[0], plan(two).costs[0]
    assert (e8.gpus, e16.gpus) == (8, 16)
    m = paper.models[0]
    eval_flops = 2 * m.params_non_embedding * 11 * 12 * 2000 * 2000  # 11 milestones × 12 sets × 2000 pairs
    compute8 = eval_flops / (8 * 989e12 * 0.35) / 3600
    assert e8.eval_hours == pytest.approx(
        compute8 + 11 * 12 * math.ceil(250 / e8.micro_batch_pairs) * 2 * m.params_reward_model * 7 / 8 / 360e9 / 3600
    )
    assert e16.eval_hours < 0.6 * e8.eval_hours  # each rank scores 1/G of every set


def test_checkpoint_time_and_signal_delay_warning(paper):
    p = plan(paper)
    r72 = p.runs[2]
    psi = r72.model.params_reward_model
    ck = 14 * psi / 10e9  # bf16 weights + fp32 Adam state at the profile's 10 GB/s
    assert r72.resources.checkpoint_seconds == pytest.approx(ck + max(ck, 14 * psi / 128 / 1e9), rel=1e-3)
    assert r72.resources.step_seconds == pytest.approx(p.costs[2].step_seconds, rel=1e-3)
    assert r72.resources.step_seconds * math.ceil(15_000_000 / 10240) / 3600 == pytest.approx(
        p.costs[2].compute_hours + p.costs[2].comm_hours, rel=1e-3
    )
    assert p.warnings == ()  # the h100 profile's 900 s fits a 72B step + save + verify
    short = plan(_with(paper, cluster={"signal_delay_s": 120}))  # the default: too short for 72B only
    need = r72.resources.step_seconds + r72.resources.checkpoint_seconds
    assert 120 < need < 900
    (w,) = short.warnings
    assert w.startswith("qwen2.5-72b: cluster.signal_delay_s is 120 s") and f"takes {need:.0f} s" in w
    assert len(plan(_with(paper, cluster={"signal_delay_s": 30})).warnings) == 3
    local = plan(_with(paper, cluster={"signal_delay_s": 30, "executor": "local"}))
    assert local.warnings == ()  # no SLURM, no USR2
