import pytest

from worldpm_scaling import models
from worldpm_scaling.models import QWEN25, QWEN25_PUBLISHED_B, TINY, ModelShape


@pytest.mark.parametrize("name", sorted(QWEN25))
def test_qwen_counts_match_published_totals(name):
    shape = QWEN25[name]
    total_b, non_emb_b = QWEN25_PUBLISHED_B[name]
    # The model cards round to 2–3 significant figures; allow 1.5% (0.5B's 0.49 is the coarsest).
    assert shape.params_total / 1e9 == pytest.approx(total_b, rel=0.015)
    assert shape.params_non_embedding / 1e9 == pytest.approx(non_emb_b, rel=0.015)


@pytest.mark.parametrize("name", ["tiny-s", "tiny-xxxs", "tiny-sm"])  # the demo's sizes must be counted as built
def test_counts_match_transformers_model(name):
    transformers = pytest.importorskip("transformers")
    shape = TINY[name]
    m = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**shape.to_hf_config()))
    assert sum(p.numel() for p in m.parameters()) == shape.params_total
    untied = ModelShape(**{**shape.to_dict(), "name": "untied", "tie_embeddings": False})
    m2 = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**untied.to_hf_config()))
    assert sum(p.numel() for p in m2.parameters()) == untied.params_total


def test_tiny_shapes_are_cpu_sized():
    for s in TINY.values():
        assert 1e4 < s.params_non_embedding < 50e6  # tiny-xxxs (~17k) … tiny-l
        assert s.params_total < 60e6


def test_unknown_model_lists_valid_names():
    with pytest.raises(models.UnknownModel) as e:
        models.get("qwen2.5-8b")
    assert "qwen2.5-7b" in str(e.value) and "tiny-s" in str(e.value)


def test_bad_shape_rejected():
    with pytest.raises(ValueError, match="divisible by heads"):
        ModelShape(name="x", hidden=100, layers=1, heads=3, kv_heads=1, intermediate=8, vocab=10)
    with pytest.raises(ValueError, match="layers must be positive"):
        ModelShape(name="x", hidden=64, layers=0, heads=4, kv_heads=2, intermediate=8, vocab=10)


def test_shape_from_checkpoint(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text(
        '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, '
        '"num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000, "model_type": "qwen2"}'
    )
    s = models.shape_from_checkpoint(tmp_path)
    assert s.path == str(tmp_path) and s.hidden == 64 and s.kv_heads == 2
    with pytest.raises(ValueError, match="no such checkpoint folder"):
        models.shape_from_checkpoint(tmp_path / "nope")
