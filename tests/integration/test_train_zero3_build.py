"""ZeRO-3 builds the model already partitioned: 2 gloo ranks, a ≥ 200M-parameter Qwen2 shape built
through the Trainer (model + DeepSpeed engine, no training step), random init and from a local HF
checkpoint folder (save_pretrained). Each rank holds ≤ 1/2 + 5% of the parameters. The second
acceptance figure — the peak RSS a rank gains while building stays below the full model's fp32
bytes — is not met yet and is recorded as a strict xfail with the measured numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from worldpm_scaling.models import ModelShape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

# 214M parameters with the reward head (the shape the issue measured)
SHAPE = dict(name="z3-214m", hidden=1024, layers=16, heads=16, kv_heads=4, intermediate=2816, vocab=32000,
             tie_embeddings=True, max_positions=512, rope_theta=10000.0)

WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import deepspeed, transformers  # imported before the baseline: their import is not the model
    from worldpm_scaling.models import ModelShape
    from worldpm_scaling.track import InMemoryTracker
    from worldpm_scaling.train import Trainer
    from worldpm_scaling.train.synthetic import make_run

    shape_kw, path, out = json.loads(sys.argv[1]), sys.argv[2] or None, sys.argv[3]
    shape = ModelShape(**shape_kw, path=path)
    run = make_run(shape, pairs=8, out_dir=out, world=2, zero_stage=3, global_batch_pairs=4, micro_batch_pairs=2)
    t = Trainer(run, InMemoryTracker().start_cell("z3", run.cell_id, name="z3"), train_pairs=[], eval_sets=[],
                engine="deepspeed", device="cpu")

    def kib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    before = kib("VmRSS")
    t._build()
    gained = (kib("VmHWM") - before) * 1024
    ps = list(t.engine.engine.module.parameters())
    held = sum(p.ds_tensor.numel() for p in ps)
    total = sum(p.ds_numel for p in ps)
    dtypes = sorted({str(p.ds_tensor.dtype) for p in ps})
    with open(os.path.join(out, f"rank{t.rank}.json"), "w") as f:
        json.dump({"held": held, "total": total, "gained": gained, "dtypes": dtypes}, f)
    t.close()
""")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp: Path, path: str, port: int) -> list[dict]:
    script = tmp / "worker.py"
    script.write_text(WORKER)
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen([sys.executable, str(script), json.dumps(SHAPE), path, str(tmp)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp))
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    """A local HF Qwen2 checkpoint of the shape, written with save_pretrained (in this process)."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("qwen2-214m")
    shape = ModelShape(**SHAPE)
    torch.manual_seed(0)
    transformers.Qwen2Model(transformers.Qwen2Config(**shape.to_hf_config())).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["random", "checkpoint"])
def built(request, tmp_path_factory):
    """Both ranks' numbers after building the model + engine, from random init or the HF folder."""
    path = request.getfixturevalue("checkpoint_folder") if request.param == "checkpoint" else ""
    return request.param, _launch(tmp_path_factory.mktemp(f"z3-{request.param}"), path, free_port())


@pytest.mark.timeout(900)
def test_zero3_two_ranks_build_partitioned(built):
    source, ranks = built
    n = ModelShape(**SHAPE).params_reward_model
    assert n >= 200_000_000
    for r in ranks:
        assert abs(r["total"] - n) <= 0.01 * n, (r["total"], n)  # the whole model is under ZeRO-3
        assert r["held"] <= (0.5 + 0.05) * r["total"], r
        assert r["dtypes"] == ["torch.float32"]  # CPU/gloo trains in fp32 (bf16 is for GPUs)
    print(source, "held per rank", [r["held"] / r["total"] for r in ranks])


@pytest.mark.timeout(900)
@pytest.mark.xfail(strict=True, reason="NOT MET yet (issue 14): measured peak RSS gain per rank 3.3x (random "
                   "init) and 2.55x (HF folder) the full fp32 bytes on the 214M shape. transformers' ZeRO-3 "
                   "construction peaks at ~1.8x (allocator-retained transients: malloc_trim gives back all but "
                   "the partition) and DeepSpeed's stage-3 buffers add ~1.5x, which on a GPU are device memory "
                   "but on the CPU accelerator are host RSS")
def test_zero3_build_rss_gain_below_full_fp32_bytes(built):
    source, ranks = built
    fp32_full = 4 * ModelShape(**SHAPE).params_reward_model
    for r in ranks:
        assert r["gained"] < fp32_full, f"{source}: rank gained {r['gained'] / 2**20:.0f} MiB building, " \
                                        f"full fp32 model is {fp32_full / 2**20:.0f} MiB"
