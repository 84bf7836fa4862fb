"""Tokenizers and the Qwen2.5 chat template, in the WorldPM release's input format.

A user with a real Qwen2.5 checkpoint points `data.tokenizer` at its local folder (AutoTokenizer,
never the hub); the demo and the tests use a byte-level BPE trained here on the generated corpus,
with the same special tokens. The prompt side of a pair is the chat-formatted prefix up to the
assistant header; the reply side is the assistant turn and the reward token.

Input format (QwenLM/WorldPM README, "Quick Start / Key Notes"): the system prompt is empty but its
marker is kept, the conversation goes through the Qwen2.5 chat template, and the reward is read at
the hidden state of the `<|endoftext|>` token appended after the templated conversation. A prompt is
a string (one user turn) or a conversation: a list of {"role", "content"} turns, roles system / user /
assistant, ending with the user turn the reply answers. See docs/interop.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SYSTEM = ""  # empty system prompt

REWARD_TOKENS = {"endoftext": "<|endoftext|>", "im_end": "<|im_end|>"}
"""`train.reward_token` → the token whose hidden state the reward head reads (the last of a reply)."""
DEFAULT_REWARD_TOKEN = "endoftext"
"""The released WorldPM models' choice (QwenLM/WorldPM README: "Reward computation uses the hidden
state of <|endoftext|> token")."""


ROLES = ("system", "user", "assistant")


class ConversationError(ValueError):
    """A prompt that is neither a string nor a well-formed conversation; names the bad turn/field."""


def _turn(text_role: str, content: str) -> str:
    return f"<|im_start|>{text_role}\n{content}<|im_end|>\n"


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
        raise ConversationError(f"prompt turn {len(turns) - 1}: the last turn must be the user's, "
                                f"got {turns[-1]['role']!r}")
    if turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": SYSTEM})
    return turns


def prompt_text(prompt) -> str:
    """The chat-templated prefix of a pair, up to and including the assistant header.

    `prompt` is a string (one user turn) or a conversation (see `conversation`); either way an empty
    system turn leads unless the conversation brings its own. Equals Qwen2.5's
    `apply_chat_template(turns, add_generation_prompt=True)`."""
    return "".join(_turn(t["role"], t["content"]) for t in conversation(prompt)) + "<|im_start|>assistant\n"


def reply_suffix(reward_token: str = DEFAULT_REWARD_TOKEN) -> str:
    """What follows a reply's content: its `<|im_end|>`, then, for `endoftext`, the newline the Qwen2.5
    template puts after every turn and the `<|endoftext|>` the reward is read at."""
    if reward_token == "endoftext":
        return "<|im_end|>\n<|endoftext|>"
    if reward_token == "im_end":
        return "<|im_end|>"
    raise ValueError(f"train.reward_token must be one of {tuple(REWARD_TOKENS)}, got {reward_token!r}")


def reply_text(reply: str, reward_token: str = DEFAULT_REWARD_TOKEN) -> str:
    """The reply side of a sequence; its last token is the reward token. `prompt_text(p) +
    reply_text(r)` is exactly what the exported model's chat template renders for the conversation
    p + [assistant r] (train/export.py), so in-project and exported rewards read the same tokens."""
    return reply + reply_suffix(reward_token)


class TokenizerError(FileNotFoundError, ValueError):
    """A tokenizer path that is unset or not there (a FileNotFoundError; a ValueError so the CLI
    reports it as bad input)."""


class Tok:
    """The few things the pipeline needs of a tokenizer, over `tokenizers` or `transformers`."""

    def __init__(self, backend, *, path: str):
        self._b = backend
        self.path = path
        if hasattr(backend, "token_to_id"):  # tokenizers.Tokenizer
            self._encode = lambda s: backend.encode(s, add_special_tokens=False).ids
            self._batch = lambda ss: [e.ids for e in backend.encode_batch(ss, add_special_tokens=False)]
            self.vocab_size = backend.get_vocab_size()
            tid = backend.token_to_id
            self.decode = lambda ids: backend.decode(ids, skip_special_tokens=False)
        else:  # a transformers tokenizer
            self._encode = lambda s: backend.encode(s, add_special_tokens=False)
            self._batch = lambda ss: backend(ss, add_special_tokens=False)["input_ids"]
            self.vocab_size = len(backend)
            tid = backend.convert_tokens_to_ids
            self.decode = lambda ids: backend.decode(ids)
        back = backend.id_to_token if hasattr(backend, "id_to_token") else backend.convert_ids_to_tokens
        self.eos_id = tid("<|im_end|>")
        self.pad_id = tid("<|endoftext|>")
        # an unknown token maps to None (tokenizers) or to the unk id (transformers): it must map back to
        # itself (Qwen2Tokenizer's default unk *is* <|endoftext|>, so comparing with unk_token_id is not it)
        if any(i is None or back(i) != t for t, i in (("<|im_end|>", self.eos_id), ("<|endoftext|>", self.pad_id))):
            raise TokenizerError(f"{path}: tokenizer lacks the special tokens {SPECIAL} (data.tokenizer)")

    def reward_id(self, reward_token: str = DEFAULT_REWARD_TOKEN) -> int:
        """The id of the token the reward is read at (`train.reward_token`)."""
        reply_suffix(reward_token)  # validates the name
        return self.pad_id if reward_token == "endoftext" else self.eos_id

    def encode(self, text: str) -> list[int]:
        return self._encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._batch(texts)


def load_tokenizer(path: str | Path | None) -> Tok:
    """A tokenizer.json (tokenizers) or a local HF tokenizer folder (transformers, offline)."""
    if path is None:
        raise TokenizerError("data.tokenizer is not set: give a tokenizer.json or a local tokenizer folder")
    p = Path(path)
    if p.is_file():
        from tokenizers import Tokenizer

        try:
            backend = Tokenizer.from_file(str(p))
        except Exception as e:  # noqa: BLE001 — the Rust parser raises a bare Exception
            raise TokenizerError(f"{p}: not a readable tokenizer.json (data.tokenizer): {str(e)[:200]}") from None
        return Tok(backend, path=str(p))
    if p.is_dir():
        if (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
            return load_tokenizer(p / "tokenizer.json")
        if not any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json",
                                                 "tokenizer.model")):
            raise TokenizerError(f"{p}: folder holds no tokenizer (no tokenizer.json or tokenizer_config.json; "
                                 "data.tokenizer)")
        from transformers import AutoTokenizer

        try:
            backend = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError, TypeError) as e:
            raise TokenizerError(f"{p}: cannot load the tokenizer folder (data.tokenizer): {str(e)[:200]}") from None
        return Tok(backend, path=str(p))
    raise TokenizerError(f"{p}: no tokenizer file or folder")


def train_bpe(texts: Iterable[str], out: str | Path, *, vocab_size: int = 4096) -> Tok:
    """Train a byte-level BPE with the chat special tokens; write tokenizer.json atomically."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(out)
    return Tok(tok, path=str(out))


def write_token_stats(pairs: str | Path, tokenizer: str | Path, out: str | Path, *,
                      reward_token: str = DEFAULT_REWARD_TOKEN, sample: int = 10_000) -> dict:
    """Measure tokens per pair on (up to `sample` of) a pairs file with a real tokenizer, in the training
    format (chat template, reward token), and write the stats JSON a sweep's `data.stats_file` reads
    (`tokens_per_pair` = mean tokens of prompt+chosen and prompt+rejected together). Returns it."""
    import json

    from .io import iter_pairs
    from .tokenized import tokenized_stats

    rows = []
    for r in iter_pairs(pairs):
        rows.append(r)
        if len(rows) >= sample:
            break
    if not rows:
        raise ValueError(f"{pairs}: no pairs to measure")
    stats = {**tokenized_stats(rows, load_tokenizer(tokenizer), reward_token), "source": str(pairs)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats, indent=1))
    tmp.replace(out)
    return stats
