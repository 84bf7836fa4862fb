"""The three collations (and both packed layouts) give the same rewards and gradients for the same pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldpm_scaling.data.pairs import TokenizedPair
from worldpm_scaling.models import ModelShape
from worldpm_scaling.train import CollationError, collate
from worldpm_scaling.train.model import bt_loss, bt_metrics, build_model
from worldpm_scaling.train.synthetic import synthetic_pairs

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]


SHAPE = ModelShape(
    name="unit",
    hidden=32,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate=64,
    vocab=96,
    tie_embeddings=True,
    max_positions=512,
    rope_theta=10000.0,
)
VARIANTS = [
    ("padded", "segments"),
    ("packed", "segments"),
    ("packed", "mask"),
    ("shared_prompt", "segments"),
    ("shared_prompt", "mask"),
]


@pytest.fixture(scope="module")
def pairs():
    return synthetic_pairs(9, vocab=SHAPE.vocab, seed=3, prompt_len=(1, 20), reply_len=(2, 30))


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_rewards_agree_across_collations(pairs, head):
    model = build_model(SHAPE, head=head, seed=1).eval()
    with torch.no_grad():
        ref_c, ref_r = model.rewards(collate(pairs, "padded"))
        assert ref_c.shape == (len(pairs),) and torch.isfinite(ref_c).all()
        assert (ref_c - ref_r).abs().max() > 1e-3  # the rewards are not trivially equal
        for mode, layout in VARIANTS[1:]:
            c, r = model.rewards(collate(pairs, mode, row_len=80, layout=layout))
            assert torch.allclose(c, ref_c, atol=1e-4, rtol=0), (mode, layout, (c - ref_c).abs().max())
            assert torch.allclose(r, ref_r, atol=1e-4, rtol=0), (mode, layout, (r - ref_r).abs().max())


def test_gradients_agree_between_padded_and_shared_prompt(pairs):
    grads = []
    for mode in ("padded", "shared_prompt"):
        model = build_model(SHAPE, seed=1)
        c, r = model.rewards(collate(pairs, mode))
        bt_loss(c, r).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5), (grads[0] - grads[1]).abs().max()


def test_packing_removes_padding_and_shares_the_prompt(pairs):
    pad = collate(pairs, "padded")
    packed = collate(pairs, "packed")
    shared = collate(pairs, "shared_prompt")
    full = sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
    assert pad.real_tokens == packed.real_tokens == full
    assert pad.capacity > full  # padded rows carry padding
    assert packed.capacity == packed.real_tokens == full
    assert shared.real_tokens == shared.capacity == full - sum(len(p.prompt) for p in pairs)
    # positions restart per sequence; each shared reply continues from its prompt
    p0 = pairs[0]
    lp, lc = len(p0.prompt), len(p0.chosen)
    row = shared.position_ids[0].tolist()
    assert row[: lp + lc] == list(range(lp + lc))
    assert row[lp + lc : lp + lc + len(p0.rejected)] == list(range(lp, lp + len(p0.rejected)))


def test_a_shared_reply_never_sees_the_other_reply(pairs):
    model = build_model(SHAPE, seed=1).eval()
    p = pairs[0]
    other = TokenizedPair(prompt=p.prompt, chosen=(p.chosen + 7) % SHAPE.vocab, rejected=p.rejected)
    with torch.no_grad():
        for layout in ("segments", "mask"):
            _, r1 = model.rewards(collate([p], "shared_prompt", row_len=128, layout=layout))
            _, r2 = model.rewards(collate([other], "shared_prompt", row_len=128, layout=layout))
            assert torch.equal(r1, r2) or (r1 - r2).abs().max() < 1e-6, layout


def test_bad_input_is_named(pairs):
    with pytest.raises(CollationError, match="does not fit a 8-token row"):
        collate(pairs, "packed", row_len=8, layout="mask")
    with pytest.raises(CollationError, match="train.collation"):
        collate(pairs, "bucketed")
    with pytest.raises(CollationError, match="layout"):
        collate(pairs, "packed", layout="flex")
    with pytest.raises(CollationError, match="empty"):
        collate([], "padded")


def test_bt_metrics():
    m = bt_metrics(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert m["acc"] == 0.5
    assert m["margin"] == pytest.approx(0.5)
    expect = float(np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(1.0))]))
    assert m["loss"] == pytest.approx(expect, rel=1e-6)
