"""`wps data hf`: preference data held as Hugging Face datasets (local folders and files) → pairs files.

Registered under `wps data` by cli/data.py; the conversion lives in data/hf_import.py."""

from __future__ import annotations

import argparse

from . import CLIError


def register_hf(dsub) -> None:
    p = dsub.add_parser(
        "hf",
        help="convert a Hugging Face dataset (save_to_disk folder, Parquet/Arrow/JSONL) into pairs",
        description="Read a local Hugging Face dataset with the `datasets` library — a folder written by "
        "save_to_disk (Dataset or DatasetDict), a .parquet/.arrow/.jsonl export, or a folder of a hub "
        "snapshot's Parquet files (data/<split>-*.parquet) — and write this project's pairs files "
        "(OUT/train.<fmt>, OUT/test.<fmt> with --test-frac, OUT/summary.json), ready for a sweep's "
        "data.source. Schemas: pairs (prompt/chosen/rejected; chosen/rejected may be conversations "
        "whose turns before the reply are the prompt), h4-stack-exchange (HuggingFaceH4/"
        "stack-exchange-preferences: qid, question, answers[answer_id, pm_score, selected, text]: "
        "paired by this project's vote rule, as `wps data stackexchange`), ratings (HelpSteer2-"
        "style prompt/response rows with numeric ratings, paired by --attribute). Bad rows are "
        "counted by reason and skipped; a --map naming a column the dataset lacks is an error "
        "listing its columns. Exit status: 0 written, 2 bad input.",
        epilog="examples:\n"
        "  wps data hf ~/datasets/ultrafeedback_binarized --split train_prefs --out data/uf\n"
        "  wps data hf se_prefs/ --schema h4-stack-exchange --accepted-bonus 0 --out data/h4\n"
        "  wps data hf helpsteer2.parquet --schema ratings --attribute helpfulness --out data/hs2\n"
        "  wps data hf rlhf.jsonl --map prompt=question,chosen=response_j,rejected=response_k --out data/x\n"
        "then train on it: data.source: data/uf (its train.parquet)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="save_to_disk folder, .parquet/.arrow/.jsonl file, or folder of Parquet files")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (train/test pairs + summary.json)")
    p.add_argument(
        "--schema",
        choices=("pairs", "h4-stack-exchange", "ratings"),
        default="pairs",
        help="how rows become pairs (default pairs)",
    )
    p.add_argument(
        "--map",
        default="",
        metavar="FIELD=COLUMN,…",
        help="schema field → dataset column, e.g. prompt=question,chosen=response_j (pairs: prompt, "
        "chosen, rejected; h4-stack-exchange: qid, question, answers, title; ratings: prompt, "
        "response, attribute)",
    )
    p.add_argument(
        "--split", default=None, help="split of a DatasetDict or snapshot folder (default train, or the only one)"
    )
    p.add_argument(
        "--attribute", default="helpfulness", help="ratings: the rating that orders responses (default helpfulness)"
    )
    p.add_argument(
        "--min-rating-gap", type=float, default=1.0, help="ratings: smallest difference that pairs (default 1)"
    )
    p.add_argument(
        "--accepted-bonus",
        type=int,
        default=1,
        help="h4-stack-exchange: added to the selected answer's pm_score (default 1, as wps data "
        "stackexchange; 0 for the published set, whose pm_score already counts it)",
    )
    p.add_argument(
        "--min-gap", type=int, default=1, help="h4-stack-exchange: smallest score gap that pairs (default 1)"
    )
    p.add_argument("--max-pairs-per-question", type=int, default=None, metavar="K")
    p.add_argument(
        "--test-frac",
        type=float,
        default=0.0,
        help="share of prompts (h4: questions, by id as wps data stackexchange) in OUT/test (default 0)",
    )
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run_hf)


def parse_map(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        k, sep, v = part.partition("=")
        if not sep or not k.strip() or not v.strip():
            raise CLIError(f"--map: {part!r} is not FIELD=COLUMN")
        out[k.strip()] = v.strip()
    return out


def run_hf(args: argparse.Namespace) -> int:
    from ..data.hf_import import ImportOptions, convert, reasons

    opts = ImportOptions(
        schema=args.schema,
        columns=parse_map(args.map),
        split=args.split,
        attribute=args.attribute,
        min_rating_gap=args.min_rating_gap,
        accepted_bonus=args.accepted_bonus,
        min_gap=args.min_gap,
        max_pairs_per_question=args.max_pairs_per_question,
        test_frac=args.test_frac,
        format=args.format,
    )
    s = convert(args.dataset, args.out, opts, force=args.force)
    print(f"rows read {s.rows:,} ({s.schema}) in {s.seconds:.1f} s")
    print(
        f"pairs {s.pairs_train + s.pairs_test:,}: train {s.pairs_train:,}, test {s.pairs_test:,}; "
        f"{s.no_pair:,} without a pair (ties, single responses)"
    )
    print(f"bad rows skipped: {reasons(s)}")
    for e in s.examples:
        print(f"  {e}")
    print("wrote " + ", ".join(s.outputs.values()))
    return 0
