"""Importers for the 12 WorldPM eval sets from their official release files.

One module per release format (rmbench, rmb, rewardbench, evalbiasbench, ppe, helpsteer2), each a pure
rows → pairs function; this module holds the registry (set → reader, rule, label source) and the I/O
edge: read the release, build the pairs, write `<out>/<set>.jsonl` (or .parquet) — the file the eval
registry (data/evals.py) expects — and `<out>/<set>.meta.json`, the import record: release files,
pairing rule and its source, pairs, prompts, skipped rows by reason (with examples) and how the
markdown labels were obtained. docs/eval_sets.md lists every set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from ...names import EVAL_SETS
from . import evalbiasbench, helpsteer2, ppe, rewardbench, rmb, rmbench
from .common import EvalImportError, Result, records, release_files

LABELS_STYLE_INDEX = "true labels from RM-Bench's style index (style 2 = detailed markdown, 0-1 plain)"
LABELS_DETECTED = "detected from the reply text at import (style.has_markdown)"


@dataclass(frozen=True)
class Importer:
    release: str
    """Where the files come from and which to pass."""
    formats: tuple[str, ...]
    build: Callable[..., Result]
    rule: str
    """How pairs are built, and the source of that rule."""
    markdown_labels: str = LABELS_DETECTED
    options: dict[str, tuple] = field(default_factory=dict)
    """option name → allowed values (first = default), passed to `build`."""


_BOK = "best-of-K: a correct vs an incorrect response of one prompt (PPE's sampled_conflict_pairs by default)"
IMPORTERS: dict[str, Importer] = {
    "rmbench_chat": Importer(
        "THU-KEG/RM-Bench data/chat_filtered.json (or total_dataset.json)",
        (".json",),
        partial(rmbench.pairs, domain="chat"),
        "RM-Bench README 3x3 chosen-style x rejected-style matrix (pairing=original: WorldPM App. A.4)",
        LABELS_STYLE_INDEX,
        {"pairing": rmbench.PAIRINGS},
    ),
    "rmbench_math": Importer(
        "THU-KEG/RM-Bench data/math_filtered.json (or total_dataset.json)",
        (".json",),
        partial(rmbench.pairs, domain="math"),
        "RM-Bench README 3x3 chosen-style x rejected-style matrix (pairing=original: WorldPM App. A.4)",
        LABELS_STYLE_INDEX,
        {"pairing": rmbench.PAIRINGS},
    ),
    "rmbench_humanevalpack": Importer(
        "THU-KEG/RM-Bench data/code_filtered.json (or total_dataset.json)",
        (".json",),
        partial(rmbench.pairs, domain="code"),
        "RM-Bench README 3x3 chosen-style x rejected-style matrix (pairing=original: WorldPM App. A.4)",
        LABELS_STYLE_INDEX,
        {"pairing": rmbench.PAIRINGS},
    ),
    "offsetbias": Importer(
        "ncsoft/offsetbias data/evalbiasbench/biasbench.json (EvalBiasBench)",
        (".json", ".jsonl"),
        evalbiasbench.pairs,
        "one pair per record, the labelled response chosen (offsetbias run_bench.py)",
    ),
    "rewardbench_llmbar": Importer(
        "allenai/reward-bench filtered split (Parquet)",
        (".parquet", ".jsonl", ".json"),
        rewardbench.pairs,
        "RewardBench rows of the LLMBar subsets (WorldPM §3.2: LLMBar from chat-hard)",
    ),
    "ppe_mbpp_plus": Importer(
        "lmarena-ai/PPE-MBPP-Plus-Best-of-K (Parquet)",
        (".parquet", ".jsonl", ".json"),
        partial(ppe.best_of_k, exclude_models=(ppe.HAIKU,)),
        _BOK + "; Claude-3-Haiku rows excluded (WorldPM App. A.4)",
        options={"pairing": ppe.PAIRINGS},
    ),
    "ppe_mmlu_pro": Importer(
        "lmarena-ai/PPE-MMLU-Pro-Best-of-K (Parquet)",
        (".parquet", ".jsonl", ".json"),
        ppe.best_of_k,
        _BOK,
        options={"pairing": ppe.PAIRINGS},
    ),
    "ppe_gpqa": Importer(
        "lmarena-ai/PPE-GPQA-Best-of-K (Parquet)",
        (".parquet", ".jsonl", ".json"),
        ppe.best_of_k,
        _BOK,
        options={"pairing": ppe.PAIRINGS},
    ),
    "ppe_ifeval": Importer(
        "lmarena-ai/PPE-IFEval-Best-of-K (Parquet)",
        (".parquet", ".jsonl", ".json"),
        ppe.best_of_k,
        _BOK,
        options={"pairing": ppe.PAIRINGS},
    ),
    "ppe_human_preference": Importer(
        "lmarena-ai/PPE-Human-Preference-V1 test split (Parquet)",
        (".parquet", ".jsonl", ".json"),
        ppe.human_preference,
        "the winner's response chosen, ties skipped (PPE human preference)",
    ),
    "helpsteer2": Importer(
        "nvidia/HelpSteer2 validation.jsonl.gz (or train.jsonl.gz)",
        (".jsonl.gz", ".jsonl", ".parquet"),
        helpsteer2.pairs,
        "the two responses of a prompt, higher rating on the attribute chosen, ties skipped",
        options={"attribute": helpsteer2.ATTRIBUTES},
    ),
    "rmb_helpfulness": Importer(
        "Zhou-Zoey/RMB-Reward-Model-Benchmark RMB_dataset/Pairwise_set/Helpfulness (folder or file)",
        (".json",),
        rmb.pairs,
        "RMB pairwise items as given, all turns kept (WorldPM App. A.4: pairwise only)",
    ),
}
assert set(IMPORTERS) == set(EVAL_SETS), set(IMPORTERS) ^ set(EVAL_SETS)


@dataclass
class Summary:
    set: str
    output: str
    meta: str
    pairs: int
    prompts: int
    skipped: dict[str, int]
    record: dict


def build(name: str, source: str | Path, **options) -> tuple[Result, dict]:
    """Read `source` and build the set's pairs (no writing). Returns the result and the resolved options."""
    if name not in IMPORTERS:
        raise EvalImportError(f"set {name!r}: not one of the 12 WorldPM sets ({', '.join(IMPORTERS)})")
    imp = IMPORTERS[name]
    opts = {}
    for k, v in options.items():
        if v is None:
            continue
        if k not in imp.options:
            raise EvalImportError(f"{name}: option {k!r} does not apply (options: {sorted(imp.options) or 'none'})")
        if v not in imp.options[k]:
            raise EvalImportError(f"{name}: {k} must be one of {imp.options[k]}, got {v!r}")
        opts[k] = v
    resolved = {k: opts.get(k, allowed[0]) for k, allowed in imp.options.items()}
    res = imp.build(records(source, imp.formats), **opts)
    if not res.pairs:
        why = "; ".join(f"{r}: {n}" for r, n in res.skipped.items()) or "no records"
        raise EvalImportError(f"{source}: no {name} pairs could be built ({why})")
    return res, resolved


def import_set(
    name: str, source: str | Path, out_dir: str | Path, *, force: bool = False, fmt: str = "jsonl", **options
) -> Summary:
    """Import one set: write `<out_dir>/<name>.<fmt>` and its `.meta.json` record. An existing output is
    kept (EvalImportError) unless `force`; nothing is written when the source is bad."""
    import pandas as pd

    from ..evals import meta_path
    from ..io import write_pairs

    if fmt not in ("jsonl", "parquet"):
        raise EvalImportError(f"format {fmt!r}: jsonl or parquet")
    out = Path(out_dir) / f"{name}.{fmt}"
    others = [Path(out_dir) / f"{name}.{x}" for x in ("jsonl", "parquet") if x != fmt]
    if not force:
        for p in [out, *others]:
            if p.exists():
                raise EvalImportError(f"{p}: already exists (pass --force to replace it)")
    res, resolved = build(name, source, **options)
    imp = IMPORTERS[name]
    files = [str(p) for p in release_files(source, imp.formats)]
    write_pairs(pd.DataFrame(res.pairs), out)
    for p in others:  # the registry reads .jsonl before .parquet: never leave a stale twin behind
        if p.exists():
            p.unlink()
    record = {
        "set": name,
        "category": EVAL_SETS[name],
        "release": imp.release,
        "source": str(Path(source).resolve()),
        "files": files,
        "rule": imp.rule,
        "options": resolved,
        "markdown_labels": imp.markdown_labels,
        "pairs": len(res.pairs),
        "prompts": len(res.prompts),
        "skipped": dict(res.skipped),
        "skipped_examples": res.skipped_examples,
    }
    m = meta_path(out)
    tmp = m.with_name(f".{m.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(m)
    return Summary(name, str(out), str(m), len(res.pairs), len(res.prompts), dict(res.skipped), record)


__all__ = ["IMPORTERS", "Importer", "EvalImportError", "Summary", "build", "import_set"]
