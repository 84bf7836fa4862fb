"""RewardBench (allenai/reward-bench, split `filtered`, Parquet as published: prompt, chosen,
chosen_model, rejected, rejected_model, subset, id).

WorldPM's adversarial set is "LLMBar (from RewardBench chat-hard)" (arXiv 2505.10527 §3.2), so only
rows whose subset is one of LLMBar's (`llmbar-natural`, `llmbar-adver-*`) are kept; the other
chat-hard subset (mt-bench-hard) and every other section are skipped by name. Each row is one pair.
"""

from __future__ import annotations

from typing import Iterable

from ..io import normalize_prompt
from ..tokenizer import ConversationError
from .common import EvalImportError, Result, Row


def pairs(rows: Iterable[Row], *, subset_prefix: str = "llmbar") -> Result:
    res = Result()
    for row in rows:
        rid = str(row.get("id", (int, str)))
        subset = row.text("subset")
        if not subset.startswith(subset_prefix):
            res.skip(f"subset {subset!r} is not LLMBar", rid)
            continue
        try:
            prompt = normalize_prompt(row.get("prompt", (str, list)))
        except (ConversationError, TypeError, KeyError) as e:
            raise EvalImportError(f"{row.where}: field 'prompt': {e}") from None
        chosen, rejected = row.text("chosen"), row.text("rejected")
        if chosen == rejected:
            res.skip("chosen and rejected identical", rid)
            continue
        res.add(prompt, chosen, rejected, group=f"{subset}/{rid}")
    return res
