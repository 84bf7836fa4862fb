"""The WorldPM input format, in one place: how a conversation and a reply become the text a reward
model reads, and the same format as the Jinja chat template an exported model carries.

Input format (QwenLM/WorldPM README, "Quick Start / Key Notes"): the system prompt is empty but its
marker is kept, the conversation goes through the Qwen2.5 chat template, and the reward is read at
the hidden state of the `<|endoftext|>` token appended after the templated conversation. A prompt is
a string (one user turn) or a conversation: a list of {"role", "content"} turns, roles system / user /
assistant, ending with the user turn the reply answers. Tokenization (data/tokenizer.py), the training
caches (data/tokenized.py) and `wps export` (train/export.py) all render through this module, so
in-project and exported rewards read the same tokens. See docs/interop.md.
"""

from __future__ import annotations

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL = (ENDOFTEXT, IM_START, IM_END)
SYSTEM = ""  # empty system prompt
ASSISTANT_HEADER = f"{IM_START}assistant\n"

REWARD_TOKENS = {"endoftext": ENDOFTEXT, "im_end": IM_END}
"""`train.reward_token` → the token whose hidden state the reward head reads (the last of a reply)."""
DEFAULT_REWARD_TOKEN = "endoftext"
"""The released WorldPM models' choice (QwenLM/WorldPM README: "Reward computation uses the hidden
state of <|endoftext|> token")."""

ROLES = ("system", "user", "assistant")


class ConversationError(ValueError):
    """A prompt that is neither a string nor a well-formed conversation; names the bad turn/field."""


def _turn(text_role: str, content: str) -> str:
    return f"{IM_START}{text_role}\n{content}{IM_END}\n"


def conversation(prompt) -> list[dict]:
    """The prompt as a list of {"role", "content"} turns starting with the (empty) system turn.

    A string is one user turn. Extra keys on a turn (RMB's "language", ...) are ignored."""
    if isinstance(prompt, str):
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    if hasattr(prompt, "tolist"):  # a numpy array of turns, as pandas reads a list column from parquet
        prompt = prompt.tolist()
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise ConversationError(f"prompt: expected a string or a non-empty list of turns, got {type(prompt).__name__}")
    turns = []
    for i, t in enumerate(prompt):
        if not isinstance(t, dict) or "role" not in t or "content" not in t:
            raise ConversationError(f"prompt turn {i}: expected a dict with 'role' and 'content', got {t!r:.80}")
        if t["role"] not in ROLES:
            raise ConversationError(f"prompt turn {i}: role {t['role']!r} is not one of {ROLES}")
        if not isinstance(t["content"], str):
            raise ConversationError(f"prompt turn {i}: content must be a string, got {type(t['content']).__name__}")
        if t["role"] == "system" and i > 0:
            raise ConversationError(f"prompt turn {i}: a system turn may only come first")
        turns.append({"role": t["role"], "content": t["content"]})
    if turns[-1]["role"] != "user":
        raise ConversationError(
            f"prompt turn {len(turns) - 1}: the last turn must be the user's, got {turns[-1]['role']!r}"
        )
    if turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": SYSTEM})
    return turns


def prompt_text(prompt) -> str:
    """The chat-templated prefix of a pair, up to and including the assistant header.

    `prompt` is a string (one user turn) or a conversation (see `conversation`); either way an empty
    system turn leads unless the conversation brings its own. Equals Qwen2.5's
    `apply_chat_template(turns, add_generation_prompt=True)`."""
    return "".join(_turn(t["role"], t["content"]) for t in conversation(prompt)) + ASSISTANT_HEADER


def reply_suffix(reward_token: str = DEFAULT_REWARD_TOKEN) -> str:
    """What follows a reply's content: its `<|im_end|>`, then, for `endoftext`, the newline the Qwen2.5
    template puts after every turn and the `<|endoftext|>` the reward is read at."""
    if reward_token == "endoftext":
        return f"{IM_END}\n{ENDOFTEXT}"
    if reward_token == "im_end":
        return IM_END
    raise ValueError(f"train.reward_token must be one of {tuple(REWARD_TOKENS)}, got {reward_token!r}")


def reply_text(reply: str, reward_token: str = DEFAULT_REWARD_TOKEN) -> str:
    """The reply side of a sequence; its last token is the reward token. `prompt_text(p) +
    reply_text(r)` is exactly what `chat_template` renders for the conversation p + [assistant r], so
    in-project and exported rewards read the same tokens."""
    return reply + reply_suffix(reward_token)


def _jinja_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template(reward_token: str) -> str:
    """`prompt_text` and `reply_text` as the Jinja chat template an exported tokenizer carries (what
    transformers' `apply_chat_template` renders): Qwen2.5's template (tools left out), an empty system
    turn when the conversation has none, and without a generation prompt the reward token after the
    last turn. Built from the same pieces as the functions above; tests/unit/test_tokenizer.py renders
    both on multi-turn conversations and compares."""
    empty_system = _jinja_literal(_turn("system", SYSTEM))
    after_last = _jinja_literal(reply_suffix(reward_token)[len(IM_END) :])
    return (
        "{%- if messages[0]['role'] != 'system' %}{{- " + empty_system + " }}{%- endif %}"
        "{%- for message in messages %}"
        "{{- "
        + _jinja_literal(IM_START)
        + " + message['role'] + '\\n' + message['content'] + "
        + _jinja_literal(IM_END)
        + " }}"
        "{%- if not loop.last or add_generation_prompt %}{{- '\\n' }}{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- " + _jinja_literal(ASSISTANT_HEADER) + " }}"
        "{%- else %}{{- " + after_last + " }}{%- endif %}"
    )
