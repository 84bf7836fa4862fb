"""The torch engine's update is one multi-tensor (foreach) call, and it gives the same bits as the per-tensor
Adam(W) loop and per-tensor grad norm it replaced: a cell's logged curve does not move."""

from __future__ import annotations

import pytest
import torch

from worldpm_scaling.models import ModelShape
from worldpm_scaling.train import collate
from worldpm_scaling.train.engine import TorchEngine
from worldpm_scaling.train.model import bt_loss, build_model
from worldpm_scaling.train.synthetic import make_run, synthetic_pairs

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


def test_foreach_update_and_grad_norm_equal_the_per_tensor_loop(tmp_path):
    run = make_run(
        SHAPE,
        pairs=32,
        out_dir=str(tmp_path),
        lr=3e-3,
        weight_decay=0.1,
        global_batch_pairs=4,
        micro_batch_pairs=4,
        grad_clip=0.05,
    )
    eng = TorchEngine(build_model(SHAPE, seed=1), run, distributed=False)
    assert all(g["foreach"] for g in eng.opt.param_groups)
    ref = build_model(SHAPE, seed=1)
    params = list(ref.parameters())
    ref_opt = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=3e-3,
        betas=run.train.betas,
        eps=run.train.eps,
        foreach=False,
    )
    pairs = synthetic_pairs(32, vocab=SHAPE.vocab, seed=0)
    for k in range(8):
        b = collate(pairs[4 * k : 4 * k + 4], "shared_prompt")
        for model in (eng.model, ref):
            rc, rr = model.rewards(b)
            bt_loss(rc, rr).mean().backward()
        grads = [p.grad for p in params if p.grad is not None]
        ref_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        lr = 3e-3 * (k + 1) / 8
        norm, applied = eng.step(lr, lambda gn: True)
        assert applied and norm == ref_norm  # bit for bit
        if norm > 0.05:  # the clip (grad_clip 0.05 makes every step clip)
            torch._foreach_mul_(grads, 0.05 / (norm + 1e-6))
        for g in ref_opt.param_groups:
            g["lr"] = lr
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
    for (name, p), q in zip(eng.model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
    assert any(not torch.equal(p, q) for p, q in zip(eng.model.parameters(), build_model(SHAPE, seed=1).parameters()))
