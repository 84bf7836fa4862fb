"""A resume continues from its checkpoint — not a restart from step 0 that happens to draw the same curve.

A restart from 0 with the same seed reproduces every loss exactly and the tracker silently drops the
steps it already has, so "same curve, no step twice" cannot tell the two apart. These tests check the
step the trainer resumed from (its attribute and the `resumed_from_step` tag) and the first step it
trained after the restart, then compare the losses trained after the restart with an uninterrupted
run. `WPS_TEST_DISABLE_RESTORE=1` (tests/conftest.py) makes `_restore` a no-op: they must fail then.
"""

from __future__ import annotations

import pytest

from worldpm_scaling import names
from worldpm_scaling.models import ModelShape
from worldpm_scaling.track import InMemoryTracker
from worldpm_scaling.train import EvalData, Trainer
from worldpm_scaling.train import checkpoint as ckpt
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


def _run(out, **kw):
    return make_run(
        SHAPE,
        pairs=96,
        out_dir=str(out),
        lr=3e-3,
        weight_decay=0.0,
        warmup_frac=0.0,
        global_batch_pairs=8,
        micro_batch_pairs=4,
        collation="shared_prompt",
        checkpoint_every_steps=3,
        milestones=(48, 96),
        **kw,
    )


PAIRS = synthetic_pairs(96, vocab=SHAPE.vocab, seed=0, marker=5)
EVALS = [EvalData("rmbench_chat", "adversarial", synthetic_pairs(16, vocab=SHAPE.vocab, seed=100, marker=5))]


class Crash(Exception):
    pass


def _trained(trainer: Trainer, *, crash_at: int | None = None) -> dict[int, float]:
    """Run fit(); return {step: train loss} of every step this call trained (logged or not)."""
    seen: dict[int, float] = {}

    def progress(tr, metrics):
        seen[tr.step] = metrics[names.TRAIN_LOSS]
        if tr.step == crash_at:
            raise Crash

    try:
        trainer.fit(progress=progress)
    except Crash:
        pass
    return seen


def test_resume_continues_from_the_checkpoint_step_with_the_uninterrupted_losses(tmp_path):
    full = InMemoryTracker().start_cell("s", "c", name="c")
    ref = _trained(Trainer(_run(tmp_path / "ref"), full, train_pairs=PAIRS, eval_sets=EVALS))
    assert sorted(ref) == list(range(1, 13))

    cell = InMemoryTracker().start_cell("s", "c", name="c")
    run = _run(tmp_path / "b")
    first = _trained(Trainer(run, cell, train_pairs=PAIRS, eval_sets=EVALS), crash_at=8)
    assert sorted(first) == list(range(1, 9))
    assert ckpt.latest(tmp_path / "b" / "checkpoints").name == "step_00000006.pt"

    again = Trainer(run, cell, train_pairs=PAIRS, eval_sets=EVALS)
    after = _trained(again)
    assert again.resumed_from_step == 6, "the restart did not continue from the step-6 checkpoint"
    assert cell.tags.get("resumed_from_step") == "6"
    assert min(after) == 7, f"first step trained after the restart: {min(after)} (a restart from 0 gives 1)"
    assert sorted(after) == list(range(7, 13))
    assert max(abs(after[s] - ref[s]) for s in after) <= 1e-6
    # and the tracker holds each step once, with the uninterrupted values
    got, want = cell.history(names.TRAIN_LOSS), full.history(names.TRAIN_LOSS)
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 13))
    assert max(abs(a - b) for (_, a), (_, b) in zip(got, want)) <= 1e-6
    ev = names.eval_loss("rmbench_chat")
    assert [s for s, _ in cell.history(ev)] == [6, 12]
    assert cell.history(ev)[-1][1] == pytest.approx(full.history(ev)[-1][1], abs=1e-6)


def test_a_finished_cell_resumes_at_its_last_step_and_trains_nothing(tmp_path):
    cell = InMemoryTracker().start_cell("s", "c", name="c")
    run = _run(tmp_path)
    assert len(_trained(Trainer(run, cell, train_pairs=PAIRS, eval_sets=EVALS))) == 12
    again = Trainer(run, cell, train_pairs=PAIRS, eval_sets=EVALS)
    assert _trained(again) == {}
    assert again.resumed_from_step == 12 and again.step == 12
