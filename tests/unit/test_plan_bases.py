"""Pretrained bases: the paper grid starts from local Qwen2.5 checkpoints under a models directory;
`wps plan` marks missing ones, `wps launch` (dry run included) refuses them; random init only when
asked (docs/pretrained_bases.md)."""

import dataclasses
import json

import pytest

from worldpm_scaling.cli import main
from worldpm_scaling.config import load_sweep
from worldpm_scaling.models import QWEN25, check_base
from worldpm_scaling.plan import PlanError, plan


def _base(models_dir, name, **override):
    """A base folder as Hugging Face ships it: config.json of the catalogue shape and a weights file."""
    shape = QWEN25[name]
    folder = models_dir / shape.base
    folder.mkdir(parents=True)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **shape.to_hf_config(), **override}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").write_bytes(b"\0" * 8)
    return folder


@pytest.fixture
def sweep(repo, tmp_path, monkeypatch):
    """worldpm.yaml on a profile whose models_dir is tmp/models (and no $WPS_MODELS_DIR)."""
    monkeypatch.delenv("WPS_MODELS_DIR", raising=False)
    prof = tmp_path / "h100.yaml"
    prof.write_text(
        (repo / "slurm/h100.yaml")
        .read_text()
        .replace("models_dir: /shared/models", f"models_dir: {tmp_path / 'models'}")
    )
    text = (repo / "sweeps/worldpm.yaml").read_text().replace("cluster: slurm/h100.yaml", f"cluster: {prof}")
    text = text.replace("name: worldpm", f"name: worldpm\nout_dir: {tmp_path / 'out'}")
    f = tmp_path / "worldpm.yaml"
    f.write_text(text)
    return f


def test_paper_cells_start_from_bases_under_models_dir(sweep, tmp_path, monkeypatch):
    p = plan(load_sweep(sweep))
    assert [r.model.init for r in p.runs] == ["pretrained"] * 3
    assert [r.model.path for r in p.runs] == [
        str(tmp_path / "models" / b) for b in ("Qwen2.5-1.5B", "Qwen2.5-7B", "Qwen2.5-72B")
    ]
    # $WPS_MODELS_DIR overrides the profile; where the bases sit is not what a cell is: same ids
    monkeypatch.setenv("WPS_MODELS_DIR", str(tmp_path / "elsewhere"))
    moved = plan(load_sweep(sweep))
    assert moved.runs[1].model.path == str(tmp_path / "elsewhere" / "Qwen2.5-7B")
    assert [r.cell_id for r in moved.runs] == [r.cell_id for r in p.runs]
    assert moved.runs[1].cell_id == moved.runs[1].__class__.from_dict(json.loads(moved.runs[1].to_json())).cell_id


def test_check_base_names_missing_and_mismatched_folders(sweep, tmp_path):
    runs = plan(load_sweep(sweep)).runs
    assert "does not exist" in check_base(runs[0].model) and "Qwen2.5-1.5B" in check_base(runs[0].model)
    _base(tmp_path / "models", "qwen2.5-1.5b")
    assert check_base(runs[0].model) is None
    _base(tmp_path / "models", "qwen2.5-7b", hidden_size=4096, num_attention_heads=32, num_hidden_layers=32)
    why = check_base(runs[1].model)
    assert "disagrees with the catalogue shape" in why and "hidden 4096 (catalogue 3584)" in why
    assert "layers 32 (catalogue 28)" in why
    (tmp_path / "models" / "Qwen2.5-72B").mkdir()
    assert "config.json" in check_base(runs[2].model)
    nodir = dataclasses.replace(runs[0].model, path=None)
    assert "no models directory is set" in check_base(nodir)


def test_plan_marks_missing_bases_and_launch_refuses_them(sweep, tmp_path, capsys):
    assert main(["plan", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.count("missing") >= 3 and str(tmp_path / "models" / "Qwen2.5-72B") in out
    assert main(["launch", str(sweep), "--dry-run"]) == 2
    cap = capsys.readouterr()
    assert "#SBATCH" in cap.out  # the dry run previews the scripts, and its readiness table names each base
    assert "base qwen2.5-7b" in cap.err and "does not exist" in cap.out
    assert main(["launch", str(sweep)]) == 2  # refused before anything is submitted
    cap = capsys.readouterr()
    assert str(tmp_path / "models" / "Qwen2.5-7B") in cap.err and "does not exist" in cap.err
    for name in ("qwen2.5-1.5b", "qwen2.5-7b"):
        _base(tmp_path / "models", name)
    _base(tmp_path / "models", "qwen2.5-72b", vocab_size=151936)
    assert main(["launch", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "Qwen2.5-72B/config.json disagrees" in err and "vocab 151936 (catalogue 152064)" in err
    assert "Qwen2.5-7B" not in err
    (tmp_path / "models" / "Qwen2.5-72B" / "config.json").unlink()
    _base(tmp_path / "models" / "fixed", "qwen2.5-72b")
    (tmp_path / "models" / "Qwen2.5-72B" / "config.json").write_text(
        (tmp_path / "models" / "fixed" / "Qwen2.5-72B" / "config.json").read_text()
    )
    assert main(["launch", str(sweep), "--dry-run"]) == 2  # bases ready; the data, evals and server are not
    cap = capsys.readouterr()
    assert "#SBATCH" in cap.out and "base qwen2.5" not in cap.err and "data.source" in cap.err
    assert main(["plan", str(sweep), "--format", "json"]) == 0
    assert [r["init"] for r in json.loads(capsys.readouterr().out)] == ["pretrained"] * 3


def test_random_init_only_when_asked(repo, sweep, tmp_path):
    spec = load_sweep(sweep)
    text = sweep.read_text().replace(
        "models: [qwen2.5-1.5b, qwen2.5-7b, qwen2.5-72b]", "models: [qwen2.5-1.5b, {name: qwen2.5-7b, init: random}]"
    )
    f = tmp_path / "mixed.yaml"
    f.write_text(text)
    mixed = plan(load_sweep(f))
    assert [(r.model.init, r.model.path) for r in mixed.runs] == [
        ("pretrained", str(tmp_path / "models" / "Qwen2.5-1.5B")),
        ("random", None),
    ]
    pretrained = plan(spec).runs[1]
    assert mixed.runs[1].cell_id != pretrained.cell_id  # a random 7B is another experiment
    every = plan(dataclasses.replace(spec, init="random"))
    assert {r.model.init for r in every.runs} == {"random"} and check_base(every.runs[2].model) is None
    demo = plan(load_sweep(repo / "sweeps/demo.yaml"))
    assert demo.sweep.init == "random" and {r.model.init for r in demo.runs} == {"random"}
    # a tiny shape has no base: pretrained is an error naming the field, random the only choice
    tiny = dataclasses.replace(demo.sweep, init="pretrained")
    with pytest.raises(PlanError, match="tiny-xxxs has no released base") as e:
        plan(tiny)
    assert e.value.path == "models[0].init"
    assert {r.model.init for r in plan(dataclasses.replace(demo.sweep, init=None)).runs} == {"random"}
