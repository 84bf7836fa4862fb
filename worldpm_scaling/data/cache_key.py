"""Cache identity: the key that names what a tokenized cache holds, the same on every host.

The key names what is tokenized, not where a host mounts it: the pairs file's size, mtime and a hash of
sampled blocks (source_identity), the tokenizer files' content and the reward token, so every host that
reaches one file by any path (automount, symlink, bind mount) finds one cache, and a changed input is
re-tokenized.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .io import pairs_file
from .tokenizer import DEFAULT_REWARD_TOKEN, Tok

KEY_FORMAT = "tokcache-2"
"""Part of every cache key. Bump it when what a cache holds, or how pairs are rendered to text, changes:
caches of an older format are then rebuilt, never reused. (Format 1 keyed on resolved paths.)"""

SAMPLE_BLOCKS = 16
SAMPLE_BLOCK_BYTES = 64 * 1024
"""source_identity reads 16 evenly spaced 64 KiB blocks (1 MiB, head and tail included) of a pairs file:
a constant cost whatever the file's size (bench/results/tokcache_key.txt), where a full hash reads it all
on every rank of every job."""

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
"""The files of a tokenizer folder that load_tokenizer reads (a model folder's weights are not hashed)."""


def source_identity(p: Path) -> str:
    """The pairs file as every host sees it, whatever path reaches it: size, mtime (stored by the
    filesystem, so one value for all clients) and a SHA-256 of sampled blocks (of the whole file when it
    is no larger than the sample). A same-size edit outside the blocks still changes the mtime."""
    st = p.stat()
    size = st.st_size
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            span = size - SAMPLE_BLOCK_BYTES
            for i in range(SAMPLE_BLOCKS):
                h.update(os.pread(f.fileno(), SAMPLE_BLOCK_BYTES, span * i // (SAMPLE_BLOCKS - 1)))
    return f"size={size}:mtime_ns={st.st_mtime_ns}:blocks={h.hexdigest()[:32]}"


def tokenizer_identity(tok: Tok) -> str:
    """A SHA-256 of the tokenizer's files (name and content), not of their path."""
    tp = Path(tok.path)
    files = [tp] if tp.is_file() else [tp / n for n in TOKENIZER_FILES if (tp / n).is_file()] if tp.is_dir() else []
    if not files:  # a tokenizer not read from files: its vocabulary and special ids are all there is
        return f"unfiled:{tok.path}:{tok.vocab_size}:{tok.eos_id}:{tok.pad_id}"
    h = hashlib.sha256()
    for f in files:
        data = f.read_bytes()
        h.update(f"{f.name}:{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()[:32]


def cache_key(source: Path, tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> str:
    """16 hex digits naming (pairs content, tokenizer content, reward token, KEY_FORMAT): the same on
    every host, whatever path it mounts the data at."""
    ident = f"{KEY_FORMAT}|{source_identity(Path(source))}|{tokenizer_identity(tok)}|{reward_token}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def cache_folder(source: str | Path, tok: Tok, reward_token: str = DEFAULT_REWARD_TOKEN) -> Path:
    """Where the cache of (`source`, `tok`, `reward_token`) lives (built or not)."""
    src = pairs_file(source)
    return src.parent / ".tokcache" / cache_key(src, tok, reward_token)


def is_built(folder: Path) -> bool:
    return (folder / "meta.json").is_file()
