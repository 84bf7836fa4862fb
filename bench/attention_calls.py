"""Attention kernel calls per layer per micro-batch, counted by torch's profiler on a CPU.

The segment path runs one SDPA call per segment (a packed pair is two segments: prompt+chosen and
prompt+rejected; a shared-prompt pair is prompt+chosen and rejected-with-the-prompt-as-prefix), so a
GPU waits on the host for each; the FlexAttention path runs one call per layer whatever the number
of sequences in the row. The profiler counts the kernels' own operator events during one forward
of the reward model (`aten::scaled_dot_product_attention` for SDPA, `FlexAttentionAutogradOp` for
FlexAttention), after one untimed forward so that FlexAttention's one-off tracing is not counted.
FlexAttention runs forward only on a CPU (uncompiled); varlen kernels need CUDA, so their single
call per layer is checked with the kernel mocked (tests/unit/test_train_attention.py) instead.

Model: catalogue `bench-qwen2` (Qwen2, hidden 128, 4 layers, 4 query / 2 KV heads, random init);
pairs as in bench/trainer_vs_trl.py (prompts 32–128 tokens, replies 32–512).

    python bench/attention_calls.py            # writes bench/results/attention_calls.txt
    python bench/attention_calls.py --no-write # prints only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from worldpm_scaling.models import get
from worldpm_scaling.train import attention, collate
from worldpm_scaling.train.model import build_model
from worldpm_scaling.train.synthetic import synthetic_pairs

EVENTS = {"sdpa": "aten::scaled_dot_product_attention", "flex": "FlexAttentionAutogradOp"}
COMMAND = "python bench/attention_calls.py"


def count_calls(model, batch, backend: str) -> Counter:
    """Profiler events of the attention kernels during one forward with `backend` forced."""
    with torch.no_grad(), attention.use_backend(backend):
        model.rewards(batch)  # warm-up: FlexAttention traces itself on first use
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model.rewards(batch)
    names = Counter(e.name for e in prof.events())
    return Counter({k: names.get(v, 0) for k, v in EVENTS.items()})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--micro", type=int, nargs="+", default=[2, 4], help="pairs per micro-batch")
    ap.add_argument("--no-write", action="store_true", help="print only, write no results file")
    ap.add_argument("--out", default="bench/results/attention_calls.txt")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    shape = get("bench-qwen2")
    model = build_model(shape, seed=0).eval()
    t0 = time.perf_counter()
    lines = [
        f"{'collation':<15}{'pairs':>6}{'segments':>10}{'backend':>10}{'SDPA calls':>12}{'flex calls':>12}"
        f"{'attention calls / layer':>25}"
    ]
    ok = True
    for micro in a.micro:
        pairs = synthetic_pairs(micro, vocab=shape.vocab, seed=micro, prompt_len=(32, 128), reply_len=(32, 512))
        for mode in ("packed", "shared_prompt"):
            b = collate(pairs, mode)
            for backend in ("segments", "flex"):
                c = count_calls(model, b, backend)
                per_layer = (c["sdpa"] + c["flex"]) / shape.layers
                want = len(b.segments) if backend == "segments" else 1
                ok &= per_layer == want and (c["flex"] == 0 if backend == "segments" else c["sdpa"] == 0)
                lines.append(
                    f"{mode:<15}{micro:>6}{len(b.segments):>10}{backend:>10}{c['sdpa']:>12}{c['flex']:>12}"
                    f"{per_layer:>25g}"
                )
    lines.append(
        f"model {shape.name}: {shape.layers} layers, {shape.heads} query / {shape.kv_heads} KV heads; "
        f"one forward per row, counted by torch.profiler (events {EVENTS['sdpa']}, {EVENTS['flex']})"
    )
    lines.append("flex = 1 call per layer, segments = 1 call per segment per layer: " + ("yes" if ok else "NO"))
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            f"# {COMMAND}  ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, torch {torch.__version__}, "
            f"{time.perf_counter() - t0:.0f} s, {os.cpu_count()} CPUs)\n{table}\n"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
