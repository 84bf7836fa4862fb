"""Bad input across the CLI, in process: each case of issue 19's table that used to end in a traceback
or a silently wrong result is a named error (the file, field or flag), exit 2, and nothing already
written is lost. (Read-only folders and concurrent trainers need real processes:
tests/integration/test_bad_input.py and test_train_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from worldpm_scaling.cli import main
from worldpm_scaling.config import load_sweep
from worldpm_scaling.data import TokenizerError, load_tokenizer, train_bpe

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

BASE = """name: bad
models: [tiny-xs]
data: {{source: {source}, pairs: 256, tokens_per_pair: 100{tok}}}
milestones: {{start_log2: 6}}
train: {{global_batch_pairs: 32, micro_batch_pairs: 16}}
tracking: {{backend: none}}
out_dir: {out}
"""


def sweep(
    tmp_path: Path, extra: str = "", *, source: str = "x.parquet", tok: str | None = None, models: str | None = None
) -> Path:
    text = BASE.format(source=source, tok=f", tokenizer: {tok}" if tok else "", out=tmp_path / "out") + extra
    if models:
        text = text.replace("models: [tiny-xs]", f"models: {models}")
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def run(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


# -- YAML key given twice ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,field,line",
    [
        ("name: a\nname: b\nmodels: [tiny-xs]\ndata: {source: x, tokens_per_pair: 1}\n", "name", 2),
        (
            "name: a\nmodels: [tiny-xs]\ndata:\n  source: x\n  pairs: 1024\n  tokens_per_pair: 1\n  pairs: 2048\n",
            "data.pairs",
            7,
        ),
    ],
)
def test_a_key_given_twice_is_a_named_error(tmp_path, capsys, text, field, line):
    p = tmp_path / "dup.yaml"
    p.write_text(text)
    rc, err = run(capsys, "plan", p)
    assert rc == 2 and err.startswith(f"error: {p}:{line}: {field}: key given twice"), err


# -- eval.extra ----------------------------------------------------------------------------------
EXTRA = "eval: {{{sets}extra: {{mine: {{category: objective, path: mine.jsonl}}}}}}\n"


def test_an_extra_eval_set_missing_from_eval_sets_is_a_named_error(tmp_path, capsys):
    rc, err = run(capsys, "plan", sweep(tmp_path, EXTRA.format(sets="sets: [helpsteer2], ")))
    assert rc == 2 and "eval.extra.mine" in err and "add 'mine' to eval.sets" in err, err


def test_extra_eval_sets_are_scored_when_eval_sets_is_left_out(tmp_path):
    spec = load_sweep(sweep(tmp_path, EXTRA.format(sets="")))
    assert spec.eval.sets[-1] == "mine" and len(spec.eval.sets) == 13  # the 12 WorldPM sets + the user's


# -- data.source ---------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["synthetic", None])
def test_the_synthetic_placeholder_source_is_refused_by_plan(tmp_path, capsys, source):
    p = sweep(tmp_path, source=source or "x")
    if source is None:  # left out: the DataSpec default, the same placeholder
        p.write_text(p.read_text().replace("source: x, ", ""))
    rc, err = run(capsys, "plan", p)
    assert rc == 2 and "data.source" in err and "wps data synth" in err, err


# -- wps data synth ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,flag",
    [
        (["--pairs", "0"], "--pairs"),
        (["--style-rate", "1.5"], "--style-rate"),
        (["--prompt-words", "20", "6"], "--prompt-words"),
        (["--prompt-words", "0", "3"], "--prompt-words"),
    ],
)
def test_synth_bad_knobs_are_named_and_leave_no_folder(tmp_path, capsys, args, flag):
    out = tmp_path / "synth"
    rc, err = run(capsys, "data", "synth", "--out", out, *args)
    assert rc == 2 and err.startswith("error:") and flag in err, err
    assert not out.exists(), "a failed synth left a folder behind"


# -- wps data stackexchange: a dump with no pairs ---------------------------------------------------
NO_ANSWERS = """<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" CreationDate="2015-03-01T10:00:00.000" Score="3" Title="Q?" Body="&lt;p&gt;q&lt;/p&gt;" />
  <row Id="2" PostTypeId="1" CreationDate="2015-03-01T10:00:00.000" Score="1" Title="R?" Body="&lt;p&gt;r&lt;/p&gt;" />
</posts>
"""


def test_a_dump_with_zero_pairs_is_an_error_and_writes_nothing(tmp_path, capsys):
    dump = tmp_path / "Posts.xml"
    dump.write_text(NO_ANSWERS)
    out = tmp_path / "se"
    rc, err = run(capsys, "data", "stackexchange", dump, "--out", out)
    assert rc == 2 and "yielded 0 pairs" in err and "2 posts read" in err, err
    assert not out.exists()
    # with --force over an earlier conversion: the earlier outputs stay
    rc, _ = run(capsys, "data", "stackexchange", REPO / "tests/fixtures/stackexchange/Posts.xml", "--out", out)
    assert rc == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, err = run(capsys, "data", "stackexchange", dump, "--out", out, "--force")
    assert rc == 2 and "existing outputs are kept" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- tokenizers ------------------------------------------------------------------------------------
def _no_special_tokens(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        ["a few words of text"] * 4, trainer=trainers.BpeTrainer(vocab_size=300, show_progress=False)
    )
    tok.save(str(path))
    return path


@pytest.mark.parametrize("case", ["no_special_tokens", "corrupt_json", "empty_folder"])
def test_bad_tokenizers_are_named_errors(tmp_path, capsys, case):
    if case == "no_special_tokens":
        tok = _no_special_tokens(tmp_path / "tokenizer.json")
        want = "lacks the special tokens"
    elif case == "corrupt_json":
        tok = tmp_path / "tokenizer.json"
        tok.write_text('{"version": "1.0", "model": ')
        want = "not a readable tokenizer.json"
    else:
        tok = tmp_path / "tok"
        tok.mkdir()
        want = "holds no tokenizer"
    with pytest.raises(TokenizerError, match=want):
        load_tokenizer(tok)
    rc, err = run(capsys, "train", sweep(tmp_path, tok=str(tok)), "--cell", "0")
    assert rc == 2 and err.startswith("error:") and str(tok) in err and want in err, err
    assert not (tmp_path / "out").exists(), "a bad tokenizer must fail before anything is written"


def test_a_tokenizer_larger_than_the_model_vocabulary_is_named_before_training(tmp_path, capsys):
    tok = train_bpe(
        [f"word{i} and more words {i * 7}" for i in range(200)], tmp_path / "tokenizer.json", vocab_size=600
    )
    assert tok.vocab_size > 256
    shape = (
        "[{name: small-vocab, hidden: 32, layers: 2, heads: 2, kv_heads: 1, intermediate: 64, vocab: 256, "
        "tie_embeddings: true, max_positions: 4096, rope_theta: 10000.0}]"
    )
    rc, err = run(capsys, "train", sweep(tmp_path, tok=str(tmp_path / "tokenizer.json"), models=shape), "--cell", "0")
    assert rc == 2 and "data.tokenizer" in err and f"{tok.vocab_size:,} tokens" in err and "256" in err, err
    assert not (tmp_path / "out").exists()


def test_a_named_error_is_one_line_without_a_traceback(tmp_path, capsys):
    rc, err = run(capsys, "data", "synth", "--out", tmp_path / "x", "--pairs", "-1")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: pairs (--pairs) must be positive, got -1")
