import dataclasses
import json

import pytest

from worldpm_scaling.config import RunSpec, load_sweep
from worldpm_scaling.plan import GIB, PlanError, memory_per_gpu, plan, select, training_flops, with_changes


@pytest.fixture
def paper(repo):
    return load_sweep(repo / "sweeps/worldpm.yaml")


def test_paper_plan_has_every_size(paper):
    p = plan(paper)
    assert [r.model.name for r in p.runs] == ["qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-72b"]
    for r, c in zip(p.runs, p.costs):
        assert c.pairs == 15_000_000
        assert c.tokens == 15_000_000 * 2000
        assert c.flops >= 6 * r.model.params_non_embedding * c.tokens
        assert c.gpus >= 1 and c.gpu_hours == pytest.approx(c.hours * c.gpus)
        assert c.memory.total <= 80 * GIB * 0.92
    # bigger models cost more
    gh = [c.gpu_hours for c in p.costs]
    assert gh == sorted(gh)


def test_flops_is_6ND_plus_optional_attention(paper):
    m = paper.models[0]
    assert training_flops(m, 1e9, ctx_len=2048) == 6 * m.params_non_embedding * 1e9
    with_attn = training_flops(m, 1e9, ctx_len=2048, attention=True)
    assert with_attn - 6 * m.params_non_embedding * 1e9 == pytest.approx(12 * m.layers * m.hidden * 2048 * 1e9)


def test_zero_stages_shrink_memory(paper):
    m, t = paper.models[2], paper.train
    mem = [memory_per_gpu(m, t, gpus=64, zero_stage=s, tokens_per_micro=4000).total for s in range(4)]
    assert mem[0] > mem[1] > mem[2] > mem[3]
    ckpt = memory_per_gpu(m, t, gpus=64, zero_stage=3, tokens_per_micro=4000).activations
    no_ckpt = memory_per_gpu(
        m, dataclasses.replace(t, activation_checkpointing=False), gpus=64, zero_stage=3, tokens_per_micro=4000
    ).activations
    assert no_ckpt > 10 * ckpt


def test_72b_needs_many_gpus_and_fits_none_at_zero0(paper):
    p = plan(paper)
    assert p.costs[2].gpus >= 16 and p.costs[2].nodes >= 2
    z0 = dataclasses.replace(paper, train=dataclasses.replace(paper.train, zero_stage=0))
    # 16 bytes/param of mixed-precision Adam: 7B (122 GB) already fits no H100 without ZeRO
    with pytest.raises(PlanError, match="qwen2.5-7b at ZeRO-0 needs") as e:
        plan(z0)
    assert e.value.path == "models[1]"


def test_ids_deterministic_and_sensitive(paper):
    a, b = plan(paper), plan(paper)
    assert [r.cell_id for r in a.runs] == [r.cell_id for r in b.runs]
    assert len({r.cell_id for r in a.runs}) == len(a.runs)
    run = a.runs[0]
    changes = {
        "sweep": "other",
        "model": a.runs[1].model,
        "data": dataclasses.replace(run.data, source="y"),
        "pairs": run.pairs - 1,
        "milestones": run.milestones[1:],
        "train": dataclasses.replace(run.train, lr=1e-5),
        "eval": dataclasses.replace(run.eval, dir="e2"),
        "seed": 7,
    }
    assert set(changes) == set(RunSpec.IDENTITY_FIELDS)
    for field, value in changes.items():
        assert with_changes(run, **{field: value}).cell_id != run.cell_id, field
    # every TrainSpec field counts
    for f in dataclasses.fields(run.train):
        v = getattr(run.train, f.name)
        new = {bool: lambda x: not x, int: lambda x: x + 1, float: lambda x: x * 2 + 0.5}.get(type(v))
        if new is None:
            continue
        changed = with_changes(run, train=dataclasses.replace(run.train, **{f.name: new(v)}))
        assert changed.cell_id != run.cell_id, f.name
    assert with_changes(run).cell_id == run.cell_id


def test_runspec_roundtrip(paper):
    run = plan(paper).runs[2]
    back = RunSpec.from_dict(json.loads(run.to_json()))
    assert back == run
    params = run.flat_params()
    assert params["model.name"] == "qwen2.5-72b" and params["train.lr"] == "3e-06"
    assert params["model.params_non_embedding"] == str(run.model.params_non_embedding)


def test_grid_vs_milestone_saving(paper):
    p = plan(paper)
    grid = plan(dataclasses.replace(paper, mode="grid"))
    assert len(grid.runs) == 3 * len(paper.milestone_pairs())
    assert p.grid_gpu_hours == pytest.approx(grid.total_gpu_hours)
    assert p.milestone_saving > 1.5


def test_select_by_index_and_id(paper):
    p = plan(paper)
    assert select(p, "1") is p.runs[1]
    assert select(p, p.runs[2].cell_id[:6]) is p.runs[2]
    with pytest.raises(PlanError, match="no cell 'zzz'"):
        select(p, "zzz")
    with pytest.raises(PlanError, match="cell index 99 is out of range"):
        select(p, "99")  # a short number is an index, never an id prefix that starts with those digits


def test_min_gpus_per_cell_adds_data_parallel_gpus(paper):
    base = plan(paper)
    small = base.runs[0]
    cl = dataclasses.replace(paper.cluster, min_gpus_per_cell=max(16, base.costs[0].gpus + 1))
    p = plan(dataclasses.replace(paper, cluster=cl))
    assert p.costs[0].gpus >= 16 and p.runs[0].resources.gpus >= 16
    assert p.costs[0].hours < base.costs[0].hours  # same FLOPs over more GPUs
    assert p.runs[0].cell_id == small.cell_id  # where a cell runs is not what it is: same id, same run
    too_many = dataclasses.replace(paper.cluster, min_gpus_per_cell=10_000)
    with pytest.raises(PlanError, match="min_gpus_per_cell"):
        plan(dataclasses.replace(paper, cluster=too_many))


def test_lr_width_ref_gives_each_width_its_own_lr(repo):
    spec = load_sweep(repo / "sweeps/demo.yaml")

    def sweep(**train):
        return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **train))

    scaled = plan(sweep(lr=3e-3, lr_width_ref=64, lr_width_power=1.0))
    for r in scaled.runs:
        assert r.train.lr == pytest.approx(3e-3 * 64 / r.model.hidden)  # power 1 (the default)
        assert r.train.lr_width_ref is None  # resolved once: nothing downstream can scale it twice
        assert float(r.flat_params()["train.lr"]) == pytest.approx(r.train.lr)
    assert len({r.train.lr for r in scaled.runs}) == len({r.model.hidden for r in scaled.runs}) > 1
    gentle = plan(sweep(lr=3e-3, lr_width_ref=32, lr_width_power=0.5))
    assert [r.train.lr for r in gentle.runs] == pytest.approx(
        [3e-3 * (32 / r.model.hidden) ** 0.5 for r in gentle.runs]
    )
    unscaled = plan(sweep(lr=3e-3, lr_width_ref=None))
    assert {r.train.lr for r in unscaled.runs} == {3e-3}
    assert {r.cell_id for r in scaled.runs}.isdisjoint(r.cell_id for r in unscaled.runs)
