"""RM-Bench (THU-KEG/RM-Bench `data/{chat,math,code}_filtered.json`, or `total_dataset.json` with a
`domain` field): a JSON array of items {id, prompt, chosen: [3], rejected: [3], subset, ...}.

Styles, by list index (RM-Bench README "Dataset Details"): 0 = concise, 1 = detailed plain text,
2 = detailed markdown. The markdown label of a reply is therefore its style index (2 = markdown),
a true label, not a guess from the text.

Pairing:
- `3x3` (default): every chosen style against every rejected style, 9 pairs per prompt; this is the
  matrix RM-Bench scores (README "how to compute the accuracy": rows chosen, columns rejected;
  hard = upper-right triangle, normal = diagonal, easy = lower-left), and the only pairing that
  gives the set's hard/normal/easy accuracies and a markdown Phi.
- `original`: WorldPM arXiv 2505.10527 Appendix A.4 "Evaluation Settings": "For RM-Bench, we utilize
  only the model's original responses to form preference pairs, rather than their style-modified
  versions". Which index is "original" the paper does not say; we read it as style 2, the detailed
  markdown reply RM-Bench's generator gives by default, from which the other two are derived (our
  reading of the RM-Bench paper, arXiv 2410.16184 §3; docs/eval_sets.md). One pair per prompt.
"""

from __future__ import annotations

from typing import Iterable

from .common import EvalImportError, Result, Row

STYLES = ("concise", "detailed_plain", "detailed_markdown")
MARKDOWN_STYLE = 2
ORIGINAL_STYLE = 2
PAIRINGS = ("3x3", "original")
DOMAINS = {"rmbench_chat": "chat", "rmbench_math": "math", "rmbench_humanevalpack": "code"}


def pairs(rows: Iterable[Row], *, domain: str, pairing: str = "3x3") -> Result:
    if pairing not in PAIRINGS:
        raise EvalImportError(f"pairing {pairing!r}: RM-Bench pairs are one of {PAIRINGS}")
    res = Result()
    seen: set[str] = set()
    for row in rows:
        rid = str(row.get("id", (int, str)))
        d = row.get("domain", str, optional=True)
        if d is not None and not d.startswith(domain):
            res.skip(f"domain {d!r} is not {domain!r}", rid)
            continue
        if rid in seen:
            res.skip("duplicate id", rid)
            continue
        seen.add(rid)
        prompt = row.text("prompt")
        chosen, rejected = row.get("chosen", list), row.get("rejected", list)
        for key, replies in (("chosen", chosen), ("rejected", rejected)):
            if len(replies) != len(STYLES):
                raise EvalImportError(
                    f"{row.where}: field {key!r} must hold {len(STYLES)} replies "
                    f"({', '.join(STYLES)}), got {len(replies)}"
                )
            for k, r in enumerate(replies):
                if not isinstance(r, str):
                    raise EvalImportError(f"{row.where}: field {key!r}[{k}] must be str, got {type(r).__name__}")
        combos = (
            [(i, j) for i in range(3) for j in range(3)] if pairing == "3x3" else [(ORIGINAL_STYLE, ORIGINAL_STYLE)]
        )
        for i, j in combos:
            if not chosen[i].strip() or not rejected[j].strip():
                res.skip("empty reply", f"{rid}[{i},{j}]")
                continue
            if chosen[i] == rejected[j]:
                res.skip("chosen and rejected identical", f"{rid}[{i},{j}]")
                continue
            res.add(
                prompt,
                chosen[i],
                rejected[j],
                group=rid,
                chosen_slot=i,
                rejected_slot=j,
                chosen_markdown=i == MARKDOWN_STYLE,
                rejected_markdown=j == MARKDOWN_STYLE,
            )
    return res
