"""GPU smoke test: one GPU, a Qwen2-architecture ~0.5B checkpoint built here with save_pretrained,
trained in bf16 for 20 steps under DeepSpeed ZeRO-3 (world 1) and under plain torch, on the GPU
attention path (`train/attention.py` chooses the backend on CUDA), with a checkpoint at step 10 and
a resume from it to step 20. Prints pairs/s, tokens/s, MFU and peak GPU memory per engine. < 5 min
on an H100-class GPU.

    python bench/gpu_smoke.py [--out DIR] [--steps 20] [--engines deepspeed,torch] [--json FILE]

Without a CUDA device it exits with status 2 and says so (nothing here can be checked on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=None, help="working folder (checkpoint, runs); default: a temporary one")
    ap.add_argument("--model", default="qwen2.5-0.5b", help="catalogue shape to build (default qwen2.5-0.5b)")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per engine (checkpoint at half)")
    ap.add_argument("--global-batch", type=int, default=16, help="pairs per optimizer step")
    ap.add_argument("--micro", type=int, default=8, help="pairs per micro-batch")
    ap.add_argument("--prompt-len", type=int, nargs=2, default=(256, 512), metavar=("MIN", "MAX"))
    ap.add_argument("--reply-len", type=int, nargs=2, default=(128, 384), metavar=("MIN", "MAX"))
    ap.add_argument("--engines", default="deepspeed,torch", help="comma list of deepspeed (ZeRO-3) and torch")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="GPU bf16 dense peak for MFU (H100: 989)")
    ap.add_argument("--json", default=None, help="also write the results here")
    return ap.parse_args(argv)


def build_checkpoint(shape, folder: Path) -> Path:
    """The base model as a local HF folder (random weights, bf16), written with save_pretrained."""
    import torch
    import transformers

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    with torch.device("cuda"):
        m = transformers.Qwen2Model._from_config(transformers.Qwen2Config(**shape.to_hf_config()), dtype=torch.bfloat16)
    m.save_pretrained(folder)
    del m
    torch.cuda.empty_cache()
    return folder


def run_engine(engine: str, shape, args, out: Path) -> dict:
    import torch

    from worldpm_scaling import names
    from worldpm_scaling.track import InMemoryTracker
    from worldpm_scaling.train import Trainer, attention
    from worldpm_scaling.train.synthetic import make_run, synthetic_pairs

    pairs = args.steps * args.global_batch
    ctx = args.prompt_len[1] + 2 * args.reply_len[1] + 16
    run = make_run(
        shape,
        pairs=pairs,
        out_dir=str(out / engine),
        zero_stage=3 if engine == "deepspeed" else 0,
        precision="bf16",
        lr=1e-5,
        warmup_frac=0.0,
        global_batch_pairs=args.global_batch,
        micro_batch_pairs=args.micro,
        collation="shared_prompt",
        ctx_len=ctx,
        checkpoint_every_steps=max(1, args.steps // 2),
    )
    data = synthetic_pairs(
        pairs,
        vocab=min(shape.vocab, 32000),
        seed=0,
        marker=5,
        prompt_len=tuple(args.prompt_len),
        reply_len=tuple(args.reply_len),
    )
    tracker = InMemoryTracker().start_cell("gpu_smoke", run.cell_id, name=engine)
    half = max(1, args.steps // 2)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()

    def stop_at_half(tr, metrics):
        if tr.step == half:
            tr.request_stop()

    kw = dict(train_pairs=data, eval_sets=[], engine=engine, device="cuda", peak_flops=args.peak_tflops * 1e12)
    first = Trainer(run, tracker, **kw).fit(progress=stop_at_half)
    second = Trainer(run, tracker, **kw)
    res = second.fit()
    wall = time.perf_counter() - t0
    hist = {
        k: [v for _, v in tracker.history(k)]
        for k in (names.TRAIN_LOSS, names.PERF_PAIRS_PER_S, names.PERF_TOKENS_PER_S, names.PERF_MFU)
    }
    steady = slice(2, None)  # the first steps include kernel compilation / allocator warm-up

    def mean(k):
        xs = hist[k][steady] or hist[k]
        return sum(xs) / len(xs) if xs else float("nan")

    return {
        "engine": engine if engine == "torch" else "deepspeed-zero3",
        "attention": attention.forced_backend() or "auto",
        "stopped_at": first.steps,
        "status_first": first.status,
        "resumed_from": second.resumed_from_step if hasattr(second, "resumed_from_step") else None,
        "steps": res.steps,
        "status": res.status,
        "loss_first": hist[names.TRAIN_LOSS][0],
        "loss_last": hist[names.TRAIN_LOSS][-1],
        "pairs_per_s": mean(names.PERF_PAIRS_PER_S),
        "tokens_per_s": mean(names.PERF_TOKENS_PER_S),
        "mfu": mean(names.PERF_MFU),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30,
        "wall_s": wall,
        "finite": all(math.isfinite(x) for x in hist[names.TRAIN_LOSS]),
    }


def main(argv=None) -> int:
    args = parse(argv)
    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_smoke: no CUDA device is visible (torch.cuda.is_available() is False); this benchmark needs "
            "one GPU. Nothing was run.",
            file=sys.stderr,
        )
        return 2
    from worldpm_scaling.models import CATALOGUE

    if args.model not in CATALOGUE:
        print(
            f"gpu_smoke: --model {args.model!r} is not in the catalogue ({', '.join(sorted(CATALOGUE))})",
            file=sys.stderr,
        )
        return 2
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ("deepspeed", "torch")]
    if bad:
        print(f"gpu_smoke: --engines {bad} unknown (deepspeed, torch)", file=sys.stderr)
        return 2
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        os.environ.pop(k, None)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu_smoke_"))
    out.mkdir(parents=True, exist_ok=True)
    shape = CATALOGUE[args.model]
    shape = dataclasses.replace(shape, path=str(build_checkpoint(shape, out / f"base-{args.model}")))
    print(
        f"gpu_smoke: {torch.cuda.get_device_name()} · {args.model} "
        f"({shape.params_reward_model / 1e6:.0f}M params) from {shape.path}"
    )
    results = []
    for e in engines:
        r = run_engine(e, shape, args, out)
        results.append(r)
        print(
            f"{r['engine']:>16}: steps {r['stopped_at']} → checkpoint → resumed → {r['steps']} ({r['status']}); "
            f"loss {r['loss_first']:.4f} → {r['loss_last']:.4f}; {r['pairs_per_s']:.1f} pairs/s, "
            f"{r['tokens_per_s']:.0f} tokens/s, MFU {100 * r['mfu']:.1f}%, peak {r['peak_gpu_gib']:.1f} GiB, "
            f"{r['wall_s']:.0f} s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    ok = all(r["finite"] and r["steps"] == args.steps and r["status"] == "FINISHED" for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
