"""Pairs → model rows, three ways behind one interface: `collate(pairs, mode, …) -> Batch`.

- padded: each sequence (prompt + reply) its own row, right-padded to the longest (the baseline —
  what TRL's RewardTrainer does).
- packed: every sequence back to back, positions restarting per sequence, attention kept inside
  each sequence (no padding waste).
- shared_prompt: the prompt once, then both replies; each reply attends to the prompt and itself
  only and its positions continue from the prompt, so each reply sees exactly what it would see
  alone, and the prompt is computed once instead of twice.

Packed modes come in two attention layouts: `segments` (default: one row, a segment list that
`train.attention` runs as one SDPA call per sequence on a CPU, or one varlen / FlexAttention call per
layer on CUDA — no mask, no padding) and `mask` (rows of `row_len` tokens with a block-diagonal 4D
mask: any attention backend runs it, at O(row²) cost).
All of them give the same rewards for the same pairs (tests/unit/test_train_collate.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..data.pairs import TokenizedPair

MODES = ("padded", "packed", "shared_prompt")
LAYOUTS = ("segments", "mask")


class CollationError(ValueError):
    """A collation mode/layout that does not exist, or a sequence longer than a packed row."""


@dataclass
class Batch:
    input_ids: torch.Tensor  # (rows, L) int64
    position_ids: torch.Tensor  # (rows, L) int64
    attention_mask: torch.Tensor | None  # (rows, 1, L, L) bool (True = attend), or None with segments
    segments: list[tuple[int, int, int, int]] | None  # one row's (q_start, q_end, prefix_start, prefix_end)
    chosen_index: torch.Tensor  # (pairs, 2): (row, position) of each chosen reply's last token
    rejected_index: torch.Tensor  # (pairs, 2)
    real_tokens: int  # tokens that are not padding
    capacity: int  # rows × L: tokens the model computes

    @property
    def reward_index(self) -> torch.Tensor:
        return torch.cat([self.chosen_index, self.rejected_index])

    @property
    def pairs(self) -> int:
        return len(self.chosen_index)

    def to(self, device) -> "Batch":
        mask = self.attention_mask.to(device) if self.attention_mask is not None else None
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            position_ids=self.position_ids.to(device),
            attention_mask=mask,
            chosen_index=self.chosen_index.to(device),
            rejected_index=self.rejected_index.to(device),
        )


def collate(
    pairs: list[TokenizedPair], mode: str, *, row_len: int | None = None, pad_id: int = 0, layout: str = "segments"
) -> Batch:
    """Rows for `pairs`: chosen rewards are read at `chosen_index`, rejected at `rejected_index`."""
    if layout not in LAYOUTS:
        raise CollationError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not pairs:
        raise CollationError("cannot collate an empty list of pairs")
    if mode == "padded":
        return _padded(pairs, pad_id)
    if mode == "packed":
        groups = [[(np.concatenate([p.prompt, p.chosen]), "c", i)] for i, p in enumerate(pairs)] + [
            [(np.concatenate([p.prompt, p.rejected]), "r", i)] for i, p in enumerate(pairs)
        ]
    elif mode == "shared_prompt":
        groups = [[(p.prompt, "p", i), (p.chosen, "c", i), (p.rejected, "r", i)] for i, p in enumerate(pairs)]
    else:
        raise CollationError(f"train.collation must be one of {MODES}, got {mode!r}")
    if layout == "segments":
        return _one_row(groups, len(pairs))
    if row_len is None:
        raise CollationError("the mask layout needs row_len (train.pack_len or train.ctx_len)")
    return _pack(groups, len(pairs), row_len, pad_id, shared=mode == "shared_prompt")


def _padded(pairs: list[TokenizedPair], pad_id: int) -> Batch:
    seqs = [np.concatenate([p.prompt, p.chosen]) for p in pairs] + [
        np.concatenate([p.prompt, p.rejected]) for p in pairs
    ]
    L = max(len(s) for s in seqs)
    ids = np.full((len(seqs), L), pad_id, dtype=np.int64)
    lens = np.array([len(s) for s in seqs])
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    n = len(pairs)
    idx = np.stack([np.arange(2 * n), lens - 1], axis=1)
    pos = np.broadcast_to(np.arange(L), (len(seqs), L)).copy()
    ar = torch.arange(L)
    valid = ar[None, :] < torch.from_numpy(lens)[:, None]  # (rows, L) keys that are real
    mask = (ar[None, :] <= ar[:, None])[None] & valid[:, None, :]  # causal ∧ real key
    real = int(lens.sum())
    return Batch(
        torch.from_numpy(ids),
        torch.from_numpy(pos),
        mask[:, None],
        None,
        torch.from_numpy(idx[:n]),
        torch.from_numpy(idx[n:]),
        real,
        ids.size,
    )


def _one_row(groups, n_pairs: int) -> Batch:
    """All groups in one row; a segment per attention unit (prompt+chosen share one causal segment).

    The Python loop only walks the pieces' lengths; the tokens are copied by one concatenate and the
    positions made by one arange (a few numpy calls a batch instead of several per piece)."""
    pieces, lens, offs = [], [], []  # offs: where each piece's positions start (the prompt's length or 0)
    ci = np.zeros((n_pairs, 2), dtype=np.int64)
    ri = np.zeros((n_pairs, 2), dtype=np.int64)
    segments: list[tuple[int, int, int, int]] = []
    t = 0
    for g in groups:
        prompt_start = prompt_len = 0
        open_start = None  # a prompt segment the chosen reply extends
        for s, kind, pair in g:
            n = len(s)
            pieces.append(s)
            lens.append(n)
            if kind == "p":
                offs.append(0)
                prompt_start, prompt_len, open_start = t, n, t
            elif kind == "c" and open_start is not None:  # prompt ++ chosen: one causal segment
                offs.append(prompt_len)
                segments.append((open_start, t + n, 0, 0))
                open_start = None
            elif kind == "r" and prompt_len:  # rejected reads the shared prompt as a prefix
                offs.append(prompt_len)
                segments.append((t, t + n, prompt_start, prompt_start + prompt_len))
            else:  # a whole sequence
                offs.append(0)
                segments.append((t, t + n, 0, 0))
            if kind in ("c", "r"):
                (ci if kind == "c" else ri)[pair] = (0, t + n - 1)
            t += n
    total = t
    ids = np.concatenate(pieces).astype(np.int64, copy=False) if pieces else np.empty(0, dtype=np.int64)
    lens_a = np.asarray(lens, dtype=np.int64)
    starts = np.cumsum(lens_a) - lens_a
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts - np.asarray(offs, dtype=np.int64), lens_a)
    return Batch(
        torch.from_numpy(ids)[None],
        torch.from_numpy(pos)[None],
        None,
        segments,
        torch.from_numpy(ci),
        torch.from_numpy(ri),
        total,
        total,
    )


def _pack(groups, n_pairs: int, row_len: int, pad_id: int, *, shared: bool) -> Batch:
    """First-fit-decreasing packing of groups (a group = segments that must share a row), 4D mask."""
    sizes = [sum(len(s) for s, _, _ in g) for g in groups]
    if max(sizes) > row_len:
        raise CollationError(
            f"a {'pair' if shared else 'sequence'} of {max(sizes)} tokens does not fit a "
            f"{row_len}-token row (raise train.pack_len or lower train.ctx_len)"
        )
    rows: list[list[int]] = []
    room: list[int] = []
    for gi in sorted(range(len(groups)), key=lambda i: -sizes[i]):
        for r in range(len(rows)):
            if room[r] >= sizes[gi]:
                rows[r].append(gi)
                room[r] -= sizes[gi]
                break
        else:
            rows.append([gi])
            room.append(row_len - sizes[gi])
    L = row_len - min(room)  # trim the padding every row shares
    R = len(rows)
    ids = np.full((R, L), pad_id, dtype=np.int64)
    pos = np.zeros((R, L), dtype=np.int64)
    seq = np.full((R, L), -1, dtype=np.int64)  # which group a token belongs to (-1 = padding)
    part = np.zeros((R, L), dtype=np.int8)  # 0 prompt/plain, 1 chosen, 2 rejected
    ci = np.zeros((n_pairs, 2), dtype=np.int64)
    ri = np.zeros((n_pairs, 2), dtype=np.int64)
    for r, members in enumerate(rows):
        t = 0
        for gi in members:
            prompt_len = 0
            for s, kind, pair in groups[gi]:
                n = len(s)
                ids[r, t : t + n] = s
                seq[r, t : t + n] = gi
                if kind == "p":
                    pos[r, t : t + n] = np.arange(n)
                    prompt_len = n
                else:
                    pos[r, t : t + n] = prompt_len + np.arange(n)
                    part[r, t : t + n] = 1 if kind == "c" else 2
                    (ci if kind == "c" else ri)[pair] = (r, t + n - 1)
                t += n
    seq_t, part_t = torch.from_numpy(seq), torch.from_numpy(part)
    ar = torch.arange(L)
    causal = ar[None, :] <= ar[:, None]
    allowed = (seq_t[:, :, None] == seq_t[:, None, :]) & causal[None] & (seq_t[:, :, None] >= 0)
    if shared:  # a rejected token never sees the chosen reply
        allowed &= ~((part_t[:, :, None] == 2) & (part_t[:, None, :] == 1))
    allowed |= torch.eye(L, dtype=torch.bool)[None]  # padding attends to itself (no empty softmax rows)
    real = int((seq >= 0).sum())
    return Batch(
        torch.from_numpy(ids),
        torch.from_numpy(pos),
        allowed[:, None],
        None,
        torch.from_numpy(ci),
        torch.from_numpy(ri),
        real,
        R * L,
    )
