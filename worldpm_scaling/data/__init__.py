"""Data: the pair schema, pair files, tokenization cache, eval-set registry, synthetic forum, and
the StackExchange converter."""

from .evals import EvalSet, EvalSetMissing, load_eval_sets
from .io import PairsFileError, iter_pairs, read_pairs, write_pairs
from .pairs import TokenizedPair
from .tokenized import (
    CacheLockError,
    CacheWaitError,
    TokenizedPairs,
    build_cache,
    cache_folder,
    is_built,
    open_train_pairs,
    tokenized_stats,
    wait_for_cache,
)
from .tokenizer import Tok, TokenizerError, load_tokenizer, prompt_text, reply_text, train_bpe

__all__ = [
    "TokenizedPair",
    "TokenizedPairs",
    "Tok",
    "TokenizerError",
    "EvalSet",
    "EvalSetMissing",
    "PairsFileError",
    "load_tokenizer",
    "train_bpe",
    "prompt_text",
    "reply_text",
    "open_train_pairs",
    "build_cache",
    "cache_folder",
    "is_built",
    "wait_for_cache",
    "CacheWaitError",
    "CacheLockError",
    "tokenized_stats",
    "load_eval_sets",
    "read_pairs",
    "iter_pairs",
    "write_pairs",
]
