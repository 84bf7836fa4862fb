"""Token statistics of a pairs file: tokens per pair, as a sweep's `data.stats_file` reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .io import iter_pairs
from .tokenizer import DEFAULT_REWARD_TOKEN, Tok, encode_rows, load_tokenizer


def tokenized_stats(rows: list[dict], tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> dict:
    """Token lengths of a sample: `tokens_per_pair` = mean of 2·prompt + chosen + rejected."""
    ps, cs, rs = encode_rows(rows, tok, reward_token)
    p = np.array([len(x) for x in ps])
    c = np.array([len(x) for x in cs])
    r = np.array([len(x) for x in rs])
    pct = lambda a: {f"p{q}": float(np.percentile(a, q)) for q in (50, 90, 99)}
    return {
        "tokens_per_pair": float(np.mean(2 * p + c + r)),
        "sample_pairs": len(rows),
        "prompt_tokens": {"mean": float(p.mean()), **pct(p)},
        "reply_tokens": {"mean": float(np.concatenate([c, r]).mean()), **pct(np.concatenate([c, r]))},
        "tokenizer": tok.path,
        "reward_token": reward_token,
    }


def write_token_stats(
    pairs: str | Path,
    tokenizer: str | Path,
    out: str | Path,
    *,
    reward_token: str = DEFAULT_REWARD_TOKEN,
    sample: int = 10_000,
) -> dict:
    """Measure tokens per pair on (up to `sample` of) a pairs file with a real tokenizer, in the training
    format (chat template, reward token), and write the stats JSON a sweep's `data.stats_file` reads
    (`tokens_per_pair` = mean tokens of prompt+chosen and prompt+rejected together). Returns it."""
    rows = []
    for r in iter_pairs(pairs):
        rows.append(r)
        if len(rows) >= sample:
            break
    if not rows:
        raise ValueError(f"{pairs}: no pairs to measure")
    stats = {**tokenized_stats(rows, load_tokenizer(tokenizer), reward_token), "source": str(pairs)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, indent=1))
    tmp.replace(out)
    return stats
