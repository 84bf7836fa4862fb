"""Preference data held as Hugging Face datasets → this project's pairs files (data/pairs.py schema).

Reads, with the `datasets` library and no hub access, a folder written by `save_to_disk` (a Dataset or a
DatasetDict: pick the split), a Parquet / Arrow / JSONL file exported from a hub dataset, or a folder
of such Parquet files (a hub snapshot's `data/<split>-*.parquet`), and converts one of three schemas:

- `pairs` — one preference per row: prompt / chosen / rejected columns. chosen and rejected may be
  strings or conversations (lists of {role, content}, the reply last; the turns before it are the
  prompt when no prompt column is mapped), as in chat-format preference sets.
- `h4-stack-exchange` — HuggingFaceH4/stack-exchange-preferences: per question `qid`, `question` and
  `answers` (list of {answer_id, pm_score, selected, text}); an optional `title` column. The pairs are
  made by this project's vote rule (`stackexchange.question_pairs`: net score = score + accepted bonus
  for the selected answer, a pair per gap ≥ min_gap, the higher chosen) over the answers' `pm_score`,
  with the same HTML → markdown and length filters as `wps data stackexchange`, so the same questions
  and votes give the same pairs. (The published set's pm_score is already log-scaled from the votes,
  and includes the acceptance: pass accepted_bonus=0 there.)
- `ratings` — HelpSteer2-style: rows of prompt / response with numeric attribute ratings; responses to
  the same prompt are paired by one named attribute (`attribute`, e.g. helpfulness), the higher rated
  chosen when the ratings differ by at least `min_rating_gap`.

A column map renames the schema's fields to the dataset's columns; a map naming a column the dataset
lacks is an HFImportError listing the columns found. Bad rows (a missing or non-text field, malformed
turns, a rating that is not a number) are counted by reason, with the first few named by row, and the
conversion goes on. Outputs appear by rename when complete (OUT/train.<fmt>, OUT/test.<fmt> when
test_frac > 0, OUT/summary.json).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

SCHEMAS = ("pairs", "h4-stack-exchange", "ratings")

DEFAULT_COLUMNS = {
    "pairs": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    "h4-stack-exchange": {"qid": "qid", "question": "question", "answers": "answers", "title": "title"},
    "ratings": {"prompt": "prompt", "response": "response"},
}
OPTIONAL = {"pairs": {"prompt"}, "h4-stack-exchange": {"title"}, "ratings": set()}
"""Fields that may be absent from the dataset (pairs: the prompt when chosen/rejected are conversations)."""


class HFImportError(ValueError):
    """A dataset that cannot be read, a column map that does not fit it (lists the columns found), or an
    output in the way."""


@dataclass(frozen=True, kw_only=True)
class ImportOptions:
    schema: str = "pairs"
    """pairs | h4-stack-exchange | ratings."""
    columns: dict = field(default_factory=dict)
    """Schema field → dataset column, over the schema's defaults (DEFAULT_COLUMNS)."""
    split: str | None = None
    """Split of a DatasetDict or of a hub snapshot folder (None: `train`, or the only one)."""
    attribute: str = "helpfulness"
    """ratings: the attribute that orders two responses to a prompt."""
    min_rating_gap: float = 1.0
    """ratings: smallest rating difference that makes a pair."""
    accepted_bonus: int = 1
    """h4-stack-exchange: added to the selected answer's score (as `wps data stackexchange`)."""
    min_gap: int = 1
    """h4-stack-exchange: smallest net-score difference that makes a pair."""
    max_pairs_per_question: int | None = None
    max_chars: int = 20_000
    """h4-stack-exchange: answers/questions with longer HTML are dropped (as `wps data stackexchange`)."""
    min_chars: int = 1
    test_frac: float = 0.0
    """Share of prompts (questions) in the test split, by a hash of the question id (h4, the same split as
    `wps data stackexchange`) or of the prompt text; 0 = everything in train."""
    format: str = "parquet"

    def __post_init__(self) -> None:
        if self.schema not in SCHEMAS:
            raise HFImportError(f"schema must be one of {', '.join(SCHEMAS)}, got {self.schema!r}")
        unknown = (
            set(self.columns)
            - set(DEFAULT_COLUMNS[self.schema])
            - ({"attribute"} if self.schema == "ratings" else set())
        )
        if unknown:
            raise HFImportError(
                f"column map: {sorted(unknown)} are not fields of the {self.schema} schema "
                f"(fields: {', '.join(DEFAULT_COLUMNS[self.schema])})"
            )
        if not 0 <= self.test_frac < 1:
            raise HFImportError("test_frac must be within [0, 1)")
        if self.format not in ("parquet", "jsonl"):
            raise HFImportError(f"format must be parquet or jsonl, not {self.format!r}")
        if self.min_gap < 1:
            raise HFImportError("min_gap must be ≥ 1 (equal scores never make a pair)")
        if self.min_rating_gap <= 0:
            raise HFImportError("min_rating_gap must be > 0 (equal ratings never make a pair)")


@dataclass
class ImportSummary:
    source: str = ""
    schema: str = ""
    rows: int = 0
    pairs_train: int = 0
    pairs_test: int = 0
    bad_rows: dict = field(default_factory=dict)
    """reason → rows skipped."""
    examples: list = field(default_factory=list)
    """The first bad rows, named (`row 12: field 'chosen' is null`)."""
    no_pair: int = 0
    """Rows (pairs schema) or prompts/questions (others) that gave no pair: ties, one response."""
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "pairs": self.pairs_train + self.pairs_test}


# -- reading ---------------------------------------------------------------------------------------


def open_dataset(path: str | Path, split: str | None = None, cache_dir: str | None = None):
    """A `datasets.Dataset` from a save_to_disk folder, a Parquet/Arrow/JSONL file or a folder of Parquet."""
    import datasets

    p = Path(path)
    if not p.exists():
        raise HFImportError(f"{p}: no such dataset folder or file")
    kw = {"cache_dir": cache_dir} if cache_dir else {}
    try:
        if p.is_dir() and any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
            ds = datasets.load_from_disk(str(p))
        elif p.is_dir():
            files = sorted(str(f) for f in p.rglob("*.parquet"))
            if not files:
                raise HFImportError(
                    f"{p}: neither a save_to_disk folder (dataset_info.json / dataset_dict.json) "
                    "nor a folder of Parquet files"
                )
            by_split: dict[str, list[str]] = {}
            for f in files:
                name = Path(f).name.split("-")[0].split(".")[0]
                by_split.setdefault(name, []).append(f)
            ds = datasets.DatasetDict({s: datasets.Dataset.from_parquet(fs, **kw) for s, fs in by_split.items()})
        elif p.suffix == ".parquet":
            ds = datasets.Dataset.from_parquet(str(p), **kw)
        elif p.suffix == ".arrow":
            ds = datasets.Dataset.from_file(str(p))
        elif p.suffix in (".jsonl", ".json"):
            ds = datasets.Dataset.from_json(str(p), **kw)
        else:
            raise HFImportError(f"{p}: a dataset must be a save_to_disk folder or a .parquet/.arrow/.jsonl file")
    except HFImportError:
        raise
    except Exception as e:  # noqa: BLE001 — any reader error means an unreadable dataset
        raise HFImportError(f"{p}: cannot read as a dataset ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        want = split or ("train" if "train" in ds else (splits[0] if len(splits) == 1 else None))
        if want not in ds:
            raise HFImportError(
                f"{p}: {'split ' + repr(split) + ' not found' if split else 'several splits'}; "
                f"choose one with --split (splits: {', '.join(splits)})"
            )
        ds = ds[want]
    elif split not in (None, "train"):
        raise HFImportError(f"{p}: holds a single dataset, not splits (drop --split {split})")
    return ds


def resolve_columns(ds_columns: list[str], opts: ImportOptions, where: str) -> dict[str, str | None]:
    """Schema field → dataset column (None for an absent optional field); names what is missing."""
    cols = {**DEFAULT_COLUMNS[opts.schema], **{k: v for k, v in opts.columns.items() if k != "attribute"}}
    if opts.schema == "ratings":
        cols["attribute"] = opts.columns.get("attribute", opts.attribute)
    out, missing = {}, []
    for f, c in cols.items():
        if c in ds_columns:
            out[f] = c
        elif f in OPTIONAL[opts.schema] and f not in opts.columns:
            out[f] = None
        else:
            missing.append(f"{f} → {c!r}")
    if missing:
        raise HFImportError(
            f"{where}: column map {', '.join(missing)} not among the dataset's columns "
            f"({', '.join(ds_columns)}); map them with --map FIELD=COLUMN"
        )
    return out


# -- the three schemas ----------------------------------------------------------------------------


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
    return json.dumps(prompt)  # hashed by _is_test_text


def _bad(s: ImportSummary, i: int, e: BadRow) -> None:
    s.bad_rows[e.reason] = s.bad_rows.get(e.reason, 0) + 1
    if len(s.examples) < 5:
        s.examples.append(f"row {i}: {e}")


def _is_test_text(key: str, frac: float) -> bool:
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < frac


# -- converting --------------------------------------------------------------------------------------


def convert(
    path: str | Path, out: str | Path, opts: ImportOptions = ImportOptions(), *, force: bool = False
) -> ImportSummary:
    """Convert the dataset at `path` into OUT/train.<fmt> (+ test) and OUT/summary.json."""
    import pandas as pd

    from .io import write_pairs

    t0 = time.perf_counter()
    out = Path(out)
    names = ["train"] + (["test"] if opts.test_frac > 0 else [])
    targets = {n: out / f"{n}.{opts.format}" for n in names}
    if not force:
        taken = [str(p) for p in (*targets.values(), out / "summary.json") if p.exists()]
        if taken:
            raise HFImportError(f"--out {out}: {', '.join(taken)} exist (pass --force to replace them)")
    with tempfile.TemporaryDirectory(prefix="wps-hf-") as cache:
        ds = open_dataset(path, opts.split, cache_dir=cache)
        cols = resolve_columns(list(ds.column_names), opts, str(path))
        s = ImportSummary(source=str(path), schema=opts.schema)
        make = {"pairs": pairs_rows, "h4-stack-exchange": h4_rows, "ratings": ratings_rows}[opts.schema]
        rows: dict[str, list[dict]] = {n: [] for n in names}
        for key, r in make(ds, cols, opts, s):
            split = key if key in ("train", "test") else ("test" if _is_test_text(key, opts.test_frac) else "train")
            rows[split].append(r)
    s.pairs_train, s.pairs_test = len(rows["train"]), len(rows.get("test", []))
    if not s.pairs_train + s.pairs_test:
        raise HFImportError(
            f"{path}: no pairs ({s.rows} rows read; bad rows {dict(s.bad_rows) or 0}; "
            f"{s.no_pair} without a pair){': ' + s.examples[0] if s.examples else ''}"
        )
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".hf-import-"))
    try:
        for n, p in targets.items():
            write_pairs(
                pd.DataFrame(rows[n], columns=list(rows[n][0]) if rows[n] else ["prompt", "chosen", "rejected"]),
                work / p.name,
            )
        s.seconds = time.perf_counter() - t0
        s.outputs = {n: str(p) for n, p in targets.items()}
        (work / "summary.json").write_text(json.dumps(s.to_dict(), indent=1))
        for p in targets.values():
            (work / p.name).replace(p)
        (work / "summary.json").replace(out / "summary.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return s


def reasons(s: ImportSummary) -> str:
    return ", ".join(f"{k} {v}" for k, v in Counter(s.bad_rows).most_common()) or "none"
