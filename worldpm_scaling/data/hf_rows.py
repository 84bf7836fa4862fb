"""The three schemas of a Hugging Face import, row by row: pairs, h4-stack-exchange, ratings → pair rows.

Each reader yields (split key, pair row) and counts bad rows by reason (BadRow) in the summary; the
split key is `train`/`test` where the schema decides (h4: by question id), else the text hashed by
is_test_text.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Iterator

from .hf_options import ImportOptions, ImportSummary


class BadRow(Exception):
    """One row to skip; the message says why (its first words are the reason counted)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _text(v, fieldname: str) -> str:
    if v is None:
        raise BadRow("missing value", f"field {fieldname!r} is null")
    if not isinstance(v, str):
        raise BadRow("not text", f"field {fieldname!r} must be text, got {type(v).__name__}")
    return v


def _turns(v, fieldname: str) -> list[dict]:
    if not isinstance(v, list) or not v:
        raise BadRow("bad turns", f"field {fieldname!r} must be a non-empty list of {{role, content}} turns")
    out = []
    for k, t in enumerate(v):
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            raise BadRow("bad turns", f"field {fieldname!r} turn {k} lacks a string role or content")
        out.append({"role": t["role"], "content": t["content"]})
    return out


def _reply(v, fieldname: str) -> tuple[str, list[dict] | None]:
    """(reply text, the turns before it when `v` is a conversation)."""
    if isinstance(v, list):
        turns = _turns(v, fieldname)
        if turns[-1]["role"] != "assistant":
            raise BadRow("bad turns", f"field {fieldname!r}: the last turn must be the assistant reply")
        return turns[-1]["content"], turns[:-1]
    return _text(v, fieldname), None


def _prompt(v, fieldname: str):
    from .io import normalize_prompt
    from .tokenizer import ConversationError

    if isinstance(v, list):
        v = _turns(v, fieldname)
        if v and v[0]["role"] == "system" and not v[0]["content"]:
            v = v[1:]  # the empty system turn the chat template adds anyway
    else:
        v = _text(v, fieldname)
    try:
        return normalize_prompt(v)
    except (ConversationError, TypeError, KeyError) as e:
        raise BadRow("bad turns", f"field {fieldname!r}: {e}") from None


def pairs_rows(ds, cols: dict, opts: ImportOptions, s: ImportSummary) -> Iterator[tuple[str, dict]]:
    for i, row in enumerate(ds):
        s.rows += 1
        try:
            chosen, c_ctx = _reply(row[cols["chosen"]], cols["chosen"])
            rejected, r_ctx = _reply(row[cols["rejected"]], cols["rejected"])
            if cols["prompt"] is not None and (c_ctx is None or not [t for t in c_ctx if t["role"] != "system"]):
                prompt = _prompt(row[cols["prompt"]], cols["prompt"])
            elif c_ctx:
                if r_ctx is not None and r_ctx != c_ctx:
                    raise BadRow(
                        "bad turns", f"fields {cols['chosen']!r} and {cols['rejected']!r} differ before their replies"
                    )
                prompt = _prompt(c_ctx, cols["chosen"])
            else:
                raise BadRow(
                    "missing value",
                    "no prompt: map a prompt column (--map prompt=COLUMN) or give chosen/rejected as conversations",
                )
            if len(chosen) < opts.min_chars or len(rejected) < opts.min_chars:
                raise BadRow("empty text", "an empty reply")
            if chosen == rejected:
                s.no_pair += 1
                continue
        except BadRow as e:
            _bad(s, i, e)
            continue
        yield _split_key(prompt), {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def h4_rows(ds, cols: dict, opts: ImportOptions, s: ImportSummary) -> Iterator[tuple[str, dict]]:
    from .htmlmd import has_formatting, html_to_markdown
    from .stackexchange import ConvertOptions, is_test, question_pairs

    rule = ConvertOptions(
        accepted_bonus=opts.accepted_bonus,
        min_gap=opts.min_gap,
        max_pairs_per_question=opts.max_pairs_per_question,
        max_chars=opts.max_chars,
        min_chars=opts.min_chars,
    )
    for i, row in enumerate(ds):
        s.rows += 1
        try:
            qid = row[cols["qid"]]
            if not isinstance(qid, int) or isinstance(qid, bool):
                raise BadRow("bad id", f"field {cols['qid']!r} must be an integer question id, got {qid!r}")
            qhtml = _text(row[cols["question"]], cols["question"])
            title = row[cols["title"]] if cols.get("title") else ""
            answers = row[cols["answers"]]
            if not isinstance(answers, list):
                raise BadRow("bad answers", f"field {cols['answers']!r} must be a list of answers")
            if len(qhtml) > rule.max_chars:
                raise BadRow("too long", "question longer than max_chars")
            prompt = html_to_markdown(qhtml)
            prompt = f"{title}\n\n{prompt}".strip() if title else prompt
            if len(prompt) < rule.min_chars:
                raise BadRow("empty text", "empty question")
            kept, accepted = [], None
            for k, a in enumerate(answers):
                if (
                    not isinstance(a, dict)
                    or not isinstance(a.get("answer_id"), int)
                    or not isinstance(a.get("pm_score"), (int, float))
                    or not isinstance(a.get("text"), str)
                ):
                    raise BadRow("bad answers", f"answer {k} lacks an integer answer_id, a numeric pm_score or a text")
                if len(a["text"]) > rule.max_chars:
                    continue
                text = html_to_markdown(a["text"])
                if len(text) < rule.min_chars:
                    continue
                if a.get("selected"):
                    accepted = a["answer_id"]
                kept.append(
                    {"id": a["answer_id"], "score": a["pm_score"], "text": text, "md": has_formatting(a["text"])}
                )
        except BadRow as e:
            _bad(s, i, e)
            continue
        pairs = question_pairs(kept, accepted, rule)
        if not pairs:
            s.no_pair += 1
        for c, r in pairs:
            yield (
                ("test" if is_test(qid, opts.test_frac) else "train"),
                {
                    "prompt": prompt,
                    "chosen": c["text"],
                    "rejected": r["text"],
                    "chosen_score": c["score"],
                    "rejected_score": r["score"],
                    "question_id": qid,
                    "chosen_id": c["id"],
                    "rejected_id": r["id"],
                    "chosen_accepted": c["id"] == accepted,
                    "rejected_accepted": r["id"] == accepted,
                    "chosen_markdown": c["md"],
                    "rejected_markdown": r["md"],
                },
            )


def ratings_rows(ds, cols: dict, opts: ImportOptions, s: ImportSummary) -> Iterator[tuple[str, dict]]:
    attr = cols["attribute"]
    groups: dict[str, list[tuple[str, float]]] = {}
    prompts: dict[str, object] = {}
    for i, row in enumerate(ds):
        s.rows += 1
        try:
            prompt = _prompt(row[cols["prompt"]], cols["prompt"])
            response = _text(row[cols["response"]], cols["response"])
            rating = row[attr]
            if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not math.isfinite(rating):
                raise BadRow("bad rating", f"field {attr!r} must be a number, got {rating!r}")
            if len(response) < opts.min_chars:
                raise BadRow("empty text", "an empty response")
        except BadRow as e:
            _bad(s, i, e)
            continue
        key = json.dumps(prompt)
        prompts.setdefault(key, prompt)
        groups.setdefault(key, []).append((response, float(rating)))
    for key, rs in groups.items():
        made = 0
        for a in range(len(rs)):
            for b in range(a + 1, len(rs)):
                (ta, ra), (tb, rb) = rs[a], rs[b]
                if abs(ra - rb) >= opts.min_rating_gap and ta != tb:
                    (c, rc), (r, rr) = ((ta, ra), (tb, rb)) if ra > rb else ((tb, rb), (ta, ra))
                    made += 1
                    yield (
                        _split_key(prompts[key]),
                        {
                            "prompt": prompts[key],
                            "chosen": c,
                            "rejected": r,
                            f"chosen_{attr}": rc,
                            f"rejected_{attr}": rr,
                        },
                    )
        if not made:
            s.no_pair += 1


def _split_key(prompt) -> str:
    return json.dumps(prompt)  # hashed by is_test_text


def _bad(s: ImportSummary, i: int, e: BadRow) -> None:
    s.bad_rows[e.reason] = s.bad_rows.get(e.reason, 0) + 1
    if len(s.examples) < 5:
        s.examples.append(f"row {i}: {e}")


def is_test_text(key: str, frac: float) -> bool:
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < frac
