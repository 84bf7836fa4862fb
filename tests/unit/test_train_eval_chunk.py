"""Milestone evaluation scores several micro-batches of pairs per forward (Trainer.eval_chunk): the
logged eval metrics are those of scoring each pair alone."""

from __future__ import annotations

import pytest

from worldpm_scaling.models import ModelShape
from worldpm_scaling.track import InMemoryTracker
from worldpm_scaling.train import EvalData, Trainer
from worldpm_scaling.train.synthetic import make_run, synthetic_pairs

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

SHAPE = ModelShape(
    name="unit",
    hidden=32,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate=64,
    vocab=64,
    tie_embeddings=True,
    max_positions=256,
    rope_theta=10000.0,
)


def _metrics(tmp_path, chunk: int | None, monkeypatch) -> dict[str, float]:
    run = make_run(
        SHAPE,
        pairs=16,
        out_dir=str(tmp_path / str(chunk)),
        global_batch_pairs=4,
        micro_batch_pairs=4,
        collation="shared_prompt",
    )
    sets = [
        EvalData("rmbench_chat", "adversarial", synthetic_pairs(37, vocab=SHAPE.vocab, seed=100)),
        EvalData("ppe_gpqa", "objective", synthetic_pairs(21, vocab=SHAPE.vocab, seed=101)),
    ]
    tr = Trainer(run, InMemoryTracker().start_cell("s", "c", name="c"), train_pairs=[], eval_sets=sets, device="cpu")
    with monkeypatch.context() as m:
        if chunk is not None:
            m.setattr(Trainer, "eval_chunk", property(lambda self: chunk))
        else:
            assert tr.eval_chunk == 16  # 4 micro-batches of 4, at least 16
        tr._build()
        return tr.evaluate()


def test_eval_chunk_scores_what_one_pair_at_a_time_scores(tmp_path, monkeypatch):
    alone = _metrics(tmp_path, 1, monkeypatch)
    chunked = _metrics(tmp_path, None, monkeypatch)
    assert set(chunked) == set(alone) and any(k.endswith("/loss") for k in alone)
    for k, v in alone.items():
        assert abs(chunked[k] - v) <= 1e-6, (k, chunked[k], v)
