"""A real DeepSpeed engine on CPU/gloo under a 2-process launch: ZeRO-2 and ZeRO-3 give the loss of the
single-process run within 1e-3 for 5 steps (each rank a separate `python` process, as torchrun/submitit
start them: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from worldpm_scaling.models import ModelShape
    from worldpm_scaling.track import InMemoryTracker
    from worldpm_scaling import names
    from worldpm_scaling.train import Trainer
    from worldpm_scaling.train.synthetic import make_run, synthetic_pairs

    stage, engine, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    every = int(os.environ.get("CKPT_EVERY", "0")) or None
    crash_at = int(os.environ.get("CRASH_AT", "0"))
    shape = ModelShape(name="ds", hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64, vocab=64,
                       tie_embeddings=True, max_positions=256, rope_theta=10000.0)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    run = make_run(shape, pairs=40, out_dir=out, world=world, zero_stage=stage, lr=3e-3, warmup_frac=0.0,
                   global_batch_pairs=8, micro_batch_pairs=2, collation="shared_prompt", checkpoint_every_steps=every)
    tr = InMemoryTracker().start_cell("ds", run.cell_id, name="ds")
    t = Trainer(run, tr, train_pairs=synthetic_pairs(40, vocab=64, seed=0, marker=5), eval_sets=[], engine=engine,
                device="cpu")
    def crash(trainer, metrics):
        if trainer.step == crash_at:
            os._exit(3)  # every rank dies after this step, as a killed job would
    res = t.fit(progress=crash)
    if t.rank == 0:
        with open(os.path.join(out, "losses.json"), "w") as f:
            json.dump({"engine": t.engine_kind, "world": t.world, "steps": res.steps,
                       "loss": [v for _, v in tr.history(names.TRAIN_LOSS)],
                       "loss_steps": [s for s, _ in tr.history(names.TRAIN_LOSS)],
                       "checkpoints": sorted(os.listdir(os.path.join(out, "checkpoints"))),
                       "grad_norm": [v for _, v in tr.history(names.TRAIN_GRAD_NORM)]}, f)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp: Path, stage: int, engine: str, world: int, *, extra_env: dict | None = None,
           expect_rc: int = 0) -> dict | None:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    out = tmp / f"{engine}-z{stage}-w{world}"
    out.mkdir(exist_ok=True)
    port = free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO), **(extra_env or {})}
        if world == 1:
            for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
                env.pop(k)
        procs.append(subprocess.Popen([sys.executable, str(script), str(stage), engine, str(out)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=540)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == expect_rc, log[-3000:]
    return json.loads((out / "losses.json").read_text()) if expect_rc == 0 else None


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return launch(tmp_path_factory.mktemp("single"), 0, "torch", 1)


@pytest.fixture(scope="module")
def two_process(tmp_path_factory):
    """Uninterrupted 2-process runs, one per ZeRO stage (the first compiles DeepSpeed's CPU op, ~45 s)."""
    return {stage: launch(tmp_path_factory.mktemp(f"zero{stage}"), stage, "deepspeed", 2) for stage in (2, 3)}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("stage", [2, 3])
def test_two_process_zero_matches_single_process(two_process, single, stage):
    got = two_process[stage]
    assert got["engine"] == "deepspeed" and got["world"] == 2 and got["steps"] == single["steps"] == 5
    assert len(got["loss"]) == len(single["loss"]) == 5
    diffs = [abs(a - b) for a, b in zip(got["loss"], single["loss"])]
    assert max(diffs) <= 1e-3, (got["loss"], single["loss"])
    print(f"zero-{stage} 2-process vs single: max |Δloss| = {max(diffs):.2e}", got["loss"], single["loss"])
    assert single["loss"][-1] < single["loss"][0]  # it trains: the comparison is not of constants
    assert len(got["grad_norm"]) == len(single["grad_norm"]) == 5 and all(abs(a - b) <= 1e-3 * max(1.0, b) for a, b in zip(got["grad_norm"], single["grad_norm"]))


@pytest.mark.timeout(900)
def test_two_process_zero2_resumes_exactly_from_its_sharded_checkpoint(tmp_path, two_process):
    env = {"CKPT_EVERY": "2"}
    assert launch(tmp_path, 2, "deepspeed", 2, extra_env={**env, "CRASH_AT": "3"}, expect_rc=3) is None
    ck = tmp_path / "deepspeed-z2-w2" / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step_00000002.ds"]
    assert (ck / "step_00000002.ds" / "manifest.json").is_file()
    got = launch(tmp_path, 2, "deepspeed", 2, extra_env=env)  # resumes from step 2
    assert got["loss_steps"] == [3, 4, 5] and got["steps"] == 5
    assert got["checkpoints"] == ["step_00000004.ds", "step_00000005.ds"]
    full = two_process[2]["loss"][2:]
    assert max(abs(a - b) for a, b in zip(got["loss"], full)) <= 1e-6, (got["loss"], full)
