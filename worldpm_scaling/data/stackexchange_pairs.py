"""Phase 2 of a StackExchange conversion: group each bucket's answers by question, pair them, write rows.

A pair is two answers whose net scores (votes, +`accepted_bonus` for the accepted answer) differ by at
least `min_gap`, the higher one chosen; at most `max_pairs_per_question`, largest gaps first. Rows go to
a batched, schema-fixed writer (Parquet or JSONL).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, TextIO

from .htmlmd import has_formatting, html_to_markdown
from .stackexchange_options import COLUMNS, ConvertOptions, ConvertSummary
from .stackexchange_scan import is_test

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

# -- phase 2: pair --------------------------------------------------------------------------------


def _load(path: Path) -> Iterator[tuple]:
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def question_pairs(answers: list[dict], accepted_id: int | None, opts: ConvertOptions) -> list[tuple[dict, dict]]:
    """(chosen, rejected) answer pairs of one question — pure, so it is tested on its own.

    Net score = votes + accepted_bonus·accepted; a pair needs a gap ≥ min_gap; with a cap, the
    largest gaps are kept (ties: lower answer ids first)."""
    net = {a["id"]: a["score"] + (opts.accepted_bonus if a["id"] == accepted_id else 0) for a in answers}
    ordered = sorted(answers, key=lambda a: a["id"])
    out = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            gap = net[a["id"]] - net[b["id"]]
            if abs(gap) >= opts.min_gap:
                out.append((a, b) if gap > 0 else (b, a))
    if opts.max_pairs_per_question is not None and len(out) > opts.max_pairs_per_question:
        out.sort(
            key=lambda cr: (
                -(net[cr[0]["id"]] - net[cr[1]["id"]]),
                min(cr[0]["id"], cr[1]["id"]),
                max(cr[0]["id"], cr[1]["id"]),
            )
        )
        out = out[: opts.max_pairs_per_question]
    return out


def bucket_rows(path: Path, site: str, opts: ConvertOptions, s: ConvertSummary) -> Iterator[tuple[bool, tuple]]:
    questions: dict[int, tuple] = {}
    answers: dict[int, list[dict]] = {}
    for rec in _load(path):
        if rec[0] == 1:
            questions[rec[1]] = rec
        else:
            _, aid, body, qid, score, created = rec
            answers.setdefault(qid, []).append({"id": aid, "html": body, "score": score, "created": created})
    for qid in sorted(answers.keys() - questions.keys()):
        s.filtered["orphan_answer"] += len(answers[qid])
    for qid in sorted(questions):
        if len(answers.get(qid, ())) < 2:  # most forum questions: no pair possible, skip the conversion
            s.filtered["questions_without_pair"] += 1
            continue
        _, _, qbody, title, accepted_id, qcreated, qscore = questions[qid]
        prompt = html_to_markdown(qbody)
        prompt = f"{title}\n\n{prompt}".strip() if title else prompt
        if len(prompt) < opts.min_chars:
            s.filtered["empty"] += 1 + len(answers.get(qid, []))
            continue
        kept = []
        for a in answers.get(qid, []):
            a["text"] = html_to_markdown(a["html"])
            if len(a["text"]) < opts.min_chars:
                s.filtered["empty"] += 1
            else:
                a["md"] = has_formatting(a["html"])  # from the tags: ~50× cheaper than a regex on the text
                kept.append(a)
        pairs = question_pairs(kept, accepted_id, opts)
        if not pairs:
            s.filtered["questions_without_pair"] += 1
            continue
        test = is_test(qid, opts.test_frac)
        if test:
            s.questions_test += 1
        else:
            s.questions_train += 1
        for c, r in pairs:
            yield (
                test,
                (  # in COLUMNS order: tuples, not dicts, are ~2× cheaper to build and write
                    prompt,
                    c["text"],
                    r["text"],
                    c["score"],
                    r["score"],
                    qid,
                    site,
                    c["id"],
                    r["id"],
                    c["id"] == accepted_id,
                    r["id"] == accepted_id,
                    qcreated,
                    c["created"],
                    r["created"],
                    c["md"],
                    r["md"],
                    len(prompt),
                    len(c["text"]),
                    len(r["text"]),
                    qscore,
                    title,
                ),
            )


class PairWriter:
    """Batched, schema-fixed writer into a temp path (renamed by the caller when all went well)."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.n = path, fmt, 0
        self.rows: list[tuple] = []
        self._pq: pq.ParquetWriter | None = None
        self._f: TextIO | None = open(path, "w") if fmt == "jsonl" else None

    def add(self, row: tuple, batch_rows: int) -> None:
        self.rows.append(row)
        if len(self.rows) >= batch_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        self.n += len(self.rows)
        if self._f is not None:  # jsonl
            self._f.write("".join(json.dumps(dict(zip(COLUMNS, r))) + "\n" for r in self.rows))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pairs_schema()
            cols = list(zip(*self.rows))
            t = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, schema)], schema=schema)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.path, t.schema)
            self._pq.write_table(t)
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self._f is not None:
            self._f.close()
        elif self._pq is not None:
            self._pq.close()
        else:  # no rows at all: still a valid, empty file with the schema
            import pyarrow.parquet as pq

            pq.write_table(pairs_schema().empty_table(), self.path)


def pairs_schema() -> pa.Schema:
    """The Arrow schema of the output columns (ids, scores and counts int64, flags bool, text string)."""
    import pyarrow as pa

    types = {
        "chosen_score": pa.int64(),
        "rejected_score": pa.int64(),
        "question_id": pa.int64(),
        "chosen_id": pa.int64(),
        "rejected_id": pa.int64(),
        "question_score": pa.int64(),
        "chosen_accepted": pa.bool_(),
        "rejected_accepted": pa.bool_(),
        "chosen_markdown": pa.bool_(),
        "rejected_markdown": pa.bool_(),
        "prompt_chars": pa.int64(),
        "chosen_chars": pa.int64(),
        "rejected_chars": pa.int64(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])
