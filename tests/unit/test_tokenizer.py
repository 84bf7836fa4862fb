"""Prompt rendering: strings and multi-turn conversations in the WorldPM release's format."""

from __future__ import annotations

import numpy as np
import pytest

from worldpm_scaling.data.tokenizer import ConversationError, conversation, prompt_text

pytestmark = pytest.mark.unit


def test_string_prompt_is_one_user_turn_after_an_empty_system_turn():
    assert prompt_text("hi") == ("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                                 "<|im_start|>assistant\n")
    assert prompt_text([{"role": "user", "content": "hi"}]) == prompt_text("hi")


def test_multi_turn_conversation_renders_every_turn_in_order():
    conv = [{"role": "user", "content": "What is 2+2?", "language": "en"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And times 3?"}]
    expected = ("<|im_start|>system\n<|im_end|>\n"
                "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                "<|im_start|>assistant\n4.<|im_end|>\n"
                "<|im_start|>user\nAnd times 3?<|im_end|>\n"
                "<|im_start|>assistant\n")
    assert prompt_text(conv) == expected
    # a conversation's own system turn is kept instead of the empty one; a numpy array (parquet) works
    own = [{"role": "system", "content": "Be brief."}] + conv
    assert prompt_text(np.array(own, dtype=object)) == expected.replace("system\n<|im_end|>",
                                                                         "system\nBe brief.<|im_end|>")
    assert [t["role"] for t in conversation(conv)] == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize("bad, match", [
    ([], "non-empty list"),
    (7, "got int"),
    ([{"role": "user"}], "turn 0: expected a dict with 'role' and 'content'"),
    ([{"role": "tool", "content": "x"}], "turn 0: role 'tool'"),
    ([{"role": "user", "content": 3}], "turn 0: content must be a string"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "turn 1: the last turn must be"),
    ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
     "turn 1: a system turn may only come first"),
])
def test_bad_conversations_are_named_errors(bad, match):
    with pytest.raises(ConversationError, match=match):
        prompt_text(bad)
    assert issubclass(ConversationError, ValueError)  # the CLI maps ValueError to exit 2
