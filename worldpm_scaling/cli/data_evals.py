"""`wps data evals`: list the eval sets a sweep scores (found, readable, pairs, source), and
`wps data evals import`, which builds a set's file from its official release."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TypedDict

_RAW = argparse.RawDescriptionHelpFormatter


class EvalSetRow(TypedDict):
    """One line of `wps data evals`: where a set is looked for and what was found there."""

    set: str
    category: str
    path: str
    status: str
    pairs: int | None
    source: str | None


# -- the parser ----------------------------------------------------------------------------------------


class _EvalsParser(argparse.ArgumentParser):
    """`wps data evals [SWEEP] …`, and `wps data evals import …` handed to its own parser (argparse cannot
    put a sub-command beside an optional positional)."""

    def parse_known_args(self, args=None, namespace=None):
        if args and args[0] == "import":
            ns = _import_parser().parse_args(args[1:], namespace)
            ns.func = run_evals_import
            return ns, []
        return super().parse_known_args(args, namespace)


def register_evals(dsub) -> None:
    cls, dsub._parser_class = dsub._parser_class, _EvalsParser
    try:
        p = _evals_args(_add_evals(dsub))
    finally:
        dsub._parser_class = cls
    p.set_defaults(func=run_evals)


def _add_evals(dsub) -> argparse.ArgumentParser:
    return dsub.add_parser(
        "evals",
        help="list the eval sets (found/missing, pairs, source); `evals import` makes them",
        description="The 12 WorldPM test sets cannot be downloaded here: each is expected as a local "
        "prompt/chosen/rejected file <dir>/<set>.jsonl or .parquet. This lists every set a sweep "
        "(or the default registry with --dir) would score, with its category, whether the "
        "file is there and readable (every row checked), its pairs and where it came from. "
        "Exit status 1 when any is missing, 2 when any is unreadable. Register your own sets "
        "under eval.extra in the sweep: {name: {category: objective, path: my/set.jsonl}}.\n\n"
        "`wps data evals import SET SOURCE --out DIR` builds a set's file from its official "
        "release (see `wps data evals import --help`).",
        epilog="examples:\n  wps data evals sweeps/demo.yaml\n  wps data evals --dir data/demo/evals --format json\n"
        "  wps data evals import rmbench_chat ~/RM-Bench/data/chat_filtered.json --out evals",
        formatter_class=_RAW,
    )


def _evals_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_mutually_exclusive_group()
    g.add_argument("sweep", nargs="?", help="sweep YAML whose eval section to check (or `import`, see above)")
    g.add_argument("--dir", help="folder holding <set>.jsonl / .parquet (default registry)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    return p


def _import_parser() -> argparse.ArgumentParser:
    from ..data.eval_import import IMPORTERS

    sets = "\n".join(
        f"  {n:<22} {imp.release}\n  {'':<22} pairs: {imp.rule}"
        + "".join(
            f"\n  {'':<22} --{k.replace('_', '-')} {'|'.join(v)} (default {v[0]})" for k, v in imp.options.items()
        )
        for n, imp in IMPORTERS.items()
    )
    p = argparse.ArgumentParser(
        prog="wps data evals import",
        description="Build one WorldPM eval set's file (<out>/<SET>.jsonl, the registry's file) from the set's "
        "official release files — JSON, JSONL(.gz) or Parquet as published, or a folder of them — "
        "and <out>/<SET>.meta.json, the import record (release files, pairing rule and its source, "
        "pairs, prompts, skipped rows by reason, how the markdown labels were obtained). Pairs follow "
        "the WorldPM paper (arXiv 2505.10527 §3.2, App. A.4) where it says, else the set's own rule; "
        "docs/eval_sets.md has each. A bad source is a named error (exit 2) and writes nothing; an "
        "existing output is kept unless --force.",
        epilog=f"sets:\n{sets}\n\nexamples:\n"
        "  wps data evals import rmbench_chat RM-Bench/data/chat_filtered.json --out evals\n"
        "  wps data evals import rmb_helpfulness RMB_dataset/Pairwise_set/Helpfulness --out evals\n"
        "  wps data evals import helpsteer2 HelpSteer2/validation.jsonl.gz --out evals --attribute correctness",
        formatter_class=_RAW,
    )
    p.add_argument("set", metavar="SET", choices=list(IMPORTERS), help="one of the 12 WorldPM sets")
    p.add_argument("source", metavar="SOURCE", help="the release file, or a folder of its files")
    p.add_argument("--out", default="evals", metavar="DIR", help="output folder (default: evals)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", help="output format (default jsonl)")
    p.add_argument("--pairing", default=None, help="RM-Bench: 3x3 | original; PPE best-of-K: sampled | all")
    p.add_argument("--attribute", default=None, help="HelpSteer2: the rating that orders a pair (default helpfulness)")
    return p


def run_evals_import(a: argparse.Namespace) -> int:
    from ..data.eval_import import import_set

    s = import_set(a.set, a.source, a.out, force=a.force, fmt=a.format, pairing=a.pairing, attribute=a.attribute)
    opts = ", ".join(f"{k}={v}" for k, v in s.record["options"].items())
    print(
        f"{s.set}: {s.pairs:,} pairs from {s.prompts:,} prompts ({len(s.record['files'])} file(s)"
        + (f"; {opts}" if opts else "")
        + ")"
    )
    print(f"  pairs: {s.record['rule']}")
    print(f"  markdown labels: {s.record['markdown_labels']}")
    if s.skipped:
        for reason, n in s.skipped.items():
            ex = ", ".join(s.record["skipped_examples"].get(reason, [])[:3])
            print(f"  skipped {n:,}: {reason} (e.g. {ex})")
    else:
        print("  skipped: none")
    print(f"wrote {s.output} and {s.meta}")
    return 0


def run_evals(args: argparse.Namespace) -> int:
    from ..config import EvalSpec, load_sweep
    from ..data.evals import EvalSetMissing, find, read_meta, registry

    if args.sweep:
        spec = load_sweep(args.sweep).eval
    else:
        spec = EvalSpec(dir=args.dir or "evals")
    rows: list[EvalSetRow] = []
    for name, (cat, paths) in registry(spec).items():
        try:
            path = find(name, paths)
        except EvalSetMissing:
            rows.append(
                {
                    "set": name,
                    "category": cat,
                    "path": str(paths[0]),
                    "status": "missing",
                    "pairs": None,
                    "source": None,
                }
            )
            continue
        try:
            n = _count(path)
            meta = read_meta(path)
            status = "found"
        except ValueError as e:  # PairsFileError, a bad import record
            n, meta, status = None, None, f"unreadable: {e}"
        source = (
            f"{meta.get('release', '?')}: {meta.get('source', '?')}"
            if meta
            else "not imported (no .meta.json)"
            if status == "found"
            else None
        )
        rows.append({"set": name, "category": cat, "path": str(path), "status": status, "pairs": n, "source": source})
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"eval sets ({sum(r['status'] == 'found' for r in rows)}/{len(rows)} found)")
        for c in ("set", "category", "path", "status", "pairs", "source"):
            t.add_column(c, justify="right" if c == "pairs" else "left")
        for r in rows:
            style = "green" if r["status"] == "found" else "red"
            t.add_row(
                r["set"],
                r["category"],
                r["path"],
                f"[{style}]{r['status']}[/]",
                "" if r["pairs"] is None else f"{r['pairs']:,}",
                r["source"] or "",
            )
        Console(width=200).print(t)
    bad = [r for r in rows if r["status"].startswith("unreadable")]
    if bad:
        print(
            f"error: {len(bad)} eval set(s) unreadable: " + "; ".join(f"{r['set']} ({r['status']})" for r in bad),
            file=sys.stderr,
        )
        return 2
    missing = [r["set"] for r in rows if r["status"] == "missing"]
    if missing:
        print(
            f"{len(missing)} of {len(rows)} eval sets missing: {', '.join(missing)} (`wps data evals import` "
            "converts a set's official release)",
            file=sys.stderr,
        )
    return 0 if all(r["status"] == "found" for r in rows) else 1


def _count(path) -> int:
    """Pairs in a file, every row checked (io.iter_pairs: required fields and their types, bad JSON
    lines, corrupt Parquet) without loading the file."""
    from ..data.io import iter_pairs

    return sum(1 for _ in iter_pairs(path))
