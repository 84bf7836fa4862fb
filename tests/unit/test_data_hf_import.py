"""`wps data hf`: Hugging Face datasets (made here with the `datasets` library, in the real schemas) → pairs.

The H4 stack-exchange-preferences converter applies this project's vote rule: on the same questions and
votes it gives exactly the pairs `wps data stackexchange` gives from the dump. Bad rows are counted and
skipped; a column map that does not fit is a named error listing the dataset's columns."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from worldpm_scaling.cli import main
from worldpm_scaling.data import read_pairs
from worldpm_scaling.data.stackexchange import iter_rows, write_fake_dump

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "stackexchange" / "Posts.xml"


def h4_rows_from_dump(posts: Path) -> list[dict]:
    """The dump's questions in HuggingFaceH4/stack-exchange-preferences' schema (qid, question, answers
    [answer_id, author, author_id, author_profile, pm_score, selected, text], date, metadata), with the
    votes as pm_score and a title column."""
    qs, ans = {}, {}
    with open(posts, "rb") as f:
        for a in iter_rows(f, str(posts)):
            if a.get("DeletionDate"):
                continue
            if a.get("PostTypeId") == "1":
                qs[int(a["Id"])] = a
            elif a.get("PostTypeId") == "2" and a.get("ParentId"):
                ans.setdefault(int(a["ParentId"]), []).append(a)
    rows = []
    for qid, q in sorted(qs.items()):
        acc = q.get("AcceptedAnswerId")
        rows.append(
            {
                "qid": qid,
                "title": q.get("Title", ""),
                "question": q.get("Body", ""),
                "date": q.get("CreationDate", ""),
                "metadata": ["https://example.stackexchange.com/questions/%d" % qid],
                "answers": [
                    {
                        "answer_id": int(a["Id"]),
                        "author": "u",
                        "author_id": 1,
                        "author_profile": "",
                        "pm_score": int(a.get("Score") or 0),
                        "selected": a["Id"] == acc,
                        "text": a.get("Body", ""),
                    }
                    for a in ans.get(qid, [])
                ],
            }
        )
    return rows


def triples(path: Path) -> list[tuple]:
    import pandas as pd

    df = pd.read_parquet(path)  # a split may be empty (read_pairs refuses those)
    return sorted(
        (json.dumps(p) if not isinstance(p, str) else p, c, r)
        for p, c, r in zip(df["prompt"], df["chosen"], df["rejected"])
    )


@pytest.mark.parametrize("dump", ["fixture", "fake"])
def test_h4_schema_gives_the_pairs_wps_data_stackexchange_gives(tmp_path, capsys, dump):
    posts = FIXTURE if dump == "fixture" else write_fake_dump(tmp_path / "Posts.xml", 400, seed=3)
    ds = datasets.Dataset.from_list(h4_rows_from_dump(posts))
    ds.save_to_disk(str(tmp_path / "h4"))
    assert main(["data", "stackexchange", str(posts), "--out", str(tmp_path / "se"), "--test-frac", "0.2"]) == 0
    assert (
        main(
            [
                "data",
                "hf",
                str(tmp_path / "h4"),
                "--schema",
                "h4-stack-exchange",
                "--out",
                str(tmp_path / "hf"),
                "--test-frac",
                "0.2",
            ]
        )
        == 0
    )
    for split in ("train", "test"):
        se, hf = triples(tmp_path / "se" / f"{split}.parquet"), triples(tmp_path / "hf" / f"{split}.parquet")
        assert hf == se and (se or split == "test")
    assert len(triples(tmp_path / "se" / "train.parquet")) >= (3 if dump == "fixture" else 50)


def test_plain_and_conversation_pairs_from_parquet_with_a_column_map(tmp_path, capsys):
    conv = [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7."},
        {"role": "user", "content": "Another?"},
    ]
    ds = datasets.Dataset.from_dict(
        {
            "question": ["What is 2+2?", "Capital of France?", None, "ok?"],
            "response_j": ["4", "Paris.", "x", ""],
            "response_k": ["5", "Lyon.", "y", "no"],
        }
    )
    ds.to_parquet(str(tmp_path / "se.parquet"))
    assert (
        main(
            [
                "data",
                "hf",
                str(tmp_path / "se.parquet"),
                "--map",
                "prompt=question,chosen=response_j,rejected=response_k",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "bad rows skipped: missing value 1, empty text 1" in out and "row 2: field 'question' is null" in out
    df = read_pairs(tmp_path / "a")
    assert list(df["chosen"]) == ["4", "Paris."]
    # chat-format preference rows (the prompt is the turns before each reply), from a DatasetDict on disk
    chat = datasets.Dataset.from_dict(
        {
            "prompt": ["Another?"],
            "chosen": [conv + [{"role": "assistant", "content": "11."}]],
            "rejected": [conv + [{"role": "assistant", "content": "12."}]],
        }
    )
    datasets.DatasetDict({"train_prefs": chat, "test_prefs": chat}).save_to_disk(str(tmp_path / "uf"))
    assert main(["data", "hf", str(tmp_path / "uf"), "--out", str(tmp_path / "b")]) == 2
    assert "choose one with --split (splits: train_prefs, test_prefs)" in capsys.readouterr().err
    assert main(["data", "hf", str(tmp_path / "uf"), "--split", "train_prefs", "--out", str(tmp_path / "b")]) == 0
    row = read_pairs(tmp_path / "b").iloc[0]
    assert list(row["prompt"]) == conv and (row["chosen"], row["rejected"]) == ("11.", "12.")


def test_ratings_are_paired_by_the_named_attribute(tmp_path, capsys):
    ds = datasets.Dataset.from_dict(
        {
            "prompt": ["p1", "p1", "p2", "p2", "p3", "p3"],
            "response": ["good", "bad", "tie-a", "tie-b", "long", "short"],
            "helpfulness": [4, 1, 2, 2, 3, 1],
            "correctness": [4, 1, 2, 2, 0, 4],
            "coherence": [4] * 6,
            "complexity": [1] * 6,
            "verbosity": [1, 1, 1, 1, 4, 0],
        }
    )
    ds.to_json(str(tmp_path / "hs2.jsonl"))
    assert main(["data", "hf", str(tmp_path / "hs2.jsonl"), "--schema", "ratings", "--out", str(tmp_path / "h")]) == 0
    df = read_pairs(tmp_path / "h")
    assert [(r.prompt, r.chosen, r.rejected) for r in df.itertuples()] == [
        ("p1", "good", "bad"),
        ("p3", "long", "short"),
    ]
    assert "1 without a pair" in capsys.readouterr().out
    assert (
        main(
            [
                "data",
                "hf",
                str(tmp_path / "hs2.jsonl"),
                "--schema",
                "ratings",
                "--attribute",
                "correctness",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert [(r.chosen, r.rejected) for r in read_pairs(tmp_path / "c").itertuples()] == [
        ("good", "bad"),
        ("short", "long"),
    ]


def test_a_wrong_column_map_lists_the_columns_found(tmp_path, capsys):
    datasets.Dataset.from_dict({"q": ["a"], "good": ["b"], "bad": ["c"]}).save_to_disk(str(tmp_path / "d"))
    assert main(["data", "hf", str(tmp_path / "d"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "chosen → 'chosen'" in err and "(q, good, bad)" in err, err
    assert main(["data", "hf", str(tmp_path / "d"), "--map", "answer=good", "--out", str(tmp_path / "o")]) == 2
    assert "['answer'] are not fields of the pairs schema" in capsys.readouterr().err
    assert (
        main(
            [
                "data",
                "hf",
                str(tmp_path / "d"),
                "--schema",
                "ratings",
                "--map",
                "prompt=q,response=good",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "attribute → 'helpfulness'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
