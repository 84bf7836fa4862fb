"""The exported folder has the layout vLLM's `Qwen2ForRewardModel` loads natively (no trust_remote_code).

What vLLM needs is written down here from its source, not taken from the exporter, so a drift of either
breaks this test (vllm 0.32.0: model_executor/models/qwen2_rm.py — architecture `Qwen2ForRewardModel`
on a `qwen2` config, the Qwen2 decoder under `model.`, `score` = Sequential(ColumnParallelLinear(h, h),
ReLU, RowParallelLinear(h, 1)), both linears with biases; models/qwen2.py — q/k/v projections with
biases, o_proj and the MLP without; v1/attention/backends/cpu_attn.py — the CPU head dims). The real
engine is checked by `make test-serve` (bench/serve_vllm.py, result in bench/results/serve_vllm.md)."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.exported import cell_with_checkpoint
from worldpm_scaling.cli import main

pytestmark = pytest.mark.unit

CPU_HEAD_DIMS = {32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512}


def vllm_qwen2_rm_weights(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor name (and shape) vLLM's Qwen2ForRewardModel.load_weights takes from a checkpoint."""
    h, n, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, inter, vocab = h // n, cfg["intermediate_size"], cfg["vocab_size"]
    w = {
        "model.embed_tokens.weight": (vocab, h),
        "model.norm.weight": (h,),
        "score.0.weight": (h, h),
        "score.0.bias": (h,),
        "score.2.weight": (1, h),
        "score.2.bias": (1,),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.update(
            {
                p + "self_attn.q_proj.weight": (n * d, h),
                p + "self_attn.q_proj.bias": (n * d,),
                p + "self_attn.k_proj.weight": (kv * d, h),
                p + "self_attn.k_proj.bias": (kv * d,),
                p + "self_attn.v_proj.weight": (kv * d, h),
                p + "self_attn.v_proj.bias": (kv * d,),
                p + "self_attn.o_proj.weight": (h, n * d),
                p + "mlp.gate_proj.weight": (inter, h),
                p + "mlp.up_proj.weight": (inter, h),
                p + "mlp.down_proj.weight": (h, inter),
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
            }
        )
    return w


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-layout")
    sweep, _ = cell_with_checkpoint(root, model="tiny-serve")
    out = root / "rm"
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["export", str(sweep), "--cell", "0", "--out", str(out), "--dtype", "fp32"]) == 0
    finally:
        os.chdir(cwd)
    return out


def test_export_has_the_layout_vllm_qwen2_reward_model_loads(exported):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    cfg = json.loads((exported / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForRewardModel"]  # vLLM's registry key: no remote code needed
    assert cfg["model_type"] == "qwen2"
    assert cfg["hidden_size"] // cfg["num_attention_heads"] in CPU_HEAD_DIMS
    with safe_open(str(exported / "model.safetensors"), "pt") as st:
        got = {k: tuple(st.get_slice(k).get_shape()) for k in st.keys()}
    assert got == vllm_qwen2_rm_weights(cfg)
    tok = AutoTokenizer.from_pretrained(str(exported))
    assert cfg["pad_token_id"] == tok.convert_tokens_to_ids("<|endoftext|>") == tok.pad_token_id
    # the reward token is recorded, and the chat template ends every conversation with it: vLLM returns a
    # reward per token, and the scorer reads the one at the recorded token
    meta = json.loads((exported / "wps_export.json").read_text())
    assert cfg["reward_token"] == "<|endoftext|>" and meta["reward_token"] == "endoftext"
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        tokenize=True,
        add_generation_prompt=False,
    )
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert tok.convert_ids_to_tokens(ids[-1]) == cfg["reward_token"]


def test_export_warns_when_vllm_cannot_serve_the_shape(tmp_path, capsys, monkeypatch):
    sweep, _ = cell_with_checkpoint(tmp_path)  # tiny-xs: head dim 16
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["export", str(sweep), "--cell", "0", "--out", "rm16"]) == 0
    err = capsys.readouterr().err
    assert "warning: vLLM cannot serve this shape: head dim 16" in err and "64" in err, err


def test_serving_shape_exports_without_a_warning(exported, capsys):
    from worldpm_scaling.train.export import serving_warnings

    assert serving_warnings(json.loads((exported / "config.json").read_text())) == []
    assert serving_warnings({"hidden_size": 128, "num_attention_heads": 2, "reward_head": "linear"})
