"""Tokenizers: a local tokenizer.json or HF tokenizer folder behind one small interface (`Tok`).

A user with a real Qwen2.5 checkpoint points `data.tokenizer` at its local folder (AutoTokenizer,
never the hub); the demo and the tests use a byte-level BPE trained here on the generated corpus,
with the same special tokens. The text a pair becomes (chat format, reward token) is data/chat.py's;
its names are re-exported here for the modules that import them from the tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .chat import (  # noqa: F401 — re-exported: the format's names, where users have imported them
    DEFAULT_REWARD_TOKEN,
    REWARD_TOKENS,
    ROLES,
    SPECIAL,
    SYSTEM,
    ConversationError,
    conversation,
    prompt_text,
    reply_suffix,
    reply_text,
)


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


def encode_rows(
    rows: list[dict], tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """The ids of pairs in the training format: (prompts, chosen replies, rejected replies)."""
    return (
        tok.encode_batch([prompt_text(r["prompt"]) for r in rows]),
        tok.encode_batch([reply_text(r["chosen"], reward_token) for r in rows]),
        tok.encode_batch([reply_text(r["rejected"], reward_token) for r in rows]),
    )


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
        if not any(
            (p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
        ):
            raise TokenizerError(
                f"{p}: folder holds no tokenizer (no tokenizer.json or tokenizer_config.json; data.tokenizer)"
            )
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
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(out)
    tmp = out.with_suffix(".tmp")
    tok.save(str(tmp))
    tmp.replace(out)
    return Tok(tok, path=str(out))
