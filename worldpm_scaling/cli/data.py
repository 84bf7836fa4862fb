"""`wps data …`: make pairs (StackExchange dumps, the synthetic forum) and check the eval sets."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from typing import Any

from . import CLIError
from .data_evals import register_evals
from .hf import register_hf

_RAW = argparse.RawDescriptionHelpFormatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="make preference pairs and check eval sets",
        description="Data commands: convert a StackExchange dump into pairs, generate the "
        "synthetic forum the demo trains on, list the eval sets found locally.",
        epilog="examples:\n  wps data synth --pairs 20000 --seed 0 --out data/demo\n"
        "  wps data stackexchange ~/dumps/math.stackexchange.com.7z --out data/math\n"
        "  wps data evals sweeps/demo.yaml",
        formatter_class=_RAW,
    )
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    _register_stackexchange(dsub)
    _register_synth(dsub)
    register_evals(dsub)  # `wps data evals` (cli/data_evals.py)
    _register_tokenize(dsub)
    register_hf(dsub)  # `wps data hf`: Hugging Face datasets in (cli/hf.py)


# -- stackexchange --------------------------------------------------------------------------------


def _register_stackexchange(dsub) -> None:
    p = dsub.add_parser(
        "stackexchange",
        help="convert a StackExchange dump (Posts.xml, folder or .7z) into pairs",
        description="Stream a site's Posts.xml (memory stays flat whatever the dump size), group answers "
        "by question and write a pair for each two answers whose net scores differ (votes, "
        "+1 for the accepted answer by default), the higher one chosen. HTML becomes markdown; "
        "empty, deleted and over-long posts are dropped. Questions are split train/test by a "
        "hash of their id, so none is in both. Writes OUT/train.<fmt>, OUT/test.<fmt> and "
        "OUT/summary.json, each by rename when complete; a failure leaves nothing behind.",
        epilog="examples:\n  wps data stackexchange Posts.xml --out data/se\n"
        "  wps data stackexchange ~/dumps/math.stackexchange.com.7z --out data/math --min-gap 2 "
        "--max-pairs-per-question 8\n\nthen train on it: data.source: data/math (its train.parquet)",
        formatter_class=_RAW,
    )
    p.add_argument("dump", help="Posts.xml, a folder holding it, or the site's .7z archive")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (train/test pairs + summary.json)")
    p.add_argument("--accepted-bonus", type=int, default=1, help="added to the accepted answer's score (default 1)")
    p.add_argument("--min-gap", type=int, default=1, help="smallest net-score difference that makes a pair (default 1)")
    p.add_argument(
        "--max-pairs-per-question",
        type=int,
        default=None,
        metavar="K",
        help="keep the K largest-gap pairs of each question (default: all)",
    )
    p.add_argument("--max-chars", type=int, default=20_000, help="drop posts whose HTML body is longer (default 20000)")
    p.add_argument("--test-frac", type=float, default=0.01, help="share of questions in the test split (default 0.01)")
    p.add_argument("--site", default=None, help="value of the site column (default: from the dump's name)")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run_stackexchange)


def run_stackexchange(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from ..data.stackexchange import ConvertOptions, convert

    _out_is_a_folder(args.out)
    if not 0 <= args.test_frac < 1:  # also NaN
        raise CLIError(f"--test-frac must be within [0, 1), got {args.test_frac:g}")
    opts = ConvertOptions(
        accepted_bonus=args.accepted_bonus,
        min_gap=args.min_gap,
        max_pairs_per_question=args.max_pairs_per_question,
        max_chars=args.max_chars,
        test_frac=args.test_frac,
        site=args.site,
        format=args.format,
    )
    err = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("scanning posts", total=None)
        s = convert(
            args.dump,
            args.out,
            opts,
            force=args.force,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    f = s.filtered
    print(
        f"posts read {s.posts_read:,} (questions {s.questions:,}, answers {s.answers:,}) in {s.seconds:.1f} s "
        f"= {s.posts_per_s:,.0f} posts/s"
    )
    print(
        f"pairs {s.pairs_train + s.pairs_test:,}: train {s.pairs_train:,} from {s.questions_train:,} questions, "
        f"test {s.pairs_test:,} from {s.questions_test:,} questions"
    )
    print("filtered: " + ", ".join(f"{k} {v:,}" for k, v in f.items()))
    print("wrote " + ", ".join(s.outputs.values()))
    return 0


def _out_is_a_folder(out) -> None:
    """--out names a folder (or nothing yet): a file there is named, never written into or replaced."""
    from pathlib import Path

    p = Path(out)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise CLIError(f"--out {out}: {q} is a file, not a folder; choose another --out")
            return


# -- synth ----------------------------------------------------------------------------------------


def _register_synth(dsub) -> None:
    from ..data.synth import SynthConfig

    knobs = "\n".join(
        f"  --{f.name.replace('_', '-'):<22} {_doc(SynthConfig, f.name)} (default {f.default})"
        for f in dataclasses.fields(SynthConfig)
        if f.name not in ("pairs", "seed")
    )
    p = dsub.add_parser(
        "synth",
        help="generate the synthetic forum (pairs, 12 eval sets, BPE tokenizer, Posts.xml)",
        description="A synthetic forum with planted signals so tiny models reproduce WorldPM's shapes: "
        "a quality signal every size learns (adversarial sets, where length and markdown point "
        "the wrong way), a key→value answer signal only larger models pick up (objective sets), "
        "and coin-flip labels nobody learns (subjective sets). Style cues correlate with "
        "preference in train at --style-rate. Writes OUT/train.parquet, OUT/evals/<set>.jsonl "
        "(12 WorldPM names), OUT/tokenizer.json, OUT/stats.json, OUT/Posts.xml, OUT/README.md.",
        epilog=f"knobs (see worldpm_scaling/data/synth.py):\n{knobs}\n\n"
        "examples:\n  wps data synth --pairs 20000 --seed 0 --out data/demo\n"
        "  wps data synth --pairs 50000 --n-keys 48 --style-rate 0.8 --out data/harder",
        formatter_class=_RAW,
    )
    p.add_argument("--pairs", type=int, default=20000, help="training pairs (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole world (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--force", action="store_true", help="replace an existing OUT/train.parquet")
    for f in dataclasses.fields(SynthConfig):
        if f.name in ("pairs", "seed"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, tuple):
            p.add_argument(flag, type=int, nargs=2, default=None, metavar=("LO", "HI"), help=_doc(SynthConfig, f.name))
        else:
            p.add_argument(flag, type=type(f.default), default=None, help=_doc(SynthConfig, f.name))
    p.set_defaults(func=run_synth)


def _doc(cls, name: str) -> str:
    """The attribute docstring of a dataclass field (the line after it in the source)."""
    src = _source_lines(cls)
    for i, line in enumerate(src):
        if line.strip().startswith(f"{name}:") and i + 1 < len(src) and src[i + 1].strip().startswith('"""'):
            return src[i + 1].strip().strip('"').strip()
    return name.replace("_", " ")


def run_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from ..data.synth import SynthConfig, write

    out = Path(args.out)
    _out_is_a_folder(out)
    if (out / "train.parquet").exists() and not args.force:
        raise CLIError(f"{out / 'train.parquet'}: already exists (pass --force to replace it)")
    kw: dict[str, Any] = {  # argparse values: their types are the options' (type=, nargs=)
        f.name: (tuple(v) if isinstance(v, list) else v)
        for f in dataclasses.fields(SynthConfig)
        if (v := getattr(args, f.name, None)) is not None
    }
    cfg = SynthConfig(**kw)
    with Console(stderr=True).status(f"generating {cfg.pairs:,} pairs, 12 eval sets and a BPE tokenizer"):
        stats = write(cfg, out)
    print(
        f"wrote {out}: {cfg.pairs:,} train pairs, 12 eval sets × {cfg.eval_pairs_per_set} pairs, "
        f"tokens per pair {stats['tokens_per_pair']:.1f} (stats.json), tokenizer.json, Posts.xml"
    )
    return 0


@functools.lru_cache(maxsize=None)
def _source_lines(cls) -> tuple[str, ...]:
    """A class's source, read once: `inspect.getsource` per field re-parsed the whole module for each synth
    knob, on every `wps` command (the parser is built before any command runs)."""
    import inspect

    return tuple(inspect.getsource(cls).splitlines())


# -- tokenize (the planner/data-preparation side of issue 14) ------------------------------------


def _register_tokenize(dsub) -> None:
    p = dsub.add_parser(
        "tokenize",
        help="tokenize a sweep's training pairs once into the memory-mapped cache jobs read",
        description="Build the tokenized cache of SWEEP.yaml's data.source with its data.tokenizer (and "
        "train.reward_token), in this one process, with a progress bar. Run it once before a "
        "multi-rank job: the job's ranks then only map the cache (without it, rank 0 builds it "
        "while the others wait). Resumable (finished chunks are kept: run it again after an "
        "interruption) and atomic (the cache appears by rename when complete). A cache that "
        "already exists is reused. Its meta.json holds tokens_per_pair (usable as "
        "data.stats_file).",
        epilog="examples:\n  wps data tokenize sweeps/worldpm.yaml\n  wps data tokenize sweeps/demo.yaml",
        formatter_class=_RAW,
    )
    p.add_argument("sweep", help="sweep YAML whose data section to tokenize")
    p.add_argument(
        "--no-lock",
        action="store_true",
        help="build without the file lock, for a filesystem that cannot lock (Lustre without "
        "-o flock, NFS without lockd: the build then stops with 'cannot take the tokenize "
        "lock'); only when no other process builds this cache at the same time",
    )
    p.set_defaults(func=run_tokenize)


def run_tokenize(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ..config import load_sweep
    from ..data.tokenized import build_cache, cache_folder, is_built
    from ..data.tokenizer import load_tokenizer

    spec = load_sweep(args.sweep)
    tok = load_tokenizer(spec.data.tokenizer)
    reward_token = spec.train.reward_token
    folder = cache_folder(spec.data.source, tok, reward_token)
    existed = is_built(folder)
    t0 = time.monotonic()
    if not existed:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("tokenizing pairs", total=None)
            build_cache(
                spec.data.source,
                tok,
                reward_token=reward_token,
                lock=not args.no_lock,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    meta = json.loads((folder / "meta.json").read_text())
    print(f"{'cache already built' if existed else f'tokenized in {time.monotonic() - t0:.1f} s'}: {folder}")
    print(
        f"pairs {meta['pairs']:,}, tokens {meta.get('tokens', 0):,}, tokens per pair "
        f"{meta.get('tokens_per_pair', float('nan')):.1f} (data.stats_file: {folder / 'meta.json'})"
    )
    return 0
