"""Objective onset study (issue 9): when does each tiny size learn the key→value lookup, per seed?

The demo's objective category is a lookup (a key in the prompt, its value in the preferred reply).
The paper finds objective loss improves mainly for its largest model (arXiv 2505.10527, §3.2 and
Fig. 1). This study trains every (size, seed) of the demo recipe on one synthetic forum with the
in-memory tracker and records objective accuracy at each milestone, so the README's account of
the demo's objective shape rests on a committed table, not on one run. One process per cell, one
thread each, `--jobs` at a time. Writes bench/results/objective_onset.txt (plus, per cell, category
losses and grad-norm spikes / emergence flags) and the raw histories in objective_onset.json.

    python bench/objective_onset.py --models tiny-xxs tiny-xs tiny-s --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LEARNED = 0.65
"""Objective accuracy counted as 'learned' (chance is 0.5; a learned lookup sits at 0.7–0.95)."""


def cell(data: str, model: str, seed: int, pairs: int, n_eval: int, out: str) -> dict:
    """Train one (model, seed) of the demo recipe in this process; objective acc per milestone."""
    import dataclasses as dc

    import torch

    from worldpm_scaling import names
    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.models import get
    from worldpm_scaling.plan import plan, select
    from worldpm_scaling.track.memory import InMemoryTracker
    from worldpm_scaling.train import Trainer

    torch.set_num_threads(1)
    demo = load_sweep(REPO / "sweeps/demo.yaml")  # the demo's recipe; only data, size, seed and sink change
    shapes = json.loads(os.environ.get("WPS_ONSET_SHAPES", "{}"))  # --shape: a tiny shape with other dimensions
    shape = dc.replace(get("tiny-xxs"), name=model, **shapes[model]) if model in shapes else get(model)
    train = dc.replace(demo.train, **json.loads(os.environ.get("WPS_ONSET_TRAIN", "{}")))
    tpp = json.loads(Path(data, "stats.json").read_text())["tokens_per_pair"]
    spec = dc.replace(
        demo,
        models=(shape,),
        seeds=(seed,),
        out_dir=out,
        train=train,
        data=dc.replace(
            demo.data,
            source=f"{data}/train.parquet",
            tokenizer=f"{data}/tokenizer.json",
            pairs=pairs,
            tokens_per_pair=tpp,
        ),
        eval=dc.replace(demo.eval, dir=f"{data}/evals", max_pairs_per_set=n_eval),
        tracking=dc.replace(demo.tracking, backend="memory"),
    )
    run_spec = select(plan(spec), "0")
    tracker = InMemoryTracker()
    parent = tracker.start_sweep(spec.name, params={})
    run = tracker.start_cell(spec.name, run_spec.cell_id, name=model, parent_run_id=parent.run_id, params={})
    t0 = time.perf_counter()
    Trainer(run_spec, run).fit()
    acc = [v for _, v in run.history(names.eval_acc("objective"))]
    hist = {
        k: [v for _, v in run.history(k)] for k in (names.TRAIN_GRAD_NORM, names.TRAIN_LOSS, names.TRAIN_PAIRS_SEEN)
    }
    return {
        "model": model,
        "seed": seed,
        "milestones": list(run_spec.milestones),
        "objective_acc": acc,
        "loss": {c: [v for _, v in run.history(names.eval_loss(c))] for c in names.CATEGORIES},
        "grad_norm": hist[names.TRAIN_GRAD_NORM],
        "train_loss": hist[names.TRAIN_LOSS],
        "pairs_seen": hist[names.TRAIN_PAIRS_SEEN],
        "seconds": time.perf_counter() - t0,
    }


def spike_line(r: dict) -> str:
    """Grad-norm spikes and emergence flags (spike + train-loss drop) of one cell's run, with the
    windows `wps analyze` uses (worldpm_scaling/analysis/spikes.py: run_windows), and, where the objective was learned,
    what the grad norm and training loss did between the last unlearned and the first learned milestone."""
    import numpy as np

    from worldpm_scaling.analysis.spikes import break_evidence, detect_spikes, emergence_flags, run_windows

    window, drop_window = run_windows(len(r["grad_norm"]))  # as wps analyze: the study's flags are the report's
    spikes = detect_spikes(r["grad_norm"], pairs=r["pairs_seen"] or None, window=window)
    flags = emergence_flags(spikes, r["train_loss"], window=drop_window)
    at = lambda s: f"{s.pairs:.0f}" if s.pairs is not None else f"step {s.step:.0f}"
    ms, acc = r["milestones"], r["objective_acc"]
    i = next((i for i, a in enumerate(acc) if a >= LEARNED), None)
    line = (
        f"  {r['model']:9s} seed {r['seed']}: objective learned by {ms[i] if i is not None else '-'}; "
        f"{len(spikes)} spikes"
        + (f" at pairs {', '.join(at(s) for s in spikes)}" if spikes else "")
        + f"; {len(flags)} emergence flags"
        + (f" (drop {', '.join(f'{e.drop:.0%}' for e in flags)})" if flags else "")
    )
    if i is not None and i > 0 and r["pairs_seen"]:
        ev = break_evidence(
            "objective",
            r["model"],
            ms[i - 1],
            ms,
            np.asarray(r["pairs_seen"], float),
            r["grad_norm"],
            r["train_loss"],
            spikes=spikes,
            emergences=flags,
        )
        line += (
            f"; onset window [{ev.lo:.0f}, {ev.hi:.0f}]: {len(ev.spikes)} spikes, max grad-norm z {ev.max_z:.1f}, "
            f"train loss {ev.loss_before:.3f} → {ev.loss_after:.3f}"
        )
    return line


def summary(results: list[dict], header: str) -> list[str]:
    """The study's text for one set of cells: objective accuracy per milestone, seeds learned per
    size, category losses, and grad-norm spikes / emergence flags / onset windows per cell."""
    ms = results[0]["milestones"]
    models = list(dict.fromkeys(r["model"] for r in results))
    lines = [header, "objective accuracy (chance 0.5) at pairs " + " ".join(f"2^{p.bit_length() - 1}" for p in ms)]
    for r in results:
        lines.append(f"  {r['model']:9s} seed {r['seed']}: " + " ".join(f"{a:.2f}" for a in r["objective_acc"]))
    lines.append(f"learned (acc >= {LEARNED}) by each milestone, seeds out of the seeds run per size:")
    for m in models:
        rs = [r for r in results if r["model"] == m]
        counts = [sum(r["objective_acc"][i] >= LEARNED for r in rs) for i in range(len(ms))]
        lines.append(
            f"  {m:9s} " + " ".join(f"2^{p.bit_length() - 1}:{c}" for p, c in zip(ms, counts)) + f" (of {len(rs)})"
        )
    lines.append(
        "eval loss by category at the first → last milestone (adversarial should fall, subjective stay ~0.69):"
    )
    for r in results:
        lines.append(
            f"  {r['model']:9s} seed {r['seed']}: "
            + "  ".join(f"{c} {r['loss'][c][0]:.3f}→{r['loss'][c][-1]:.3f}" for c in r["loss"])
        )
    lines += trend_lines(results, models)
    lines.append("train grad-norm spikes and emergence flags (spike + train-loss drop), windows as wps analyze:")
    return lines + [spike_line(r) for r in results]


def trend_lines(results: list[dict], models: list[str]) -> list[str]:
    """The trend class `wps analyze` gives each category × size, on the loss averaged over the seeds
    run (as the demo's headline does), so the study judges the shapes the demo would show."""
    import numpy as np

    from worldpm_scaling.analysis.report import MIN_TREND_POINTS
    from worldpm_scaling.analysis.trends import classify

    ms = results[0]["milestones"]
    if len(ms) < MIN_TREND_POINTS:
        return []
    n_seeds = {len([r for r in results if r["model"] == m]) for m in models}
    lines = [
        f"trend class of the seed-mean eval loss (wps analyze's classifier; seeds per size: "
        f"{', '.join(map(str, sorted(n_seeds)))}):"
    ]
    for c in results[0]["loss"]:
        parts = []
        for m in models:
            y = np.mean([r["loss"][c] for r in results if r["model"] == m], axis=0)
            t = classify(ms, y)
            parts.append(f"{m} {t.kind} (α={-t.slope:.2f})")
        lines.append(f"  {c:11s} " + "; ".join(parts))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny-xxs", "tiny-xs", "tiny-s"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--pairs", type=int, default=8192)
    ap.add_argument("--eval-pairs", type=int, default=128, help="pairs per eval set (demo: 64)")
    ap.add_argument(
        "--synth",
        nargs="*",
        default=[],
        metavar="KNOB=VALUE",
        help="wps data synth overrides, e.g. n_keys=8 (default: the demo's generator)",
    )
    ap.add_argument(
        "--train",
        nargs="*",
        default=[],
        metavar="KNOB=VALUE",
        help="train-section overrides (YAML values), e.g. lr=2e-3 lr_width_power=0",
    )
    ap.add_argument(
        "--shape",
        nargs="*",
        default=[],
        metavar="NAME=H,L,HEADS,KV,FFN",
        help="extra tiny shapes (hidden, layers, heads, kv heads, intermediate) usable in --models",
    )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench/results/objective_onset.txt"))
    ap.add_argument(
        "--resummarize",
        metavar="FILE.json",
        help="print the study's text for saved results (a list of cells, or one probe's key of "
        "bench/results/objective_onset.json given as FILE.json:KEY) without training",
    )
    ap.add_argument("--_cell", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.resummarize:
        path, _, key = args.resummarize.partition(".json:")
        path = path if path.endswith(".json") else path + ".json"
        saved = json.loads(Path(path).read_text())
        if isinstance(saved, dict):
            if key not in saved:
                ap.error(f"--resummarize: {path} has no key {key!r}; keys: {', '.join(saved)}")
            saved = saved[key]
        print("\n".join(summary(saved, f"saved results: {args.resummarize}")))
        return
    if args._cell:  # child process: one cell, JSON on stdout's last line
        d, m, s, p, n, o = args._cell
        print(json.dumps(cell(d, m, int(s), int(p), int(n), o)))
        return

    import yaml

    def value(text: str):
        v = yaml.safe_load(text)  # YAML 1.1 reads 2e-3 (no dot) as a string
        try:
            return float(v) if isinstance(v, str) else v
        except ValueError:
            return v

    train_kw = {kv.split("=", 1)[0]: value(kv.split("=", 1)[1]) for kv in args.train}
    shapes = {}
    for spec in args.shape:
        name, dims = spec.split("=", 1)
        h, layers, heads, kv, ffn = (int(x) for x in dims.split(","))
        shapes[name] = {"hidden": h, "layers": layers, "heads": heads, "kv_heads": kv, "intermediate": ffn}
    work = Path(tempfile.mkdtemp(prefix="wps-onset-"))
    data = work / "data"
    synth = ["--" + kv.split("=", 1)[0].replace("_", "-") + "=" + kv.split("=", 1)[1] for kv in args.synth]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "worldpm_scaling",
            "data",
            "synth",
            "--pairs",
            str(args.pairs),
            "--seed",
            "0",
            "--eval-pairs-per-set",
            str(args.eval_pairs),
            "--out",
            str(data),
            *synth,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    def one(ms):
        m, s = ms
        out = work / f"{m}-s{s}"
        out.mkdir()
        r = subprocess.run(
            [
                sys.executable,
                __file__,
                "--_cell",
                str(data),
                m,
                str(s),
                str(args.pairs),
                str(args.eval_pairs),
                str(out),
            ],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "OMP_NUM_THREADS": "1",
                "WPS_ONSET_TRAIN": json.dumps(train_kw),
                "WPS_ONSET_SHAPES": json.dumps(shapes),
            },
        )
        if r.returncode:
            raise RuntimeError(f"{m} seed {s} failed:\n{r.stderr[-2000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        print(
            f"  {m} seed {s}: objective acc {' '.join(f'{a:.2f}' for a in res['objective_acc'])} "
            f"({res['seconds']:.0f} s)",
            flush=True,
        )
        return res

    t0 = time.perf_counter()
    cells = [(m, s) for m in args.models for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:  # largest models first: the pool finishes sooner
        done = dict(zip(cells[::-1], pool.map(one, cells[::-1])))
    results = [done[c] for c in cells]
    header = (
        f"objective onset study: demo recipe (sweeps/demo.yaml), {args.pairs} pairs, synth "
        f"{' '.join(args.synth) or 'demo defaults'}"
        + (f", train {' '.join(args.train)}" if args.train else "")
        + (f", shapes {' '.join(args.shape)}" if args.shape else "")
        + f", {args.eval_pairs} pairs per eval set, "
        f"seeds {args.seeds}; {time.perf_counter() - t0:.0f} s with {args.jobs} jobs"
    )
    lines = summary(results, header)
    text = "\n".join(lines) + "\n"
    Path(args.out).with_suffix(".json").write_text(json.dumps(results))
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
