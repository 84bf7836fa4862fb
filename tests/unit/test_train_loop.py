"""The loop: learning, logging, milestones, exact resume, checkpoints, non-finite handling, signals."""

from __future__ import annotations

import math

import pytest
import torch

from worldpm_scaling import names
from worldpm_scaling.models import ModelShape
from worldpm_scaling.track import InMemoryTracker
from worldpm_scaling.train import (
    CheckpointCorruptError,
    DataTooSmallError,
    EvalData,
    NonFiniteLossError,
    Trainer,
    lr_at,
)
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
MARKER = 5


class StrictRun:
    """A tracker run that fails the test if a step is logged twice (or out of order)."""

    def __init__(self, inner):
        self.inner, self.run_id, self.calls = inner, inner.run_id, []

    def log_metrics(self, metrics, step):
        last = self.inner.last_step()
        assert last is None or step > last, f"step {step} logged again (last {last})"
        self.calls.append(step)
        self.inner.log_metrics(metrics, step)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def run_for(tmp_path, *, pairs=64, **train):
    kw = dict(
        lr=3e-3,
        weight_decay=0.0,
        warmup_frac=0.0,
        global_batch_pairs=8,
        micro_batch_pairs=4,
        collation="shared_prompt",
        checkpoint_every_steps=None,
    )
    kw.update(train)
    return make_run(SHAPE, pairs=pairs, out_dir=str(tmp_path), **kw)


def data(n=64, seed=0, marker=MARKER):
    return synthetic_pairs(n, vocab=SHAPE.vocab, seed=seed, marker=marker)


def evals():
    return [
        EvalData("rmbench_chat", "adversarial", data(32, seed=100)),
        EvalData("ppe_gpqa", "objective", data(32, seed=101)),
    ]


def new_run():
    return StrictRun(InMemoryTracker().start_cell("s", "c", name="c"))


def test_learns_a_planted_preference(tmp_path):
    run = make_run(
        SHAPE,
        pairs=384,
        out_dir=str(tmp_path),
        milestones=(64, 384),
        lr=1e-2,
        weight_decay=0.0,
        warmup_frac=0.05,
        global_batch_pairs=16,
        micro_batch_pairs=16,
        checkpoint_every_steps=None,
    )
    tr = new_run()
    result = Trainer(run, tr, train_pairs=data(384), eval_sets=evals()).fit()
    assert result.status == "FINISHED" and result.steps == 24 and result.pairs_seen == 384
    acc = dict(tr.inner.history(names.eval_acc("rmbench_chat")))
    assert set(acc) == {4, 24}  # evaluated when pairs_seen crossed 64 (step 4) and 384 (step 24)
    assert acc[24] >= 0.95, acc
    assert (
        tr.inner.history(names.eval_loss("adversarial"))[-1][1] < tr.inner.history(names.eval_loss("adversarial"))[0][1]
    )


def test_every_step_logs_the_train_and_perf_metrics(tmp_path):
    run = run_for(tmp_path, pairs=32, warmup_frac=0.5)
    tr = new_run()
    Trainer(run, tr, train_pairs=data(32), eval_sets=evals()).fit()
    m = tr.inner.metrics
    for key in names.TRAIN_METRICS:
        assert [s for s, _ in m[key]] == [1, 2, 3, 4], key
        assert all(math.isfinite(v) for _, v in m[key]), key
    assert [v for _, v in m[names.TRAIN_PAIRS_SEEN]] == [8, 16, 24, 32]
    assert [v for _, v in m[names.TRAIN_LR]] == pytest.approx([1.5e-3, 3e-3, 3e-3, 3e-3])
    assert all(v == 1.0 for _, v in m[names.PERF_REAL_TOKEN_FRAC])  # shared-prompt segments: no padding
    assert 0 < m[names.PERF_MFU][0][1] < 1
    # one milestone (the budget) → eval at the last step only, per set, per category and Phi
    for key in (
        names.eval_loss("rmbench_chat"),
        names.eval_acc("ppe_gpqa"),
        names.eval_loss("objective"),
        names.eval_acc("adversarial"),
        names.eval_phi("rmbench_chat", "length"),
    ):
        assert [s for s, _ in m[key]] == [4], key
    cat = m[names.eval_loss("adversarial")][0][1]
    assert cat == m[names.eval_loss("rmbench_chat")][0][1]


def test_padded_collation_logs_padding(tmp_path):
    run = run_for(tmp_path, pairs=16, collation="padded")
    tr = new_run()
    Trainer(run, tr, train_pairs=data(16), eval_sets=[]).fit()
    assert all(v < 1.0 for _, v in tr.inner.metrics[names.PERF_REAL_TOKEN_FRAC])


def test_resume_matches_the_uninterrupted_curve(tmp_path):
    pairs = data(96)
    common = dict(pairs=96, checkpoint_every_steps=3)
    full = new_run()
    Trainer(run_for(tmp_path / "a", **common), full, train_pairs=pairs, eval_sets=evals()).fit()

    class Crash(Exception):
        pass

    def crash_at_8(trainer, metrics):
        if trainer.step == 8:
            raise Crash

    part = new_run()
    run_b = run_for(tmp_path / "b", **common)
    with pytest.raises(Crash):
        Trainer(run_b, part, train_pairs=pairs, eval_sets=evals()).fit(progress=crash_at_8)
    assert ckpt.latest(tmp_path / "b" / "checkpoints").name == "step_00000006.pt"
    assert part.calls == list(range(1, 9))
    again = Trainer(run_b, part, train_pairs=pairs, eval_sets=evals())
    result = again.fit()
    # the tracker drops steps it already has and a restart from 0 recomputes the same losses, so only
    # the restored step tells a resume from a restart
    assert again.resumed_from_step == 6, "did not continue from the step-6 checkpoint"
    assert result.status == "FINISHED" and result.steps == 12
    assert part.calls == list(range(1, 13))  # steps 7 and 8 were recomputed, not logged again
    a = full.inner.history(names.TRAIN_LOSS)
    b = part.inner.history(names.TRAIN_LOSS)
    assert [s for s, _ in a] == [s for s, _ in b]
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) <= 1e-6
    assert full.inner.history(names.eval_loss("ppe_gpqa"))[-1][1] == pytest.approx(
        part.inner.history(names.eval_loss("ppe_gpqa"))[-1][1], abs=1e-6
    )


def test_a_corrupt_checkpoint_is_refused(tmp_path):
    run = run_for(tmp_path, pairs=16, checkpoint_every_steps=1)
    Trainer(run, new_run(), train_pairs=data(16), eval_sets=[]).fit()
    last = ckpt.latest(tmp_path / "checkpoints")
    raw = bytearray(last.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    last.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorruptError, match=last.name):
        Trainer(run, new_run(), train_pairs=data(16), eval_sets=[]).fit()


def test_checkpoints_are_rotated_and_verified(tmp_path):
    run = run_for(tmp_path, pairs=40, checkpoint_every_steps=1, keep_checkpoints=2)
    res = Trainer(run, new_run(), train_pairs=data(40), eval_sets=[]).fit()
    kept = ckpt.list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in kept] == ["step_00000004.pt", "step_00000005.pt"] and res.checkpoint == kept[-1]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    st = ckpt.load(kept[-1])
    assert st["step"] == 5 and st["pairs_seen"] == 40 and st["cell_id"] == run.cell_id


def test_nan_loss_stops_the_run_with_a_named_error(tmp_path):
    run = run_for(tmp_path, pairs=48, checkpoint_every_steps=2)

    def poison(trainer, metrics):
        if trainer.step == 3:
            with torch.no_grad():
                trainer.model.head[0].weight.fill_(float("nan"))

    tr = new_run()
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 4.*step_00000002\.pt"):
        Trainer(run, tr, train_pairs=data(48), eval_sets=[]).fit(progress=poison)
    assert tr.calls == [1, 2, 3]
    good = ckpt.latest(tmp_path / "checkpoints")
    assert good.name == "step_00000002.pt"
    assert all(torch.isfinite(v).all() for v in ckpt.load(good)["model"].values())


def test_skip_policy_skips_a_bounded_number_of_bad_batches(tmp_path):
    run = run_for(tmp_path, pairs=48, nonfinite="skip", max_skipped_batches=1)
    state = {"bad_steps": {2}}

    def start(trainer):
        p = trainer.model.head[-1].weight
        p.register_hook(lambda g: g * float("nan") if trainer.step in state["bad_steps"] else g)

    tr = new_run()
    t = Trainer(run, tr, train_pairs=data(48), eval_sets=[])
    t._build()
    start(t)
    res = t.fit()
    assert res.status == "FINISHED" and t.skipped == 1 and res.pairs_seen == 48
    assert [s for s, _ in tr.inner.history(names.TRAIN_LOSS)] == [1, 2, 4, 5, 6]
    state["bad_steps"] = {1, 3}
    t2 = Trainer(
        run_for(tmp_path / "b", pairs=48, nonfinite="skip", max_skipped_batches=1),
        new_run(),
        train_pairs=data(48),
        eval_sets=[],
    )
    t2._build()
    start(t2)
    with pytest.raises(NonFiniteLossError, match="grad norm at step 4"):
        t2.fit()


def test_checkpoint_now_mid_update_is_deferred_to_after_it(tmp_path):
    run = run_for(tmp_path, pairs=32)
    t = Trainer(run, new_run(), train_pairs=data(32), eval_sets=[])
    t._build()
    inner_step = t.engine.opt.step
    seen = []

    def step_with_signal(*a, **k):  # a signal handler firing inside the optimizer update
        if t.step == 1:
            seen.append(t.checkpoint_now())
        return inner_step(*a, **k)

    t.engine.opt.step = step_with_signal
    snap = {}

    def remember(trainer, metrics):
        if trainer.step == 2:
            snap.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    t.fit(progress=remember)
    assert seen == [None]
    saved = ckpt.load(tmp_path / "checkpoints" / "step_00000002.pt")
    assert saved["step"] == 2 and saved["pairs_seen"] == 16
    assert all(torch.equal(saved["model"][k], snap[k]) for k in snap)


def test_request_stop_checkpoints_and_returns_killed(tmp_path):
    run = run_for(tmp_path, pairs=48)
    t = Trainer(run, new_run(), train_pairs=data(48), eval_sets=[])

    def stop_at_2(trainer, metrics):
        if trainer.step == 2:
            trainer.request_stop()

    res = t.fit(progress=stop_at_2)
    assert res.status == "KILLED" and res.steps == 2
    assert res.checkpoint.name == "step_00000002.pt" and res.checkpoint.is_file()


def test_too_little_data_is_a_named_error(tmp_path):
    with pytest.raises(DataTooSmallError, match="data.pairs"):
        Trainer(run_for(tmp_path, pairs=64), new_run(), train_pairs=data(10), eval_sets=[]).fit()


def test_lr_schedule_is_the_papers_by_default(tmp_path):
    t = run_for(tmp_path, lr=3e-6, warmup_frac=0.1).train
    lrs = [lr_at(s, 100, t) for s in range(100)]
    assert lrs[0] == pytest.approx(3e-7) and lrs[9] == pytest.approx(3e-6)
    assert all(v == 3e-6 for v in lrs[10:])  # constant after 10% warmup (arXiv 2505.10527 §2)


@pytest.mark.parametrize("micro", [1, 8])
def test_host_syncs_per_optimizer_step_do_not_grow_with_micro_batches(tmp_path, monkeypatch, micro):
    """Per-micro-batch statistics stay on the device: ≤ 2 read-backs (Tensor.item/.cpu/.tolist/float)
    per optimizer step from the trainer's own code, with 8 micro-batches a step as with 1."""
    import os

    import worldpm_scaling.train as train_pkg

    pkg = os.path.dirname(train_pkg.__file__)
    host_side = {os.path.join(pkg, "collate.py"), os.path.join(pkg, "attention.py")}  # CPU index building
    counts = {"n": 0}
    counting = {"on": False}

    def wrap(name):
        orig = getattr(torch.Tensor, name)

        def f(self, *a, **kw):
            if counting["on"]:
                import sys

                fr = sys._getframe(1)
                if fr.f_code.co_filename.startswith(pkg) and fr.f_code.co_filename not in host_side:
                    counts["n"] += 1
            return orig(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, f)

    for name in ("item", "cpu", "tolist", "__float__"):
        wrap(name)
    run = run_for(tmp_path, pairs=32, global_batch_pairs=8, micro_batch_pairs=micro)
    steps = []

    def per_step(trainer, metrics):
        steps.append(counts["n"])
        counts["n"] = 0

    t = Trainer(run, new_run(), train_pairs=data(32), eval_sets=[])
    counting["on"] = True
    t.fit(progress=per_step)
    counting["on"] = False
    assert len(steps) == 4
    assert max(steps[1:]) <= 2, steps  # the first includes fit()'s one-off setup
