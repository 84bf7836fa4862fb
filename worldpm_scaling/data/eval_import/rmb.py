"""RMB (Zhou-Zoey/RMB-Reward-Model-Benchmark `RMB_dataset/Pairwise_set/Helpfulness/<category>/<task>.json`,
a file or the folder): JSON arrays of {pair_uid, conversation_input: [{role, content, language}],
chosen: {llm_name, answer}, reject: {llm_name, answer}, category_path}.

WorldPM uses RMB's pairwise set only (arXiv 2505.10527 Appendix A.4: "We focus on PairWise
evaluation") and its Helpfulness half (§3.2 "GPT4 annotations from RMB's Helpfulness evaluation"),
so a pair is the item's own chosen/reject; the prompt keeps every turn of `conversation_input`
(multi-turn items end with the user turn the answers reply to). Best-of-N items (`bon_uid`) and
Harmlessness items are skipped by name.
"""

from __future__ import annotations

from typing import Iterable

from ..io import normalize_prompt
from ..tokenizer import ConversationError
from .common import EvalImportError, Result, Row


def _answer(row: Row, key: str) -> str:
    v = row.get(key, dict)
    if not isinstance(v.get("answer"), str):
        got = "missing" if "answer" not in v else type(v["answer"]).__name__
        raise EvalImportError(f"{row.where}: field {key!r}.answer must be str, got {got}")
    return v["answer"]


def pairs(rows: Iterable[Row]) -> Result:
    res = Result()
    for row in rows:
        if "bon_uid" in row.data:
            res.skip("best-of-N item (WorldPM uses RMB's pairwise set)", row.data["bon_uid"])
            continue
        uid = str(row.get("pair_uid", (str, int)))
        cat = row.get("category_path", str, optional=True) or ""
        if "Harmlessness" in cat:
            res.skip("Harmlessness item (the WorldPM set is RMB Helpfulness)", uid)
            continue
        turns = row.get("conversation_input", list)
        try:
            prompt = normalize_prompt(turns)
        except (ConversationError, TypeError, KeyError) as e:
            raise EvalImportError(f"{row.where}: field 'conversation_input': {e}") from None
        chosen, rejected = _answer(row, "chosen"), _answer(row, "reject")
        if not chosen.strip() or not rejected.strip():
            res.skip("empty answer", uid)
            continue
        if chosen == rejected:
            res.skip("chosen and reject identical", uid)
            continue
        res.add(prompt, chosen, rejected, group=uid)
    return res
