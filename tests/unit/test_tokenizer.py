"""Prompt rendering: strings and multi-turn conversations in the WorldPM release's format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from worldpm_scaling.data.tokenizer import ConversationError, conversation, prompt_text

pytestmark = pytest.mark.unit


def test_string_prompt_is_one_user_turn_after_an_empty_system_turn():
    assert prompt_text("hi") == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompt_text([{"role": "user", "content": "hi"}]) == prompt_text("hi")


def test_multi_turn_conversation_renders_every_turn_in_order():
    conv = [
        {"role": "user", "content": "What is 2+2?", "language": "en"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And times 3?"},
    ]
    expected = (
        "<|im_start|>system\n<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4.<|im_end|>\n"
        "<|im_start|>user\nAnd times 3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert prompt_text(conv) == expected
    # a conversation's own system turn is kept instead of the empty one; a numpy array (parquet) works
    own = [{"role": "system", "content": "Be brief."}] + conv
    assert prompt_text(np.array(own, dtype=object)) == expected.replace(
        "system\n<|im_end|>", "system\nBe brief.<|im_end|>"
    )
    assert [t["role"] for t in conversation(conv)] == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "non-empty list"),
        (7, "got int"),
        ([{"role": "user"}], "turn 0: expected a dict with 'role' and 'content'"),
        ([{"role": "tool", "content": "x"}], "turn 0: role 'tool'"),
        ([{"role": "user", "content": 3}], "turn 0: content must be a string"),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "turn 1: the last turn must be"),
        (
            [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
            "turn 1: a system turn may only come first",
        ),
    ],
)
def test_bad_conversations_are_named_errors(bad, match):
    with pytest.raises(ConversationError, match=match):
        prompt_text(bad)
    assert issubclass(ConversationError, ValueError)  # the CLI maps ValueError to exit 2


def test_reply_ends_with_the_reward_token():
    from worldpm_scaling.data.tokenizer import reply_text

    assert reply_text("ok") == "ok<|im_end|>\n<|endoftext|>"  # the release's default
    assert reply_text("ok", "im_end") == "ok<|im_end|>"  # the old position, an option
    with pytest.raises(ValueError, match="train.reward_token"):
        reply_text("ok", "eos")


def test_cache_keys_on_the_reward_token(tmp_path):
    from worldpm_scaling.data import build_cache, train_bpe, write_pairs
    from worldpm_scaling.data.tokenized import TokenizedPairs

    rows = [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"} for i in range(4)]
    src = tmp_path / "p.jsonl"
    write_pairs(pd.DataFrame(rows), src)
    tok = train_bpe([r["prompt"] + r["chosen"] + r["rejected"] for r in rows], tmp_path / "tok.json", vocab_size=300)
    a = build_cache(src, tok, reward_token="endoftext")
    b = build_cache(src, tok, reward_token="im_end")
    assert a != b
    pa = TokenizedPairs(a, seed=0, ctx_len=64)[0]
    pb = TokenizedPairs(b, seed=0, ctx_len=64)[0]
    assert pa.chosen[-1] == tok.pad_id == tok.reward_id("endoftext")
    assert pb.chosen[-1] == tok.eos_id == tok.reward_id("im_end")
    assert len(pa.chosen) == len(pb.chosen) + 2  # "\n" and <|endoftext|>


@pytest.mark.parametrize("reward_token", ["endoftext", "im_end"])
def test_exported_chat_template_renders_the_training_format(reward_token):
    """The template `wps export` writes renders prompt_text(turns[:-1]) + reply_text(last) exactly, so the
    exported model reads the tokens the cell was trained on (rendered as transformers renders it)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from worldpm_scaling.data.chat import chat_template, reply_text
    from worldpm_scaling.train import export

    assert export.chat_template is chat_template  # the exporter writes the one format, not a copy
    tpl = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(chat_template(reward_token))
    convs = [
        [{"role": "system", "content": ""}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2\n\nmore"},
        ],
        [
            {"role": "system", "content": "Be brief. Quote 'this' \\ that."},
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "q3 {{ not jinja }}"},
            {"role": "assistant", "content": "a3"},
        ],
    ]
    for conv in convs:
        text = tpl.render(messages=conv, add_generation_prompt=False)
        assert text == prompt_text(conv[:-1]) + reply_text(conv[-1]["content"], reward_token)
        assert tpl.render(messages=conv[:-1], add_generation_prompt=True) == prompt_text(conv[:-1])
    assert text.endswith("<|im_end|>\n<|endoftext|>" if reward_token == "endoftext" else "a3<|im_end|>")
