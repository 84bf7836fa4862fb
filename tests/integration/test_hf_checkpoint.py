"""Local HF checkpoints in: a Qwen2 folder written by save_pretrained (config.json, sharded safetensors,
tokenizer files) is a sweep model (`models: [{path: DIR}]`): planned from its config.json, trained by
`wps train` from its weights, resumed after a SIGKILL; folders that are not Qwen2 checkpoints are named
errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.fixtures.qwen_tokenizer import sweep_dict, trained_path_cell
from worldpm_scaling.cli import main

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def cell(tmp_path_factory) -> dict:
    return trained_path_cell(tmp_path_factory)


@pytest.fixture(scope="module")
def base(cell) -> tuple[Path, Path]:
    return cell["tmp"], cell["base"]


def _sweep(tmp: Path, ck: Path, name: str, out: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(sweep_dict(name, ck, tmp / "synth", tmp / out)))
    return p


def _model_state(ckpt_file: Path) -> dict:
    return torch.load(ckpt_file, map_location="cpu", weights_only=False)["model"]


def test_sharded_checkpoint_plans_trains_and_resumes(cell, capsys):
    from safetensors.torch import load_file

    ck, sweep, ckdir = cell["base"], cell["sweep"], cell["ckdir"]
    index = json.loads((ck / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2  # really sharded

    # the plan's shape and parameter count come from config.json
    assert main(["plan", str(sweep), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    cfg = json.loads((ck / "config.json").read_text())
    d, inter, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    kv = cfg["num_key_value_heads"] * d // cfg["num_attention_heads"]
    assert row["params_non_embedding"] == L * ((d * d + d) + 2 * (d * kv + kv) + d * d + 3 * d * inter + 2 * d) + d

    # `wps train` killed after update 5 (checkpoints at 2 and 4), then resumed to the end
    assert cell["killed_rc"] == -9, cell["killed_log"]
    assert cell["after_kill"] == ["step_00000002.pt", "step_00000004.pt"]
    assert cell["resumed_rc"] == 0
    (meta,) = list((cell["tmp"] / "runs").rglob("cell-*.meta.json"))
    assert json.loads(meta.read_text())["tags"]["resumed_from_step"] == "4"
    assert (ckdir / "step_00000008.pt").is_file()

    # it started from the checkpoint's weights: two small steps moved them a little, not to a fresh init
    saved = {}
    for f in set(index["weight_map"].values()):
        saved.update(load_file(str(ck / f)))
    start = _model_state(ckdir / "step_00000002.pt")
    w0 = saved["model.layers.0.mlp.down_proj.weight"]
    moved = (start["backbone.layers.0.mlp.down_proj.weight"] - w0).abs().max().item()
    assert 0 < moved < 0.01 and w0.abs().max().item() > 0.02  # Adam: ≤ lr 2e-3 a step


def test_folders_that_are_not_qwen2_checkpoints_are_named_errors(base, capsys):
    import transformers

    tmp, ck = base
    empty = tmp / "no-config"
    empty.mkdir()
    gpt2 = tmp / "gpt2"
    transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64).save_pretrained(gpt2)
    bare = tmp / "qwen2-no-weights"
    bare.mkdir()
    (bare / "config.json").write_text((ck / "config.json").read_text())
    cases = {
        empty: f"{empty / 'config.json'}: no config.json",
        gpt2: "model_type 'gpt2'",
        bare: f"{bare}: no weights",
        tmp / "missing": f"{tmp / 'missing'}: no such checkpoint folder",
    }
    for folder, message in cases.items():
        sweep = _sweep(tmp, folder, "bad", "bad-runs")
        assert main(["plan", str(sweep)]) == 2, folder
        err = capsys.readouterr().err
        assert "models[0].path" in err and message in err, err
