"""HelpSteer2 (nvidia/HelpSteer2 `train.jsonl.gz` / `validation.jsonl.gz`, gzipped or plain JSONL):
one row per response, {prompt, response, helpfulness, correctness, coherence, complexity, verbosity},
ratings 0-4, two responses per prompt (dataset card). Multi-turn prompts hold the earlier turns in
the prompt string, each later turn introduced by a `<extra_id_1>User` / `<extra_id_1>Assistant` line
(dataset card); they become a conversation.

Pairs: the responses of one prompt compared on one attribute — `helpfulness` by default — the
higher-rated response chosen, ties skipped. WorldPM evaluates HelpSteer2 as a preference set built
from these expert ratings (arXiv 2505.10527 §3.2 "Expert annotations from HelpSteer2") and reports all
five attributes separately (Appendix B.1, Figure 13); it does not spell out the pairing. The rule
here is ours, stated: the higher rating on the attribute wins, equal ratings make no pair. Pass
attribute= for the other four.
"""

from __future__ import annotations

import re
from typing import Iterable

from .common import EvalImportError, Result, Row

ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
_TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n")


def conversation(prompt: str):
    """The prompt string as a conversation when it holds `<extra_id_1>` turn markers, else itself."""
    parts = _TURN.split(prompt)
    if len(parts) == 1:
        return prompt
    turns = [{"role": "user", "content": parts[0]}]
    for role, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": role.lower(), "content": content})
    return turns


def pairs(rows: Iterable[Row], *, attribute: str = "helpfulness") -> Result:
    if attribute not in ATTRIBUTES:
        raise EvalImportError(f"attribute {attribute!r}: HelpSteer2 rates {ATTRIBUTES}")
    by_prompt: dict[str, list[tuple[str, int, str]]] = {}
    for row in rows:
        prompt, response = row.text("prompt"), row.text("response")
        rating = row.get(attribute, int)
        if not 0 <= rating <= 4:
            raise EvalImportError(f"{row.where}: field {attribute!r} must be a 0-4 rating, got {rating}")
        by_prompt.setdefault(prompt, []).append((response, rating, row.where))
    res = Result()
    for k, (prompt, resp) in enumerate(by_prompt.items()):
        group = f"p{k}"
        if len(resp) < 2:
            res.skip("prompt with a single response", resp[0][2])
            continue
        conv = conversation(prompt)
        if isinstance(conv, list) and conv[-1]["role"] != "user":
            raise EvalImportError(f"{resp[0][2]}: field 'prompt': its last <extra_id_1> turn is not the user's")
        for i in range(len(resp)):
            for j in range(i + 1, len(resp)):
                (a, ra, wa), (b, rb, wb) = resp[i], resp[j]
                if ra == rb:
                    res.skip(f"tie on {attribute}", f"{wa} vs {wb}")
                    continue
                if a == b:
                    res.skip("responses identical", f"{wa} vs {wb}")
                    continue
                (c, ci), (r, ri) = ((a, i), (b, j)) if ra > rb else ((b, j), (a, i))
                res.add(conv, c, r, group=group, chosen_slot=ci, rejected_slot=ri)
    return res
