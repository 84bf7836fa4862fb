"""Benchmark: this trainer (each collation mode) against TRL's RewardTrainer, side by side in one run.

Same model (catalogue `bench-qwen2`: Qwen2, hidden 128, 4 layers, vocab 32000, random init), same
generated pairs (prompts of 32–128 tokens, replies of 32–512), 16 pairs an optimizer step, fp32 on
CPU, no gradient checkpointing for either. Each round runs every variant for `--warmup` + `--steps`
optimizer steps and times the last `--steps` (wall-clock between the end of step `warmup` and the
end of the last step: data collation, forward, backward, update and logging all included). Rounds
interleave the variants so that load from other processes on the box hits them alike; the table
reports the median over rounds. The last line is the best mode's pairs/s over TRL's.

    python bench/trainer_vs_trl.py            # full run (< 10 min on a 2-core box), writes bench/results/
    python bench/trainer_vs_trl.py --quick    # smoke check (~1 min), writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from worldpm_scaling.models import get
from worldpm_scaling.track import InMemoryTracker
from worldpm_scaling.train import Trainer, collate
from worldpm_scaling.train.synthetic import make_run, synthetic_pairs

PAIRS_PER_STEP = 16
MODES = ("padded", "packed", "shared_prompt")


def trl_variant(pairs, shape, steps: int, warmup: int, seed: int) -> float:
    """pairs/s of TRL's RewardTrainer over `steps` steps after `warmup`."""
    import datasets
    import transformers
    from tokenizers import Tokenizer
    from tokenizers import models as tok_models
    from trl import RewardConfig, RewardTrainer

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, 64)}}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(tok_models.WordLevel(vocab, unk_token="<s>")),
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<s>",
    )
    ds = datasets.Dataset.from_dict(
        {
            "chosen_ids": [np.concatenate([p.prompt, p.chosen]).tolist() for p in pairs],
            "rejected_ids": [np.concatenate([p.prompt, p.rejected]).tolist() for p in pairs],
        }
    )
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(**shape.to_hf_config(), num_labels=1, pad_token_id=0)
    cfg._attn_implementation = "sdpa"
    model = transformers.Qwen2ForSequenceClassification(cfg)
    stamps: list[float] = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(
            output_dir=out,
            per_device_train_batch_size=PAIRS_PER_STEP,
            gradient_accumulation_steps=1,
            max_steps=warmup + steps,
            learning_rate=1e-4,
            gradient_checkpointing=False,
            bf16=False,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            logging_steps=10**6,
            dataloader_num_workers=0,
            disable_tqdm=True,
            max_length=None,
            seed=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[Clock()])
            trainer.train()
    return steps * PAIRS_PER_STEP / (stamps[warmup + steps - 1] - stamps[warmup - 1])


def ours_variant(pairs, shape, mode: str, steps: int, warmup: int, seed: int) -> float:
    """pairs/s of worldpm_scaling.train.Trainer in `mode` over `steps` steps after `warmup`."""
    n = (warmup + steps) * PAIRS_PER_STEP
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        run = make_run(
            shape,
            pairs=n,
            out_dir=out,
            seed=seed,
            lr=1e-4,
            warmup_frac=0.0,
            collation=mode,
            global_batch_pairs=PAIRS_PER_STEP,
            micro_batch_pairs=PAIRS_PER_STEP,
            ctx_len=1024,
            checkpoint_every_steps=None,
            activation_checkpointing=False,
        )
        tracker = InMemoryTracker().start_cell("bench", run.cell_id, name=mode)
        Trainer(run, tracker, train_pairs=pairs[:n], eval_sets=[], device="cpu").fit(
            progress=lambda tr, m: stamps.append(time.perf_counter())
        )
    return steps * PAIRS_PER_STEP / (stamps[warmup + steps - 1] - stamps[warmup - 1])


def real_fraction(pairs, mode: str) -> float:
    """Real tokens / computed tokens over the benchmark's steps (TRL pads like `padded`)."""
    real = cap = 0
    for i in range(0, len(pairs), PAIRS_PER_STEP):
        b = collate(pairs[i : i + PAIRS_PER_STEP], mode)
        real, cap = real + b.real_tokens, cap + b.capacity
    return real / cap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 steps; no results file")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--steps", type=int, default=4, help="timed optimizer steps per variant per round")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    ap.add_argument(
        "--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")), help="torch threads for every variant"
    )
    ap.add_argument("--out", default="bench/results/trainer_vs_trl", help="results path without suffix")
    ap.add_argument("--note", default="", help="what else was running on the box (goes into the results)")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.steps = 1, 2
    torch.set_num_threads(a.threads)
    shape = get("bench-qwen2")
    n = (a.warmup + a.steps) * PAIRS_PER_STEP
    pairs = synthetic_pairs(n, vocab=shape.vocab, seed=0, prompt_len=(32, 128), reply_len=(32, 512))
    variants = ["trl"] + list(MODES)
    rates: dict[str, list[float]] = {v: [] for v in variants}
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    for r in range(a.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            rate = (
                trl_variant(pairs, shape, a.steps, a.warmup, seed=r)
                if v == "trl"
                else ours_variant(pairs, shape, v, a.steps, a.warmup, seed=r)
            )
            rates[v].append(rate)
            print(f"round {r + 1}/{a.rounds} {v:>14}: {rate:6.2f} pairs/s", file=sys.stderr, flush=True)
    frac = {"trl": real_fraction(pairs, "padded"), **{m: real_fraction(pairs, m) for m in MODES}}
    med = {v: statistics.median(x) for v, x in rates.items()}
    best = max(MODES, key=lambda m: med[m])
    lines = [f"{'variant':<22}{'pairs/s (median)':>18}{'min':>8}{'max':>8}{'real-token frac':>17}{'vs TRL':>8}"]
    for v in variants:
        name = "TRL RewardTrainer" if v == "trl" else f"ours: {v}"
        lines.append(
            f"{name:<22}{med[v]:>18.2f}{min(rates[v]):>8.2f}{max(rates[v]):>8.2f}{frac[v]:>17.3f}"
            f"{med[v] / med['trl']:>8.2f}"
        )
    lines.append(f"best mode: {best} ({frac[best]:.1%} real tokens)")
    lines.append(f"pairs/s ratio vs TRL: {med[best] / med['trl']:.2f}")
    table = "\n".join(lines)
    print(table)
    elapsed = time.perf_counter() - t0
    if not a.quick:
        import transformers
        import trl

        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "threads": a.threads,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
            "model": shape.name,
            "pairs_per_step": PAIRS_PER_STEP,
            "prompt_tokens": [32, 128],
            "reply_tokens": [32, 512],
            "rounds": a.rounds,
            "steps": a.steps,
            "warmup": a.warmup,
            "elapsed_s": round(elapsed, 1),
            "loadavg_1min_start": load0,
            "loadavg_1min_end": os.getloadavg()[0],
            "note": a.note,
            "pairs_per_s": rates,
            "median_pairs_per_s": med,
            "real_token_frac": frac,
            "best_mode": best,
            "ratio_vs_trl": med[best] / med["trl"],
        }
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for suffix, text in (
            (".json", json.dumps(meta, indent=2) + "\n"),
            (
                ".txt",
                f"# python bench/trainer_vs_trl.py  ({meta['date']}, {elapsed:.0f} s, "
                f"{a.threads} threads, load avg {load0:.1f}→{meta['loadavg_1min_end']:.1f})\n"
                f"# {a.note}\n{table}\n",
            ),
        ):
            tmp = out.with_suffix(suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(out.with_suffix(suffix))
    print(f"({elapsed:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
