"""Attention backends: FlexAttention gives the segment path's rewards (CPU forward), the block mask
equals FlexAttention's own, the CUDA varlen kernels get one call per layer with the collator's
lengths (the kernel mocked at the CUDA boundary), and the backend is chosen by device/collation."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from worldpm_scaling.models import ModelShape
from worldpm_scaling.train import attention, collate
from worldpm_scaling.train.model import build_model
from worldpm_scaling.train.synthetic import synthetic_pairs

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

GQA = ModelShape(
    name="unit-gqa",
    hidden=32,
    layers=3,
    heads=4,
    kv_heads=2,
    intermediate=64,
    vocab=96,
    tie_embeddings=True,
    max_positions=512,
    rope_theta=10000.0,
)
MHA = ModelShape(
    name="unit-mha",
    hidden=32,
    layers=2,
    heads=4,
    kv_heads=4,
    intermediate=64,
    vocab=96,
    tie_embeddings=True,
    max_positions=512,
    rope_theta=10000.0,
)


@pytest.fixture(autouse=True)
def automatic_backend(monkeypatch):
    monkeypatch.delenv(attention.ENV_VAR, raising=False)
    attention.set_backend(None)
    yield
    attention.set_backend(None)


@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(7, vocab=96, seed=5, prompt_len=(1, 24), reply_len=(2, 30))


def _count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def counted(*a, **kw):
        calls.append((a, kw))
        return real(*a, **kw)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("shape", [GQA, MHA], ids=["gqa", "mha"])
@pytest.mark.parametrize("mode", ["packed", "shared_prompt"])
def test_flex_gives_the_segment_rewards(pairs, shape, mode, monkeypatch):
    import torch.nn.attention.flex_attention as fa

    model = build_model(shape, seed=2).eval()
    b = collate(pairs, mode)
    with torch.no_grad():
        sdpa = _count_calls(monkeypatch, F, "scaled_dot_product_attention")
        ref_c, ref_r = model.rewards(b)
        assert len(sdpa) == shape.layers * len(b.segments)  # the segment path: one call per segment
        assert (ref_c - ref_r).abs().max() > 1e-3
        flex = _count_calls(monkeypatch, fa, "flex_attention")
        builds = _count_calls(monkeypatch, attention, "build_block_mask")
        with attention.use_backend("flex"):
            c, r = model.rewards(b)
    assert len(flex) == shape.layers and len(builds) == 1  # one call per layer, one block mask per batch
    assert len(sdpa) == shape.layers * len(b.segments)  # ... and no SDPA call on the flex path
    if shape.kv_heads < shape.heads:  # the kernel's own GQA: K/V reach it with kv_heads heads
        q, k = flex[0][0][0], flex[0][0][1]
        assert k.shape[1] == shape.kv_heads and q.shape[1] == shape.heads and flex[0][1]["enable_gqa"]
    assert (c - ref_c).abs().max() <= 1e-5 and (r - ref_r).abs().max() <= 1e-5, (
        (c - ref_c).abs().max(),
        (r - ref_r).abs().max(),
    )


def test_segment_path_uses_enable_gqa_without_copying_kv(pairs, monkeypatch):
    model = build_model(GQA, seed=2).eval()
    b = collate(pairs, "shared_prompt")
    calls = _count_calls(monkeypatch, F, "scaled_dot_product_attention")
    rep = _count_calls(monkeypatch, torch.Tensor, "repeat_interleave")
    with torch.no_grad():
        model.rewards(b)
    assert calls and all(kw["enable_gqa"] and a[1].shape[1] == GQA.kv_heads for a, kw in calls)
    assert rep == []


def _segment_bounds(seed: int, n: int, shared: bool):
    """Segments of a long row (lengths up to 700, so tiles of 128 can be full), with prefixes if shared."""
    g = torch.Generator().manual_seed(seed)
    segs, t = [], 0
    while len(segs) < n:
        if shared:
            p, c, r = (int(x) for x in torch.randint(1, 400, (3,), generator=g))
            segs += [(t, t + p + c, 0, 0), (t + p + c, t + p + c + r, t, t + p)]
            t += p + c + r
        else:
            m = int(torch.randint(1, 700, (1,), generator=g))
            segs.append((t, t + m, 0, 0))
            t += m
    return segs


@pytest.mark.parametrize("shared", [False, True])
def test_block_mask_equals_flex_attentions_own(shared):
    from torch.nn.attention.flex_attention import create_block_mask

    segs = _segment_bounds(7, 8, shared)
    n = attention.bucket(segs[-1][1])
    assert n > segs[-1][1]  # the row is padded to its bucket: padding blocks must come out empty
    bm = attention.build_block_mask(segs, "cpu", n)
    ref = create_block_mask(bm.mask_mod, None, None, n, n, device="cpu", BLOCK_SIZE=attention.BLOCK)
    assert int(bm.full_kv_num_blocks.sum()) > 0 and int(bm.kv_num_blocks.sum()) > 0
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"):
        assert torch.equal(getattr(bm, name), getattr(ref, name)), name
    # and the mask_mod itself is the segment rule: own segment causally, plus the prefix
    dense = torch.zeros(n, n, dtype=torch.bool)
    for qs, qe, ps, pe in segs:
        dense[qs:qe, qs:qe] = torch.ones(qe - qs, qe - qs, dtype=torch.bool).tril()
        dense[qs:qe, ps:pe] = True
    from torch.nn.attention.flex_attention import create_mask

    assert torch.equal(create_mask(bm.mask_mod, 1, 1, n, n, device="cpu")[0, 0], dense)


def test_bucket_pads_at_most_a_quarter():
    sizes = [attention.bucket(n) for n in range(1, 20000, 7)]
    assert all(s % attention.BLOCK == 0 for s in sizes)
    assert all(n <= s <= max(attention.BLOCK * 4, 1.25 * n) for n, s in zip(range(1, 20000, 7), sizes))
    assert len(set(s for s in sizes if s > 1024)) <= 4 * 5 + 1  # four buckets per doubling


def _fake_varlen(calls):
    """What the CUDA kernel computes, from its own arguments: causal attention inside each cu_seqlens span."""

    def varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False, **kw):
        calls.append(
            dict(
                q=q.shape,
                k=k.shape,
                cu_q=cu_q.tolist(),
                cu_k=cu_k.tolist(),
                max_q=max_q,
                max_k=max_k,
                scale=scale,
                window_size=window_size,
                enable_gqa=enable_gqa,
                dtype=cu_q.dtype,
            )
        )
        out = []
        bounds = cu_q.tolist()
        for a, b in zip(bounds, bounds[1:]):
            qs, ks, vs = (t[a:b].transpose(0, 1)[None] for t in (q, k, v))
            out.append(
                F.scaled_dot_product_attention(
                    qs, ks, vs, is_causal=window_size == (-1, 0), scale=scale, enable_gqa=enable_gqa
                )[0].transpose(0, 1)
            )
        return torch.cat(out)

    return varlen_attn


def test_packed_rows_make_one_varlen_call_per_layer(pairs, monkeypatch):
    import torch.nn.attention.varlen as varlen

    model = build_model(GQA, seed=2).eval()
    b = collate(pairs, "packed")
    with torch.no_grad():
        ref_c, ref_r = model.rewards(b)
    calls = []
    monkeypatch.setattr(attention, "_is_cuda", lambda t: True)  # the CUDA boundary
    monkeypatch.setattr(varlen, "varlen_attn", _fake_varlen(calls))
    with torch.no_grad(), attention.use_backend("varlen"):
        c, r = model.rewards(b)
    lengths = [qe - qs for qs, qe, _, _ in b.segments]
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    assert len(calls) == GQA.layers
    T = b.input_ids.shape[1]
    head_dim = GQA.hidden // GQA.heads
    for call in calls:
        assert call["cu_q"] == call["cu_k"] == cu and call["dtype"] == torch.int32
        assert call["max_q"] == call["max_k"] == max(lengths)
        assert call["window_size"] == (-1, 0) and call["enable_gqa"] is True
        assert call["q"] == (T, GQA.heads, head_dim) and call["k"] == (T, GQA.kv_heads, head_dim)
        assert call["scale"] == pytest.approx(head_dim**-0.5)
    assert torch.allclose(c, ref_c, atol=1e-5, rtol=0) and torch.allclose(r, ref_r, atol=1e-5, rtol=0)


def test_flash_attn_gets_the_same_single_call(pairs, monkeypatch):
    calls = []
    fake = _fake_varlen(calls)

    def flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, dropout_p=0.0, softmax_scale=None, causal=False):
        assert dropout_p == 0.0
        return fake(
            q,
            k,
            v,
            cu_q,
            cu_k,
            max_q,
            max_k,
            scale=softmax_scale,
            window_size=(-1, 0) if causal else (-1, -1),
            enable_gqa=k.shape[1] != q.shape[1],
        )

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=flash_attn_varlen_func))
    monkeypatch.setattr(attention, "_is_cuda", lambda t: True)
    monkeypatch.setattr(attention, "_has_flash_attn", lambda: True)
    model = build_model(GQA, seed=2).eval()
    b = collate(pairs, "packed")
    with torch.no_grad():
        with attention.use_backend("segments"):
            ref_c, _ = model.rewards(b)
        with attention.use_backend("flash_attn"):
            c, _ = model.rewards(b)
    assert len(calls) == GQA.layers and calls[0]["window_size"] == (-1, 0)
    assert calls[0]["k"][1] == GQA.kv_heads  # GQA by the kernel: no K/V copy
    assert torch.allclose(c, ref_c, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_cuda_flex_is_compiled_once_and_padded_to_its_bucket(pairs, monkeypatch):
    import torch._dynamo

    compiles, calls = [], []
    real_compile = torch.compile
    from torch.nn.attention.flex_attention import flex_attention

    def fake_compile(fn, **kw):  # the CUDA boundary: record flex's compile, run it eagerly
        if fn is not flex_attention:  # (eager flex compiles its own internals)
            return real_compile(fn, **kw)
        compiles.append((fn.__name__, kw))

        def run(q, k, v, **fkw):
            calls.append((q.shape, k.shape, fkw))
            return fn(q, k, v, **fkw)

        return run

    monkeypatch.setattr(attention, "_is_cuda", lambda t: True)
    monkeypatch.setattr(attention, "_flex_compiled", None)
    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 8)
    model = build_model(GQA, seed=2).eval()
    b = collate(synthetic_pairs(6, vocab=96, seed=5, prompt_len=(20, 60), reply_len=(40, 120)), "shared_prompt")
    T = b.input_ids.shape[1]
    assert attention.bucket(T) > -(-T // attention.BLOCK) * attention.BLOCK  # a bucket longer than the blocks
    with torch.no_grad():
        with attention.use_backend("segments"):
            ref_c, ref_r = model.rewards(b)
        c, r = model.rewards(b)  # automatic: CUDA + prefixes → flex
    assert compiles == [("flex_attention", {"dynamic": False})]  # one compiled function, static shapes
    assert torch._dynamo.config.recompile_limit >= 64  # room for every length bucket
    first = calls
    assert all(q == (1, GQA.heads, attention.bucket(T), GQA.hidden // GQA.heads) for q, _, _ in first)
    assert all(k[1] == GQA.kv_heads and kw["enable_gqa"] for _, k, kw in first)
    assert len({id(kw["block_mask"]) for _, _, kw in first}) == 1  # one block mask for all layers
    assert first[0][2]["block_mask"].seq_lengths == (attention.bucket(T),) * 2
    assert len(calls) == GQA.layers
    assert torch.allclose(c, ref_c, atol=1e-5, rtol=0) and torch.allclose(r, ref_r, atol=1e-5, rtol=0)


def test_choice_by_device_dtype_and_collation(pairs, monkeypatch):
    packed = collate(pairs, "packed").segments
    shared = collate(pairs, "shared_prompt").segments
    bf16, fp32 = torch.zeros(1, dtype=torch.bfloat16), torch.zeros(1)
    assert attention.choose(packed, bf16) == attention.choose(shared, fp32) == "segments"  # CPU
    monkeypatch.setattr(attention, "_is_cuda", lambda t: True)
    monkeypatch.setattr(attention, "_has_flash_attn", lambda: False)
    assert attention.choose(packed, bf16) == "varlen"
    assert attention.choose(packed, fp32) == "flex"  # the flash kernels are fp16/bf16 only
    assert attention.choose(shared, bf16) == "flex"  # a prefix is not contiguous with its reply
    monkeypatch.setattr(attention, "_has_flash_attn", lambda: True)
    assert attention.choose(packed, bf16) == "flash_attn"
    monkeypatch.setenv(attention.ENV_VAR, "segments")
    assert attention.choose(packed, bf16) == "segments"
    with attention.use_backend("flex"):  # set_backend wins over the environment
        assert attention.choose(packed, bf16) == "flex"
    assert attention.backends_available("cpu") == ["segments", "flex"]
    assert attention.backends_available("cuda", torch.float32) == ["segments", "flex"]
    assert attention.backends_available("cuda", torch.bfloat16) == ["segments", "flex", "varlen", "flash_attn"]


def test_bad_backends_are_named(pairs, monkeypatch):
    shared = collate(pairs, "shared_prompt").segments
    with pytest.raises(attention.AttentionBackendError, match="set_backend.*'fast'"):
        attention.set_backend("fast")
    monkeypatch.setenv(attention.ENV_VAR, "flesh")
    with pytest.raises(attention.AttentionBackendError, match=r"\$WPS_ATTENTION.*'flesh'"):
        attention.choose(shared, torch.zeros(1))
    monkeypatch.delenv(attention.ENV_VAR)
    with attention.use_backend("varlen"):
        with pytest.raises(attention.AttentionBackendError, match="'varlen' needs a CUDA device"):
            attention.choose(shared, torch.zeros(1))
        monkeypatch.setattr(attention, "_is_cuda", lambda t: True)
        with pytest.raises(attention.AttentionBackendError, match="'varlen' cannot run shared-prompt rows"):
            attention.choose(shared, torch.zeros(1))
    with pytest.raises(ValueError, match="tile the packed row"):
        attention.plan_for([(0, 4, 0, 0), (5, 9, 0, 0)])
    with pytest.raises(ValueError, match="not inside one earlier segment"):
        attention.plan_for([(0, 4, 0, 0), (4, 9, 2, 6)])
