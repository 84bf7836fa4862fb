"""The real Qwen2.5 vocabulary (built from the dashscope wheel's ranks, tests/fixtures/qwen_tokenizer.py):
known ids, the Qwen2.5 chat template, the project's rendering and reward token on it, and the
StackExchange fixture's tokens per pair measured with it, written to a stats file that `wps plan` uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from tests.fixtures.qwen_tokenizer import qwen_tokenizer  # noqa: F401  (the session fixture)
from worldpm_scaling.cli import main
from worldpm_scaling.data import read_pairs
from worldpm_scaling.data.tokenizer import load_tokenizer, prompt_text, reply_text

pytestmark = pytest.mark.unit

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "stackexchange"


@pytest.fixture(scope="module")
def hf_tok(qwen_tokenizer):  # noqa: F811 — the fixture imported above
    return AutoTokenizer.from_pretrained(str(qwen_tokenizer), local_files_only=True)


def test_known_ids_and_special_tokens(hf_tok):
    tok = hf_tok
    assert tok.encode("Hello, world!", add_special_tokens=False) == [9707, 11, 1879, 0]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert len(tok) == 151665
    assert tok.encode(" the", add_special_tokens=False) == [279]
    assert tok.encode("2024", add_special_tokens=False) == [17, 15, 17, 19]  # Qwen splits digits one by one
    text = "Ünïcödé, 你好 — tabs\tand\n\nnewlines  "
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_three_message_conversation_renders_the_qwen25_template(hf_tok, qwen_tokenizer):  # noqa: F811 — the fixture imported above
    tok = hf_tok
    conv = [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Tips for better sleep?"},
        {"role": "assistant", "content": "Keep a schedule."},
    ]
    expected = (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nTips for better sleep?<|im_end|>\n"
        "<|im_start|>assistant\nKeep a schedule.<|im_end|>\n"
    )
    assert tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False) == expected
    # the project's rendering is that string, then the reward token the release reads
    assert prompt_text(conv[:2]) + reply_text(conv[2]["content"]) == expected + "<|endoftext|>"
    assert prompt_text(conv[:2]) == tok.apply_chat_template(conv[:2], tokenize=False, add_generation_prompt=True)
    # Qwen2.5's own default system prompt when none is given; the WorldPM format keeps it empty
    assert "You are Qwen" in tok.apply_chat_template(conv[1:], tokenize=False)
    assert prompt_text(conv[1:2]) == prompt_text(conv[:2])
    ids = load_tokenizer(qwen_tokenizer).encode(prompt_text(conv[:2]) + reply_text(conv[2]["content"]))
    assert ids[:3] == [151644, 8948, 198] and ids[-3:] == [151645, 198, 151643]


def test_stackexchange_tokens_per_pair_reach_the_plan(qwen_tokenizer, tmp_path, capsys):  # noqa: F811 — the fixture imported above
    from worldpm_scaling.data.tokenized import write_token_stats

    out = tmp_path / "se"
    assert main(["data", "stackexchange", str(FIX / "Posts.xml"), "--out", str(out), "--test-frac", "0"]) == 0
    capsys.readouterr()
    stats = write_token_stats(out / "train.parquet", qwen_tokenizer, tmp_path / "stats.json")
    on_disk = json.loads((tmp_path / "stats.json").read_text())
    assert on_disk == stats and on_disk["reward_token"] == "endoftext"
    assert on_disk["sample_pairs"] == len(read_pairs(out / "train.parquet")) == 9
    # measured with the real vocabulary: the fixture's pairs are short forum posts, a few hundred tokens
    tpp = on_disk["tokens_per_pair"]
    assert 50 < tpp < 2000 and tpp != 2000
    im_end = write_token_stats(out / "train.parquet", qwen_tokenizer, tmp_path / "im_end.json", reward_token="im_end")
    assert tpp - im_end["tokens_per_pair"] == pytest.approx(4.0)  # "\n<|endoftext|>" on each of two replies

    sweep = yaml.safe_load((Path(__file__).resolve().parents[2] / "sweeps" / "demo.yaml").read_text())
    sweep["data"] = {
        "source": str(out / "train.parquet"),
        "tokenizer": str(qwen_tokenizer),
        "pairs": 64,
        "stats_file": str(tmp_path / "stats.json"),
    }
    sweep["milestones"] = {"pairs": [32, 64]}
    sweep["models"] = ["tiny-xs"]
    sweep.pop("cluster", None)
    (tmp_path / "se.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["plan", str(tmp_path / "se.yaml"), "--format", "json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert cells[0]["tokens"] == pytest.approx(64 * tpp, abs=1)  # the plan prices the measured tokens per pair

    # the same through the CLI: `wps data tokenize` builds the cache with the real tokenizer, its
    # meta.json is a stats file, and it agrees with the sampled measurement
    assert main(["data", "tokenize", str(tmp_path / "se.yaml")]) == 0
    (meta,) = list((out / ".tokcache").glob("*/meta.json"))
    assert json.loads(meta.read_text())["tokens_per_pair"] == pytest.approx(tpp)
    sweep["data"]["stats_file"] = str(meta)
    (tmp_path / "se2.yaml").write_text(yaml.safe_dump(sweep))
    capsys.readouterr()
    assert main(["plan", str(tmp_path / "se2.yaml"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tokens"] == pytest.approx(64 * tpp, abs=1)
