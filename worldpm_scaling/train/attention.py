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
    outs = []
    for qs, qe, ps, pe in wps_segments:
        q = query[:, :, qs:qe]
        if pe > ps:
            k = torch.cat([key[:, :, ps:pe], key[:, :, qs:qe]], dim=2)
            v = torch.cat([value[:, :, ps:pe], value[:, :, qs:qe]], dim=2)
            lq, lk = qe - qs, k.shape[2]
            # causal aligned bottom-right: query i sees the whole prefix and its own first i+1 tokens
            mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=lk - lq)
            outs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling))
        else:
            outs.append(F.scaled_dot_product_attention(q, key[:, :, qs:qe], value[:, :, qs:qe], dropout_p=dropout,
                                                       scale=scaling, is_causal=True))
    out = torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make `wps_segments` a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, segment_attention)
    return IMPLEMENTATION
