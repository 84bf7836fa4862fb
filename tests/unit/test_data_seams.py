"""The data seams the trainer calls: tokenizer, tokenized train pairs, eval sets, the synthetic forum."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from worldpm_scaling.cli import main
from worldpm_scaling.config import DataSpec, EvalSetSpec, EvalSpec
from worldpm_scaling.data import (
    EvalSetMissing,
    build_cache,
    load_eval_sets,
    load_tokenizer,
    open_train_pairs,
    prompt_text,
)
from worldpm_scaling.data.synth import SynthConfig, generate, write
from worldpm_scaling.names import CATEGORIES, EVAL_SETS

pytestmark = pytest.mark.unit

CFG = SynthConfig(pairs=1200, seed=3, eval_pairs_per_set=24, questions_xml=10, vocab_size=700)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    stats = write(CFG, out)
    return out, stats


def _data(out, **kw) -> DataSpec:
    return DataSpec(source=str(out / "train.parquet"), tokenizer=str(out / "tokenizer.json"), pairs=1200, **kw)


def test_synth_writes_every_artifact(synth):
    out, stats = synth
    assert sorted(p.name for p in (out / "evals").iterdir()) == sorted(f"{n}.jsonl" for n in EVAL_SETS)
    for name in ("train.parquet", "tokenizer.json", "stats.json", "Posts.xml", "README.md"):
        assert (out / name).is_file()
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["tokens_per_pair"] == pytest.approx(stats["tokens_per_pair"])
    assert 60 < on_disk["tokens_per_pair"] < 400
    assert on_disk["synth"]["style_rate"] == CFG.style_rate


def test_tokenizer_has_the_chat_specials(synth):
    out, _ = synth
    tok = load_tokenizer(out / "tokenizer.json")
    assert tok.vocab_size <= 8192
    ids = tok.encode(prompt_text("hello there"))
    assert ids[0] == tok.encode("<|im_start|>")[0] and len(tok.encode("<|im_end|>")) == 1
    assert tok.eos_id == tok.encode("<|im_end|>")[0] and tok.pad_id == tok.encode("<|endoftext|>")[0]
    assert tok.pad_id != tok.eos_id
    assert tok.decode(ids) == prompt_text("hello there")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(out / "nowhere")


def test_train_pairs_shuffle_shard_budget_and_fit(synth):
    out, _ = synth
    data = _data(out)
    a = open_train_pairs(data, seed=0, max_pairs=1000, ctx_len=64)
    b = open_train_pairs(data, seed=0, max_pairs=1000, ctx_len=64)
    c = open_train_pairs(data, seed=1, max_pairs=1000, ctx_len=64)
    assert len(a) == 1000
    assert list(a.order) == list(b.order) and list(a.order) != list(c.order)
    shards = [open_train_pairs(data, seed=0, rank=r, world=3, max_pairs=1000, ctx_len=64) for r in range(3)]
    assert sum(len(s) for s in shards) == 1000
    ids = [set(s.order.tolist()) for s in shards]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and set().union(*ids) == set(a.order.tolist())
    tok = load_tokenizer(data.tokenizer)
    header = np.asarray(tok.encode("<|im_end|>\n<|im_start|>assistant\n"))
    long_prompts = 0
    for p in a[:200]:
        assert len(p.prompt) + len(p.chosen) <= 64 and len(p.prompt) + len(p.rejected) <= 64
        assert p.chosen[-1] == tok.reward_id() == tok.pad_id and p.rejected[-1] == tok.reward_id()  # <|endoftext|>
        assert (p.prompt[-len(header) :] == header).all()  # cut from the left: the assistant header stays
        long_prompts += p.prompt[0] != tok.encode("<|im_start|>")[0]
    assert long_prompts > 0  # ctx 64 is short enough that some prompts were cut
    full = open_train_pairs(data, seed=0, ctx_len=4096)
    assert len(full) == 1200
    capped = open_train_pairs(_data(out, max_prompt_tokens=8), seed=0, ctx_len=4096)
    assert max(len(p.prompt) for p in capped[:100]) <= 8


def test_cache_is_built_once_and_survives_a_leftover_build(synth):
    out, _ = synth
    tok = load_tokenizer(out / "tokenizer.json")
    first = build_cache(out / "train.parquet", tok)
    (first.parent / ".build-crashed").mkdir(exist_ok=True)  # a job killed mid-build
    mtime = (first / "tokens.npy").stat().st_mtime_ns
    assert build_cache(out / "train.parquet", tok) == first
    assert (first / "tokens.npy").stat().st_mtime_ns == mtime
    meta = json.loads((first / "meta.json").read_text())
    assert meta["pairs"] == 1200


def test_eval_sets_by_category_cap_and_missing(synth, tmp_path):
    out, _ = synth
    tok = load_tokenizer(out / "tokenizer.json")
    spec = EvalSpec(dir=str(out / "evals"), max_pairs_per_set=10)
    sets = load_eval_sets(spec, tokenizer=tok, ctx_len=128)
    assert set(sets) == set(EVAL_SETS)
    assert {s.category for s in sets.values()} == set(CATEGORIES)
    assert all(s.category == EVAL_SETS[n] and len(s.pairs) == 10 for n, s in sets.items())
    # a user set is registered by name, category and path
    extra = EvalSpec(
        dir=str(out / "evals"),
        sets=("mine",),
        extra={"mine": EvalSetSpec(category="objective", path=str(out / "evals" / "rmbench_math.jsonl"))},
    )
    assert load_eval_sets(extra, tokenizer=tok, ctx_len=128)["mine"].category == "objective"
    with pytest.raises(EvalSetMissing, match=re.escape(str(tmp_path / "rmb_helpfulness.jsonl"))):
        load_eval_sets(EvalSpec(dir=str(tmp_path), sets=("rmb_helpfulness",)), tokenizer=tok, ctx_len=128)


def test_cli_evals_and_synth(synth, tmp_path, capsys):
    out, _ = synth
    assert main(["data", "evals", "--dir", str(out / "evals"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12 and all(r["status"] == "found" and r["pairs"] == 24 for r in rows)
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "rmb_helpfulness.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    assert main(["data", "evals", "--dir", str(tmp_path / "ev"), "--format", "json"]) == 1
    rows = {r["set"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["rmb_helpfulness"]["status"] == "found" and rows["helpsteer2"]["status"] == "missing"
    assert rows["helpsteer2"]["path"] == str(tmp_path / "ev" / "helpsteer2.jsonl")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "train.parquet").write_text("not mine")
    assert main(["data", "synth", "--pairs", "10", "--out", str(tmp_path / "s")]) == 2
    assert (tmp_path / "s" / "train.parquet").read_text() == "not mine"


# -- the planted signals ---------------------------------------------------------------------------


def _bow(text: str) -> Counter:
    return Counter(re.findall(r"[a-z]+", text.lower()))


def _features(pairs, vocab, rng):
    x = np.zeros((len(pairs), len(vocab)))
    y = rng.random(len(pairs)) < 0.5  # orientation: y = "A is the chosen reply"
    for i, p in enumerate(pairs):
        a, b = (p["chosen"], p["rejected"]) if y[i] else (p["rejected"], p["chosen"])
        for w, n in _bow(a).items():
            if w in vocab:
                x[i, vocab[w]] += n
        for w, n in _bow(b).items():
            if w in vocab:
                x[i, vocab[w]] -= n
    return x, y.astype(float)


def test_bag_of_words_learns_adversarial_but_not_subjective():
    """A linear bag-of-words baseline (ridge regression on word-count differences): the quality signal
    is learnable and transfers to the adversarial sets although style points the wrong way there;
    coin-flip (subjective) labels stay at chance; the key→value (objective) signal needs an interaction
    a bag of words cannot represent, so it stays near chance too (a model must attend across)."""
    train, evals, _ = generate(SynthConfig(pairs=2000, seed=5, eval_pairs_per_set=150))
    vocab = {w: i for i, w in enumerate(sorted({w for p in train for w in _bow(p["chosen"] + " " + p["rejected"])}))}
    rng = np.random.default_rng(0)
    x, y = _features(train, vocab, rng)
    w = np.linalg.solve(x.T @ x + 10 * np.eye(x.shape[1]), x.T @ (2 * y - 1))
    acc = {}
    for cat in CATEGORIES:
        rows = [p for n, ps in evals.items() if EVAL_SETS[n] == cat for p in ps]
        xe, ye = _features(rows, vocab, rng)
        acc[cat] = float(((xe @ w > 0) == (ye > 0.5)).mean())
    assert acc["adversarial"] > 0.75, acc
    assert abs(acc["subjective"] - 0.5) < 0.08, acc
    assert abs(acc["objective"] - 0.5) < 0.08, acc


def test_style_cues_follow_style_rate_in_train_and_point_wrong_in_adversarial():
    # long_extra_words well above the reply-length spread, so "given the extra words" means "longer"
    cfg = SynthConfig(pairs=4000, seed=2, eval_pairs_per_set=200, style_rate=0.8, long_extra_words=(8, 20))
    train, evals, _ = generate(cfg)
    longer = np.mean([len(p["chosen"]) > len(p["rejected"]) for p in train])
    md = np.mean([p["chosen_markdown"] and not p["rejected_markdown"] for p in train]) / np.mean(
        [p["chosen_markdown"] != p["rejected_markdown"] for p in train]
    )
    assert abs(longer - 0.8) < 0.06 and abs(md - 0.8) < 0.04
    adv = [p for n, ps in evals.items() if EVAL_SETS[n] == "adversarial" for p in ps]
    assert np.mean([len(p["rejected"]) > len(p["chosen"]) for p in adv]) > 0.85
    assert all(p["rejected_markdown"] and not p["chosen_markdown"] for p in adv)
    neutral = generate(
        SynthConfig(pairs=4000, seed=2, eval_pairs_per_set=10, style_rate=0.5, long_extra_words=(8, 20))
    )[0]
    assert abs(np.mean([len(p["chosen"]) > len(p["rejected"]) for p in neutral]) - 0.5) < 0.05


def test_replies_end_alike_and_fact_answers_state_key_and_value():
    """The reward is read at a reply's last token: markdown and plain replies must end the same way,
    or a random-init model gets a markdown bias for free. answer_form=fact puts `key value` in the reply."""
    train, evals, world = generate(SynthConfig(pairs=300, seed=3, eval_pairs_per_set=20, answer_form="fact"))
    assert all(p[side].endswith(".") for p in train for side in ("chosen", "rejected"))
    objective = [p for n, ps in evals.items() if EVAL_SETS[n] == "objective" for p in ps]
    for p in objective:
        key = next(k for k in world.keys if f"about {k}" in p["prompt"])
        assert f"{key} {world.answer_of[key]}" in p["chosen"].replace("\n- ", " ").replace("**", "")
        stated = [v for v in world.values if f"{key} {v}" in p["rejected"].replace("\n- ", " ").replace("**", "")]
        assert len(stated) == 1 and stated[0] != world.answer_of[key]
    with pytest.raises(ValueError, match="answer_form"):
        SynthConfig(answer_form="oracle")


def test_zipf_markers_rare_words_appear_only_with_more_data():
    """quality_zipf > 0 draws marker words ∝ rank^-s: the top word dominates and new words keep
    appearing as data grows (so a model's quality loss keeps falling instead of saturating once a
    handful of words is known); the uniform default meets every word almost at once."""
    import collections

    def seen_by(cfg, ns):
        train, _, world = generate(cfg)
        good = set(world.good)
        words = [[w for w in _bow(p["chosen"] + " " + p["rejected"]) if w in good] for p in train]
        return (
            [len({w for ws in words[:n] for w in ws}) for n in ns],
            collections.Counter(w for ws in words for w in ws),
            world,
        )

    ns = (100, 400, 1600, 6400)
    seen, counts, world = seen_by(
        SynthConfig(pairs=6400, seed=1, eval_pairs_per_set=10, quality_words=256, quality_zipf=1.5), ns
    )
    assert seen[0] < seen[1] < seen[2] < seen[3] < 256, seen
    assert 2.0 < counts[world.good[0]] / counts[world.good[1]] < 3.8  # 2^1.5 ≈ 2.83
    uniform, _, _ = seen_by(
        SynthConfig(pairs=6400, seed=1, eval_pairs_per_set=10, quality_words=16, quality_zipf=0.0), ns
    )
    assert uniform[0] == uniform[-1] == 16
    with pytest.raises(ValueError, match="quality_zipf"):
        SynthConfig(quality_zipf=-1)


# -- bad input: named errors, not tracebacks (issue 19's table) -------------------------------------


def test_bad_pairs_files_are_named_errors(synth, tmp_path):
    import pandas as pd

    from worldpm_scaling.data import PairsFileError, iter_pairs, read_pairs

    out, _ = synth
    tok = load_tokenizer(out / "tokenizer.json")
    pd.DataFrame({"prompt": ["p"], "rejected": ["r"]}).to_parquet(tmp_path / "nochosen.parquet")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00" * 64)
    (tmp_path / "empty.parquet").write_bytes(b"")
    (tmp_path / "pairs.csv").write_text("prompt,chosen,rejected\np,c,r\n")
    (tmp_path / "null.jsonl").write_text(
        '{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p", "chosen": null, "rejected": "r"}\n'
    )
    (tmp_path / "int.jsonl").write_text('{"prompt": "p", "chosen": 3, "rejected": "r"}\n')
    (tmp_path / "turns.jsonl").write_text(
        '{"prompt": [{"role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "a"}], "chosen": "c", "rejected": "r"}\n'
    )
    cases = {
        "nochosen.parquet": r"nochosen.parquet: missing columns \['chosen'\]",
        "corrupt.parquet": "corrupt.parquet: not a readable Parquet file",
        "empty.parquet": r"empty.parquet: empty file \(0 bytes\)",
        "pairs.csv": "pairs.csv: a pairs file must be .parquet or .jsonl, not .csv",
        "null.jsonl": "null.jsonl:2: field 'chosen' must be a string, got null",
        "int.jsonl": "int.jsonl:1: field 'chosen' must be a string, got int",
        "turns.jsonl": "turns.jsonl:1: field 'prompt': prompt turn 1: the last turn must be the user's",
    }
    for name, match in cases.items():
        with pytest.raises(PairsFileError, match=match):
            list(iter_pairs(tmp_path / name))
        with pytest.raises(PairsFileError, match=match):
            read_pairs(tmp_path / name)
        with pytest.raises(PairsFileError, match=match):  # the trainer's path: tokenize-once cache
            build_cache(tmp_path / name, tok)
    assert not list(tmp_path.glob(".tokcache/*/meta.json"))  # no half cache left behind


def test_cli_evals_bad_json_line_is_unreadable_not_found(tmp_path, capsys):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "offsetbias.jsonl").write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a", "rejected": "b"\n'
    )
    (ev / "helpsteer2.jsonl").write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": 7, "rejected": "b"}\n'
    )
    assert main(["data", "evals", "--dir", str(ev), "--format", "json"]) == 2
    rows = {r["set"]: r for r in json.loads(capsys.readouterr().out)}
    assert (
        rows["offsetbias"]["status"].startswith("unreadable:")
        and "offsetbias.jsonl:2: bad JSON" in rows["offsetbias"]["status"]
    )
    assert "helpsteer2.jsonl:2: field 'chosen' must be a string, got int" in rows["helpsteer2"]["status"]
    assert rows["offsetbias"]["pairs"] is None and rows["rmb_helpfulness"]["status"] == "missing"


def test_conversation_prompts_round_trip_parquet_and_cache(synth, tmp_path):
    """A multi-turn prompt in a training file: Parquet stores it as turns (strings become one user turn),
    and the tokenized cache holds the whole templated conversation."""
    import pandas as pd

    from worldpm_scaling.data import read_pairs, write_pairs

    out, _ = synth
    tok = load_tokenizer(out / "tokenizer.json")
    conv = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    df = pd.DataFrame({"prompt": ["plain question", conv], "chosen": ["good", "fine"], "rejected": ["bad", "poor"]})
    write_pairs(df, tmp_path / "train.parquet")
    back = read_pairs(tmp_path / "train.parquet")
    assert back["prompt"][0] == "plain question" and back["prompt"][1] == conv
    folder = build_cache(tmp_path / "train.parquet", tok)
    pairs = open_train_pairs(
        DataSpec(source=str(tmp_path / "train.parquet"), tokenizer=str(out / "tokenizer.json"), pairs=2),
        seed=0,
        ctx_len=4096,
    )
    texts = sorted(tok.decode(p.prompt.tolist()) for p in pairs)
    assert folder.is_dir() and prompt_text(conv) in texts and prompt_text("plain question") in texts
