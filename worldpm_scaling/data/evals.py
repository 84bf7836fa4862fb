"""The eval-set registry: the 12 WorldPM sets (names and categories in names.py) plus user sets.

None of the sets can be downloaded here, so each maps to an expected local file,
`<eval.dir>/<name>.jsonl` or `.parquet`, with prompt/chosen/rejected columns (RewardBench-style; a
prompt may be a multi-turn conversation). `wps data evals import SET SOURCE` writes that file from the
set's official release (data/eval_import/), with a sidecar `<name>.meta.json` recording the source,
the pairing rule, the skipped rows and how the markdown labels were obtained (docs/eval_sets.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..names import EVAL_SETS
from ..style import has_markdown
from .io import read_pairs
from .pairs import TokenizedPair
from .tokenized import truncate_to_context
from .tokenizer import Tok, prompt_text, reply_text

LABELS_TRUE = "true labels from the file's chosen_markdown/rejected_markdown columns"
LABELS_DETECTED = "detected from the reply text (style.has_markdown)"


class EvalSetMissing(FileNotFoundError, ValueError):
    """An eval set whose local file is not there; names the set and the paths looked at (a
    ValueError too, so the CLI reports it as bad input, exit 2)."""

    def __init__(self, name: str, paths: list[Path]):
        self.name, self.paths = name, paths
        super().__init__(f"eval set {name!r}: no file at {' or '.join(str(p) for p in paths)}")

    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class EvalSet:
    name: str
    category: str
    pairs: list[TokenizedPair]


def registry(eval_spec) -> dict[str, tuple[str, list[Path]]]:
    """name → (category, candidate paths) for every set the spec names."""
    out = {}
    d = Path(eval_spec.dir)
    for name in eval_spec.sets:
        if name in eval_spec.extra:
            e = eval_spec.extra[name]
            out[name] = (e.category, [Path(e.path)])
        else:
            out[name] = (EVAL_SETS[name], [d / f"{name}.jsonl", d / f"{name}.parquet"])
    return out


def find(name: str, paths: list[Path]) -> Path:
    for p in paths:
        if p.is_file():
            return p
    raise EvalSetMissing(name, paths)


def meta_path(path: Path) -> Path:
    """The import record next to an eval file: `<dir>/<name>.meta.json`."""
    return path.with_name(path.name.rsplit(".", 1)[0] + ".meta.json")


def read_meta(path: Path) -> dict | None:
    """The import record of an eval file, or None when it was not made by `wps data evals import`
    (a record that is not JSON is bad input, named)."""
    m = meta_path(path)
    if not m.is_file():
        return None
    try:
        return json.loads(m.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{m}: not a JSON import record ({e})") from None


def markdown_label_source(path: Path, columns) -> str:
    """How the markdown labels of an eval file are obtained: the import record's statement, else
    the file's own columns, else detection from the text."""
    meta = read_meta(path)
    if meta and meta.get("markdown_labels"):
        return str(meta["markdown_labels"])
    return LABELS_TRUE if {"chosen_markdown", "rejected_markdown"} <= set(columns) else LABELS_DETECTED


def label_sources(eval_spec) -> dict[str, str]:
    """set → how its markdown labels are obtained, for every set of the spec whose file is there: the
    import record's statement, else whether the file has label columns (read from the Parquet schema or
    the first JSONL row, not the whole file)."""
    out = {}
    for name, (_, paths) in registry(eval_spec).items():
        p = next((q for q in paths if q.is_file()), None)
        if p is None:
            continue
        try:
            meta = read_meta(p)
            if meta and meta.get("markdown_labels"):
                out[name] = str(meta["markdown_labels"])
                continue
            if p.suffix == ".parquet":
                import pyarrow.parquet as pq

                cols = pq.ParquetFile(p).schema_arrow.names
            else:
                with open(p) as f:
                    first = next((line for line in f if line.strip()), "{}")
                cols = list(json.loads(first))
            out[name] = markdown_label_source(p, cols)
        except (ValueError, OSError) as e:  # a bad file is reported by `wps data evals`; say so here
            out[name] = f"unknown (file unreadable: {e})"
    return out


def _flag(r: dict, key: str, text: str) -> bool:
    v = r.get(key)
    if v is None or (isinstance(v, float) and v != v):  # column absent, or NaN in a partly-labelled file
        return has_markdown(text)
    return bool(v)


def _group(r: dict) -> tuple[str | None, int, int]:
    g = r.get("group")
    if g is None or (isinstance(g, float) and g != g):
        return None, -1, -1
    slot = lambda v: -1 if v is None or (isinstance(v, float) and v != v) else int(v)
    return str(g), slot(r.get("chosen_slot")), slot(r.get("rejected_slot"))


def load_eval_sets(eval_spec, *, tokenizer: Tok, ctx_len: int, reward_token: str = "endoftext") -> dict[str, EvalSet]:
    """Tokenized eval sets; a missing file raises EvalSetMissing naming it. Markdown labels come from
    the file's columns where it has them, else are detected from the text; group metadata rides along."""
    out = {}
    for name, (cat, paths) in registry(eval_spec).items():
        df = read_pairs(find(name, paths))
        if eval_spec.max_pairs_per_set is not None:
            df = df.iloc[: eval_spec.max_pairs_per_set]
        rows = df.to_dict("records")
        ps = tokenizer.encode_batch([prompt_text(r["prompt"]) for r in rows])
        cs = tokenizer.encode_batch([reply_text(r["chosen"], reward_token) for r in rows])
        rs = tokenizer.encode_batch([reply_text(r["rejected"], reward_token) for r in rows])
        pairs = []
        for r, p_ids, c_ids, j_ids in zip(rows, ps, cs, rs):
            p, c, j = (np.asarray(x, dtype=np.int32) for x in (p_ids, c_ids, j_ids))
            p1, c = truncate_to_context(p, c, ctx_len, None)
            p2, j = truncate_to_context(p, j, ctx_len, None)
            g, cslot, rslot = _group(r)
            pairs.append(
                TokenizedPair(
                    prompt=p1 if len(p1) <= len(p2) else p2,
                    chosen=c,
                    rejected=j,
                    chosen_markdown=_flag(r, "chosen_markdown", r["chosen"]),
                    rejected_markdown=_flag(r, "rejected_markdown", r["rejected"]),
                    group=g,
                    chosen_slot=cslot,
                    rejected_slot=rslot,
                )
            )
        out[name] = EvalSet(name=name, category=cat, pairs=pairs)
    return out
