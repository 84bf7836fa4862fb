"""Segment attention: packed sequences attend only inside themselves, without an L×L mask.

Packing many sequences into one row removes padding, but a block-diagonal mask still makes SDPA
score every token against the whole row (O(row²) work and memory). Here each segment is one SDPA
call over its own keys instead (O(Σ len²)), with the causal flag, so a row of 10k tokens costs what
its sequences cost. A segment is `(q_start, q_end, prefix_start, prefix_end)`: queries in
[q_start, q_end) attend causally to themselves and fully to the prefix [prefix_start, prefix_end)
(shared-prompt packing: the rejected reply reads the prompt it shares with the chosen one).

Registered with transformers' AttentionInterface as `wps_segments`. Without segments (padded
batches, evaluation of a plain batch) it falls back to transformers' SDPA with the given 4D mask.
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F

IMPLEMENTATION = "wps_segments"

Segment = tuple[int, int, int, int]


def segment_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      wps_segments: list[Segment] | None = None, **kwargs):
    """query (1, H, T, D), key/value (1, KV, T, D) → (1, T, H, D), as transformers expects."""
    if wps_segments is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if query.shape[0] != 1:
        raise ValueError(f"segment attention expects one packed row, got a batch of {query.shape[0]}")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: expand K/V once per layer, not per segment
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    # Split the row into one view per segment rather than slicing it once per segment: a slice's
    # backward writes into a zero tensor the size of the whole row, so S slices cost O(S·T) in
    # fill + add (measured 17% of a shared-prompt step); a split's backward is one concatenation.
    sizes = [qe - qs for qs, qe, _, _ in wps_segments]
    if wps_segments[0][0] != 0 or sum(sizes) != query.shape[2] or any(
            a[1] != b[0] for a, b in zip(wps_segments, wps_segments[1:])):
        raise ValueError("segments must tile the packed row in order")
    qp, kp, vp = query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2)
    starts = [qs for qs, _, _, _ in wps_segments]
    outs = []
    for i, (qs, qe, ps, pe) in enumerate(wps_segments):
        q = qp[i]
        if pe > ps:
            j = _piece_of(starts, ps)  # the prefix lies inside one earlier segment (the prompt's)
            lo, hi = ps - starts[j], pe - starts[j]
            if hi > sizes[j]:
                raise ValueError(f"prefix [{ps}, {pe}) spans more than one segment")
            k = torch.cat([kp[j][:, :, lo:hi], kp[i]], dim=2)
            v = torch.cat([vp[j][:, :, lo:hi], vp[i]], dim=2)
            lq, lk = qe - qs, k.shape[2]
            # causal aligned bottom-right: query i sees the whole prefix and its own first i+1 tokens
            mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
            outs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling))
        else:
            outs.append(F.scaled_dot_product_attention(q, kp[i], vp[i], dropout_p=dropout, scale=scaling,
                                                       is_causal=True))
    out = torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _piece_of(starts: list[int], pos: int) -> int:
    """Index of the segment whose span holds token `pos` (`starts` ascending)."""
    return bisect.bisect_right(starts, pos) - 1


def register() -> str:
    """Make `wps_segments` a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, segment_attention)
    return IMPLEMENTATION
