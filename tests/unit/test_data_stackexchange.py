"""StackExchange converter on a hand-made Posts.xml: golden pairs, ties, accepted bonus, split, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from worldpm_scaling.cli import main
from worldpm_scaling.data.htmlmd import html_to_markdown
from worldpm_scaling.data.stackexchange import (
    ConvertOptions,
    StackExchangeError,
    convert,
    is_test,
    question_pairs,
    write_fake_dump,
)

pytestmark = pytest.mark.unit

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "stackexchange"
GOLDEN = dict(test_frac=0, max_chars=200, site="fixture")


def _pairs(out: Path, split: str = "train") -> pd.DataFrame:
    return pd.read_parquet(out / f"{split}.parquet").sort_values(["question_id", "chosen_id", "rejected_id"])


def test_golden_pairs(tmp_path):
    s = convert(FIX / "Posts.xml", tmp_path / "o", ConvertOptions(**GOLDEN, bucket_bytes=512))  # several buckets
    got = _pairs(tmp_path / "o").to_dict("records")
    expected = json.loads((FIX / "expected_pairs.json").read_text())
    assert got == expected
    # Q5's two answers tie (2 = 2): no pair; 10 empty, 13 deleted, 18 over-long, 17 orphan, 19 a tag wiki.
    assert 5 not in {r["question_id"] for r in got}
    assert s.filtered == {
        "empty": 1,
        "deleted": 1,
        "too_long": 1,
        "orphan_answer": 1,
        "other_post_type": 1,
        "questions_without_pair": 1,
    }
    assert (s.posts_read, s.questions, s.pairs_train, s.pairs_test) == (19, 4, 7, 0)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["pairs"] == 7 and summary["options"]["accepted_bonus"] == 1


def test_accepted_bonus_turns_ties_and_can_be_switched_off(tmp_path):
    # Q1: answer 2 has 5 votes, accepted answer 3 has 4: with the +1 bonus they tie (no pair) …
    with_bonus = _pairs(
        Path(convert(FIX / "Posts.xml", tmp_path / "a", ConvertOptions(**GOLDEN)).outputs["train"]).parent
    )
    ids = set(zip(with_bonus.chosen_id, with_bonus.rejected_id))
    assert (2, 3) not in ids and (3, 2) not in ids
    # … without it, votes alone prefer 2 over 3.
    convert(FIX / "Posts.xml", tmp_path / "b", ConvertOptions(**GOLDEN, accepted_bonus=0))
    ids0 = set(zip(*(_pairs(tmp_path / "b")[c] for c in ("chosen_id", "rejected_id"))))
    assert (2, 3) in ids0
    # … and a large bonus makes the accepted answer beat the 7-vote late answer 16.
    convert(FIX / "Posts.xml", tmp_path / "c", ConvertOptions(**GOLDEN, accepted_bonus=5))
    ids5 = set(zip(*(_pairs(tmp_path / "c")[c] for c in ("chosen_id", "rejected_id"))))
    assert (3, 16) in ids5 and (16, 3) not in ids5


def test_question_pairs_gap_and_cap():
    answers = [{"id": 1, "score": 10}, {"id": 2, "score": 9}, {"id": 3, "score": 0}, {"id": 4, "score": 0}]
    all_pairs = [(c["id"], r["id"]) for c, r in question_pairs(answers, None, ConvertOptions())]
    assert sorted(all_pairs) == [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4)]  # 3 vs 4 tie
    gap2 = [(c["id"], r["id"]) for c, r in question_pairs(answers, None, ConvertOptions(min_gap=2))]
    assert sorted(gap2) == [(1, 3), (1, 4), (2, 3), (2, 4)]
    top2 = [(c["id"], r["id"]) for c, r in question_pairs(answers, None, ConvertOptions(max_pairs_per_question=2))]
    assert top2 == [(1, 3), (1, 4)]  # largest gaps (10) first, ties by id
    with pytest.raises(StackExchangeError, match="min_gap"):
        ConvertOptions(min_gap=0)


def test_no_question_in_both_splits(tmp_path):
    dump = write_fake_dump(tmp_path / "Posts.xml", 3000, seed=1)
    s = convert(dump, tmp_path / "o", ConvertOptions(test_frac=0.3))
    train, test = _pairs(tmp_path / "o"), _pairs(tmp_path / "o", "test")
    assert len(train) > 0 and len(test) > 0
    assert not set(train.question_id) & set(test.question_id)
    assert all(is_test(q, 0.3) for q in set(test.question_id))
    assert s.pairs_train == len(train) and s.pairs_test == len(test)
    assert (train.chosen_score + 1 * train.chosen_accepted > train.rejected_score + train.rejected_accepted).all()


def test_malformed_xml_names_file_and_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(StackExchangeError, match=r"Posts_malformed\.xml:6: malformed XML"):
        convert(FIX / "Posts_malformed.xml", out)
    assert not out.exists()
    # an existing folder with earlier results keeps them untouched, and holds no temp files
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    with pytest.raises(StackExchangeError):
        convert(FIX / "Posts_malformed.xml", out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["data", "stackexchange", str(FIX / "Posts.xml"), "--out", str(out), "--test-frac", "0"]) == 0
    printed = capsys.readouterr().out
    assert "posts read 19" in printed and "filtered:" in printed
    before = (out / "train.parquet").read_bytes()
    assert main(["data", "stackexchange", str(FIX / "Posts.xml"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "train.parquet").read_bytes() == before


def test_folder_and_7z_inputs_give_the_same_pairs(tmp_path):
    import py7zr

    site = tmp_path / "cooking.stackexchange.com"
    site.mkdir()
    (site / "Posts.xml").write_bytes((FIX / "Posts.xml").read_bytes())
    archive = tmp_path / "cooking.stackexchange.com.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.write(site / "Posts.xml", "Posts.xml")
    opts = ConvertOptions(test_frac=0, max_chars=200)
    convert(site, tmp_path / "a", opts)
    convert(archive, tmp_path / "b", opts)
    a, b = _pairs(tmp_path / "a"), _pairs(tmp_path / "b")
    assert len(a) == 7 and a.reset_index(drop=True).equals(b.reset_index(drop=True))
    assert set(a.site) == {"cooking.stackexchange.com"}
    with pytest.raises(StackExchangeError, match="no Posts.xml"):
        convert(tmp_path, tmp_path / "c")


def test_jsonl_output_reads_back(tmp_path):
    from worldpm_scaling.data import read_pairs

    convert(FIX / "Posts.xml", tmp_path / "o", ConvertOptions(**GOLDEN, format="jsonl"))
    df = read_pairs(tmp_path / "o")
    assert len(df) == 7 and {"prompt", "chosen", "rejected", "question_id", "site"} <= set(df.columns)


@pytest.mark.parametrize(
    "html,md",
    [
        ("<p>a &amp; b</p><p>c</p>", "a & b\n\nc"),
        ("<pre><code>if x &lt; 1:\n    y()\n</code></pre>", "```\nif x < 1:\n    y()\n```"),
        ("<p><strong>b</strong> <em>i</em> <code>&lt;t&gt;</code></p>", "**b** *i* `<t>`"),
        ("<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
        ("<ol><li>x</li><li>y</li></ol>", "1. x\n2. y"),
        ('<p><a href="http://u">l</a> <img src="i.png" alt="p"></p>', "[l](http://u) ![p](i.png)"),
        ("<blockquote><p>q</p></blockquote><h3>H</h3>", "> q\n\n### H"),
        ("plain text", "plain text"),
    ],
)
def test_html_to_markdown(html, md):
    assert html_to_markdown(html) == md
