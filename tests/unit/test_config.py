import textwrap

import pytest

from worldpm_scaling.config import MilestoneSpec, SpecError, TrainSpec, load_cluster, load_sweep, resolve_milestones


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


BASE = """\
name: t
models: [tiny-xs, tiny-s]
data: {source: x.parquet, pairs: 4096, tokens_per_pair: 100}
milestones: {start_log2: 6}
train: {global_batch_pairs: 32, micro_batch_pairs: 8}
"""


def test_paper_defaults():
    t = TrainSpec()
    assert (t.lr, t.weight_decay, t.warmup_frac, t.schedule, t.epochs, t.ctx_len) == (
        3e-6,
        0.1,
        0.1,
        "constant",
        1,
        2048,
    )


def test_load_shipped_sweeps(repo):
    spec = load_sweep(repo / "sweeps/worldpm.yaml")
    assert [m.name for m in spec.models] == ["qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-72b"]
    assert spec.cluster.gpu_type == "H100-80G"
    assert spec.milestone_pairs()[-1] == 15_000_000
    assert load_sweep(repo / "sweeps/demo.yaml").models[0].name == "tiny-xxxs"


def test_milestones_powers_of_two_plus_budget():
    assert resolve_milestones(MilestoneSpec(start_log2=2), 20) == (4, 8, 16, 20)
    assert resolve_milestones(MilestoneSpec(start_log2=2), 16) == (4, 8, 16)
    assert resolve_milestones(MilestoneSpec(pairs=(8, 4, 8)), 16) == (4, 8)


@pytest.mark.parametrize(
    "patch,path,needle",
    [
        ("train: {lrr: 1.0e-3, global_batch_pairs: 32, micro_batch_pairs: 8}", "train.lrr", "did you mean 'lr'"),
        ("models: [tiny-xs, qwen2.5-8b]", "models[1]", "valid: qwen2.5-0.5b"),
        ("data: {source: x, pairs: 0, tokens_per_pair: 100}", "data.pairs", "must be > 0"),
        ("data: {source: x, pairs: -5, tokens_per_pair: 100}", "data.pairs", "must be > 0"),
        (
            "data: {source: x, pairs: 4096, tokens_per_pair: 100}\nmilestones: {pairs: [64, 8192]}",
            "milestones.pairs[1]",
            "beyond the data budget",
        ),
        ("milestones: {start_log2: 13}", "milestones.start_log2", "beyond the data budget"),
        ("mode: gird", "mode", "is not one of 'milestones', 'grid'"),
        ("train: {schedule: cosine, global_batch_pairs: 32, micro_batch_pairs: 8}", "train.schedule", "milestone mode"),
        ("eval: {sets: [offsetbias, rmbench]}", "eval.sets[1]", "unknown eval set"),
        (
            "models: [{name: x, hidden: 64, layers: 2, heads: 3, kv_heads: 1, intermediate: 8, vocab: 10}]",
            "models[0]",
            "divisible",
        ),
        ("seeds: [0, 0]", "seeds", "duplicate"),
        ("train: {lr: fast, global_batch_pairs: 32, micro_batch_pairs: 8}", "train.lr", "expected a number"),
    ],
)
def test_bad_input_names_the_field(tmp_path, patch, path, needle):
    # later keys override earlier ones in YAML mappings? No: duplicate keys — so rebuild the doc.
    base = {line.split(":")[0]: line for line in BASE.splitlines()}
    for line in textwrap.dedent(patch).splitlines():
        base[line.split(":")[0]] = line
    p = write(tmp_path, "\n".join(base.values()) + "\n")
    with pytest.raises(SpecError) as e:
        load_sweep(p)
    assert e.value.path == path
    assert needle in str(e.value)
    assert str(p) in str(e.value)
    assert e.value.line is not None  # every field error points at a line


def test_unknown_top_level_key_suggests(tmp_path):
    p = write(tmp_path, BASE + "trian: {}\n")
    with pytest.raises(SpecError, match=r"did you mean 'train'") as e:
        load_sweep(p)
    assert e.value.line == 6


def test_yaml_syntax_error_has_line(tmp_path):
    p = write(tmp_path, "name: t\nmodels: [tiny-xs\ndata: {pairs: 1}\n")
    with pytest.raises(SpecError, match="YAML syntax error") as e:
        load_sweep(p)
    assert e.value.line == 3


def test_missing_cluster_profile(tmp_path):
    p = write(tmp_path, BASE + "cluster: slurm/nope.yaml\n")
    with pytest.raises(SpecError, match="profile file 'slurm/nope.yaml' not found") as e:
        load_sweep(p)
    assert e.value.path == "cluster"


def test_unknown_profile_key_lists_valid(tmp_path):
    p = write(tmp_path, "name: x\ngpus_per_nod: 4\n", "prof.yaml")
    with pytest.raises(SpecError) as e:
        load_cluster(p)
    msg = str(e.value)
    assert "did you mean 'gpus_per_node'" in msg and "valid: name, executor" in msg


def test_stats_file_supplies_tokens_per_pair(tmp_path):
    (tmp_path / "stats.json").write_text('{"tokens_per_pair": 123.5}')
    p = write(tmp_path, BASE.replace("tokens_per_pair: 100", "stats_file: stats.json"))
    assert load_sweep(p).data.tokens_per_pair == 123.5
    p2 = write(tmp_path, BASE.replace("tokens_per_pair: 100", "stats_file: missing.json"), "b.yaml")
    with pytest.raises(SpecError) as e:
        load_sweep(p2)
    assert e.value.path == "data.stats_file"


def test_milestone_below_one_batch(tmp_path):
    p = write(tmp_path, BASE.replace("start_log2: 6", "start_log2: 4"))
    with pytest.raises(SpecError, match="less than one optimizer step"):
        load_sweep(p)


@pytest.mark.parametrize(
    "train,init_line,path,msg",
    [
        ("micro_batch_pairs: fast", "", "train.micro_batch_pairs", "expected an integer"),
        ("micro_batch_pairs: 0", "", "train.micro_batch_pairs", "must be > 0"),
        ("micro_batch_pairs: 8", "init: scratch\n", "init", "'scratch' is not one of"),
        ("micro_batch_pairs: 8", "", "models[1].init", "'warm' is not one of"),
    ],
)
def test_micro_auto_and_init_errors_name_the_field(tmp_path, train, init_line, path, msg):
    text = BASE.replace("micro_batch_pairs: 8", train.split(": ", 1)[0] + ": " + train.split(": ", 1)[1])
    if path == "models[1].init":
        text = text.replace("models: [tiny-xs, tiny-s]", "models: [tiny-xs, {name: tiny-s, init: warm}]")
    with pytest.raises(SpecError) as e:
        load_sweep(write(tmp_path, text + init_line))
    assert e.value.path == path and msg in str(e.value)


def test_micro_auto_init_and_models_dir_parse(tmp_path, monkeypatch):
    monkeypatch.delenv("WPS_MODELS_DIR", raising=False)
    text = BASE.replace("micro_batch_pairs: 8", "micro_batch_pairs: auto").replace(
        "models: [tiny-xs, tiny-s]", "models: [tiny-xs, {name: qwen2.5-7b, init: random}]"
    )
    spec = load_sweep(write(tmp_path, text + "init: random\ncluster: {models_dir: /m}\n"))
    assert spec.train.micro_batch_pairs == "auto" and spec.init == "random"
    assert spec.models[1].init == "random" and spec.models[1].base == "Qwen2.5-7B"
    assert spec.cluster.models_dir == "/m"
    monkeypatch.setenv("WPS_MODELS_DIR", "/mine")
    assert load_sweep(write(tmp_path, text + "cluster: {models_dir: /m}\n")).cluster.models_dir == "/mine"
