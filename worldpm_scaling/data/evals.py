"""The eval-set registry: the 12 WorldPM sets (names and categories in names.py) plus user sets.

None of the sets can be downloaded here, so each maps to an expected local file,
`<eval.dir>/<name>.jsonl` or `.parquet`, with prompt/chosen/rejected columns (RewardBench-style).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..names import EVAL_SETS
from .io import read_pairs
from .pairs import TokenizedPair
from .tokenized import _fit
from .tokenizer import Tok, prompt_text, reply_text

import numpy as np


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


def load_eval_sets(eval_spec, *, tokenizer: Tok, ctx_len: int, reward_token: str = "endoftext") -> dict[str, EvalSet]:
    """Tokenized eval sets; a missing file raises EvalSetMissing naming it."""
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
        for r, p, c, j in zip(rows, ps, cs, rs):
            p, c, j = (np.asarray(x, dtype=np.int32) for x in (p, c, j))
            p1, c = _fit(p, c, ctx_len, None)
            p2, j = _fit(p, j, ctx_len, None)
            pairs.append(TokenizedPair(prompt=p1 if len(p1) <= len(p2) else p2, chosen=c, rejected=j,
                                       chosen_markdown=bool(r.get("chosen_markdown", False)),
                                       rejected_markdown=bool(r.get("rejected_markdown", False))))
        out[name] = EvalSet(name=name, category=cat, pairs=pairs)
    return out
