"""Attention for packed rows: one interface, three backends, chosen by device and collation.

A packed row holds many sequences back to back; each must attend only inside itself. The collator
(train/collate.py) describes the row as segments `(q_start, q_end, prefix_start, prefix_end)`:
queries in [q_start, q_end) attend causally to themselves and fully to the prefix
[prefix_start, prefix_end) (shared-prompt packing: the rejected reply reads the prompt it shares
with the chosen one; the chosen reply and the prompt form one causal segment).

Everything is registered with transformers' AttentionInterface as `wps_segments`; the model passes
the segment list as the `wps_segments` keyword. Backends:

- `segments` — one SDPA call per segment (O(Σ len²), no row×row mask). The CPU default: on a CPU
  a Python loop of small SDPA calls costs nothing next to the matrix work.
- `varlen` — ONE `torch.nn.attention.varlen.varlen_attn` call per layer over the whole row, with
  the cumulative sequence lengths of the segments (causal, CUDA, fp16/bf16). Packed rows only: a
  segment with a prefix reads keys that are not contiguous with its queries.
- `flash_attn` — the same single call through flash-attn's `flash_attn_varlen_func`, when that
  package is installed.
- `flex` — ONE FlexAttention call per layer with a block mask that encodes every segment and its
  prefix, so it runs packed and shared-prompt rows alike. On CUDA the kernel is `torch.compile`d,
  once per length bucket (rows are padded up to a bucket — at most 25% longer — and the padding's
  blocks are empty, so they are skipped). On a CPU FlexAttention runs forward only, uncompiled
  (it materializes the scores): it is there to check equivalence, not to train.

Default choice (`choose`): on CUDA, rows without prefixes run `flash_attn` if installed, else
`varlen` (fp16/bf16; fp32 goes to `flex`), and shared-prompt rows run `flex`; on any other device
`segments`. Grouped-query attention never copies K/V: SDPA's `enable_gqa=True` on the segment path,
the kernels' own GQA on the others.

Per-batch work (the sizes check, cumulative lengths, the block mask) is done once per batch, not per
layer: every layer of one forward receives the same segment list object, and the plan built for it
is kept until a different list arrives.

For benchmarks and the GPU smoke script:

    from worldpm_scaling.train import attention
    attention.backends_available("cuda", torch.bfloat16)   # e.g. ['segments', 'flex', 'varlen']
    attention.set_backend("flex")      # force one backend for every later forward; None = automatic
    with attention.use_backend("varlen"): ...                # the same, restored on exit
    WPS_ATTENTION=flex python ...      # the environment's choice, when set_backend has not chosen

Forcing a backend that cannot run a batch (varlen on a CPU, or on a row with prefixes) raises
AttentionBackendError naming the backend. Without segments (padded batches, the mask layout) the
call falls back to transformers' SDPA with the given 4D mask, whatever the backend.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.util
import os
import warnings

import torch
import torch.nn.functional as F

IMPLEMENTATION = "wps_segments"
BACKENDS = ("segments", "flex", "varlen", "flash_attn")
ENV_VAR = "WPS_ATTENTION"
BLOCK = 128  # FlexAttention block size (tokens per query/key block of the block mask)

Segment = tuple[int, int, int, int]

_forced: str | None = None


class AttentionBackendError(ValueError):
    """An attention backend that does not exist, or cannot run this batch on this device."""


# ----------------------------------------------------------------------------- backend selection


def _is_cuda(t: torch.Tensor) -> bool:
    """The CUDA boundary: whether the tensors live on a GPU (tests mock this on a CPU box)."""
    return t.is_cuda


def _has_flash_attn() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _check_name(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise AttentionBackendError(f"{where}: attention backend must be one of {BACKENDS}, got {name!r}")
    return name


def set_backend(name: str | None) -> None:
    """Force `name` for every later forward (None: back to the automatic choice)."""
    global _forced
    _forced = None if name is None else _check_name(name, "set_backend")


@contextlib.contextmanager
def use_backend(name: str | None):
    """`set_backend(name)` for the duration of a `with` block."""
    before = _forced
    set_backend(name)
    try:
        yield
    finally:
        set_backend(before)


def forced_backend() -> str | None:
    """The backend set by `set_backend`, else by $WPS_ATTENTION, else None (automatic)."""
    if _forced is not None:
        return _forced
    env = os.environ.get(ENV_VAR, "").strip()
    return _check_name(env, f"${ENV_VAR}") if env else None


def backends_available(device, dtype: torch.dtype = torch.bfloat16) -> list[str]:
    """Backends that can run a packed row on `device` in `dtype` (varlen kernels need fp16/bf16 CUDA).

    `flex` is listed on a CPU too, where it runs forward only (no backward).
    """
    cuda = torch.device(device).type == "cuda"
    out = ["segments", "flex"]
    if cuda and dtype in (torch.float16, torch.bfloat16):
        out.append("varlen")
        if _has_flash_attn():
            out.append("flash_attn")
    return out


def choose(segments: list[Segment], query: torch.Tensor) -> str:
    """The backend for a row with these segments and this query tensor (forced one first)."""
    forced = forced_backend()
    has_prefix = any(pe > ps for _, _, ps, pe in segments)
    if forced is not None:
        if forced in ("varlen", "flash_attn"):
            if not _is_cuda(query):
                raise AttentionBackendError(f"attention backend {forced!r} needs a CUDA device, got {query.device}")
            if has_prefix:
                raise AttentionBackendError(
                    f"attention backend {forced!r} cannot run shared-prompt rows "
                    "(a reply's prefix is not contiguous with it): use 'flex'"
                )
        return forced
    if not _is_cuda(query):
        return "segments"
    if has_prefix or query.dtype not in (torch.float16, torch.bfloat16):
        return "flex"
    return "flash_attn" if _has_flash_attn() else "varlen"


# ----------------------------------------------------------------------------- the per-batch plan


class _Plan:
    """What every layer of one forward shares: the checked segments and, built on first use, the
    cumulative lengths (varlen) and the block mask (flex) on the row's device."""

    def __init__(self, segments: list[Segment]):
        sizes = [qe - qs for qs, qe, _, _ in segments]
        if (
            not segments
            or segments[0][0] != 0
            or any(s <= 0 for s in sizes)
            or any(a[1] != b[0] for a, b in zip(segments, segments[1:]))
        ):
            raise ValueError("segments must tile the packed row in order, each non-empty")
        self.segments = segments
        self.sizes = sizes
        self.total = sum(sizes)
        self.starts = [qs for qs, _, _, _ in segments]
        self.prefix_piece: list[tuple[int, int, int] | None] = []
        for qs, qe, ps, pe in segments:
            if pe > ps:
                j = bisect.bisect_right(self.starts, ps) - 1  # the prefix lies inside one earlier segment
                lo, hi = ps - self.starts[j], pe - self.starts[j]
                if j < 0 or ps >= qs or hi > sizes[j]:
                    raise ValueError(f"prefix [{ps}, {pe}) of segment [{qs}, {qe}) is not inside one earlier segment")
                self.prefix_piece.append((j, lo, hi))
            else:
                self.prefix_piece.append(None)
        self._cache: dict = {}

    # varlen: cumulative lengths, int32, on the device (one small host→device copy per batch)
    def cu_seqlens(self, device) -> tuple[torch.Tensor, int]:
        key = ("cu", str(device))
        if key not in self._cache:
            cu = torch.tensor([0, *self.starts[1:], self.total], dtype=torch.int32)
            self._cache[key] = (cu.to(device, non_blocking=True), max(self.sizes))
        return self._cache[key]

    # segments: a prefixed segment's mask, built once per batch (every layer of the forward reuses it)
    def prefix_mask(self, i: int, lq: int, lk: int, device) -> torch.Tensor:
        """Causal aligned bottom-right: query j sees the whole prefix and its own first j+1 tokens."""
        key = ("pm", i, str(device))
        m = self._cache.get(key)
        if m is None:
            m = self._cache[key] = torch.ones(lq, lk, dtype=torch.bool, device=device).tril(diagonal=lk - lq)
        return m

    # flex: the block mask over the row padded to its length bucket
    def block_mask(self, device):
        key = ("bm", str(device))
        if key not in self._cache:
            self._cache[key] = build_block_mask(self.segments, device, padded_len=bucket(self.total))
        return self._cache[key]


_last: tuple[list, _Plan] | None = None


def plan_for(segments: list[Segment]) -> _Plan:
    """The plan of this segment list: built once, reused by every layer that gets the same list."""
    global _last
    if _last is None or _last[0] is not segments:
        _last = (segments, _Plan(segments))  # holds the list, so its id cannot be reused meanwhile
    return _last[1]


# ----------------------------------------------------------------------------- the entry point


def segment_attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    wps_segments: list[Segment] | None = None,
    **kwargs,
):
    """query (1, H, T, D), key/value (1, KV, T, D) → (1, T, H, D), as transformers expects."""
    if wps_segments is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if query.shape[0] != 1:
        raise ValueError(f"segment attention expects one packed row, got a batch of {query.shape[0]}")
    plan = plan_for(wps_segments)
    if plan.total != query.shape[2]:
        raise ValueError(f"segments cover {plan.total} tokens, the row has {query.shape[2]}")
    backend = choose(wps_segments, query)
    if backend != "segments" and dropout > 0:
        raise AttentionBackendError(
            f"attention backend {backend!r} has no attention dropout (got {dropout}): use 'segments'"
        )
    if backend == "segments":
        out = _segments(plan, query, key, value, dropout, scaling)
    elif backend == "flex":
        out = _flex(plan, query, key, value, scaling)
    else:
        out = _varlen(plan, backend, query, key, value, scaling)
    return out, None


def _segments(plan: _Plan, query, key, value, dropout, scaling) -> torch.Tensor:
    """One SDPA call per segment. GQA through SDPA's enable_gqa (no K/V copy)."""
    gqa = query.shape[1] != key.shape[1]
    # Split the row into one view per segment rather than slicing it once per segment: a slice's
    # backward writes into a zero tensor the size of the whole row, so S slices cost O(S·T) in
    # fill + add (measured 17% of a shared-prompt step); a split's backward is one concatenation.
    qp, kp, vp = query.split(plan.sizes, dim=2), key.split(plan.sizes, dim=2), value.split(plan.sizes, dim=2)
    outs = []
    for i, piece in enumerate(plan.prefix_piece):
        q = qp[i]
        if piece is not None:
            j, lo, hi = piece
            k = torch.cat([kp[j][:, :, lo:hi], kp[i]], dim=2)
            v = torch.cat([vp[j][:, :, lo:hi], vp[i]], dim=2)
            mask = plan.prefix_mask(i, q.shape[2], k.shape[2], q.device)
            outs.append(
                F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling, enable_gqa=gqa
                )
            )
        else:
            outs.append(
                F.scaled_dot_product_attention(
                    q, kp[i], vp[i], dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa
                )
            )
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous()


def _varlen(plan: _Plan, backend: str, query, key, value, scaling) -> torch.Tensor:
    """One varlen call for the whole row: (T, H, D) views, causal, the kernel's own GQA."""
    cu, max_len = plan.cu_seqlens(query.device)
    q, k, v = query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1)  # (T, heads, D)
    if backend == "varlen":
        from torch.nn.attention import varlen

        res = varlen.varlen_attn(
            q, k, v, cu, cu, max_len, max_len, scale=scaling, window_size=(-1, 0), enable_gqa=q.shape[1] != k.shape[1]
        )
        out = res[0] if isinstance(res, tuple) else res  # a tuple only with return_aux
    else:
        import flash_attn  # type: ignore[import-not-found]  # optional, GPU-only: not installed where mypy runs

        out = flash_attn.flash_attn_varlen_func(
            q, k, v, cu, cu, max_len, max_len, dropout_p=0.0, softmax_scale=scaling, causal=True
        )
    return out.unsqueeze(0)  # (1, T, H, D)


def _flex(plan: _Plan, query, key, value, scaling) -> torch.Tensor:
    """One FlexAttention call for the whole row (padded to its bucket), GQA by the kernel."""
    from torch.nn.attention.flex_attention import flex_attention

    bm = plan.block_mask(query.device)
    T, pad = plan.total, bm.seq_lengths[0] - plan.total
    if pad:
        query, key, value = (F.pad(t, (0, 0, 0, pad)) for t in (query, key, value))
    gqa = query.shape[1] != key.shape[1]
    if _is_cuda(query):
        out = _compiled_flex()(query, key, value, block_mask=bm, scale=scaling, enable_gqa=gqa)
    else:
        with warnings.catch_warnings():  # eager CPU flex is the equivalence reference, slow by design
            warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
            out = flex_attention(query, key, value, block_mask=bm, scale=scaling, enable_gqa=gqa)
    return out[:, :, :T].transpose(1, 2).contiguous()


_flex_compiled = None


def _compiled_flex():
    """flex_attention compiled for static shapes: one kernel per (length bucket, heads, dim, dtype)."""
    global _flex_compiled
    if _flex_compiled is None:
        import torch._dynamo
        from torch.nn.attention.flex_attention import flex_attention

        # one entry per length bucket; dynamo's default of 8 would fall back to the eager (dense) path
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        _flex_compiled = torch.compile(flex_attention, dynamic=False)
    return _flex_compiled


# ----------------------------------------------------------------------------- the block mask


def bucket(n: int) -> int:
    """The padded length of an n-token row: a multiple of BLOCK, at most 25% more than n once n > 512
    (four buckets per doubling), so the compiled kernel sees few distinct shapes."""
    if n <= BLOCK:
        return BLOCK
    step = max(BLOCK, 1 << ((n - 1).bit_length() - 3))
    return -(-n // step) * step


def _token_bounds(segments: list[Segment], padded_len: int) -> tuple[torch.Tensor, ...]:
    """Per query token: its segment's start, its prefix's [lo, hi). Padding: start past itself, no prefix."""
    start = torch.arange(1, padded_len + 1, dtype=torch.int32)  # padding: start = q + 1 → no own keys
    lo = torch.zeros(padded_len, dtype=torch.int32)
    hi = torch.zeros(padded_len, dtype=torch.int32)
    for qs, qe, ps, pe in segments:
        start[qs:qe] = qs
        lo[qs:qe] = ps
        hi[qs:qe] = pe
    return start, lo, hi


def _segment_mask_mod(start: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """mask_mod: query q sees key k when k is in q's own segment at or before q, or in q's prefix."""

    def mask_mod(b, h, q, k):
        return ((k >= start[q]) & (k <= q)) | ((k >= lo[q]) & (k < hi[q]))

    return mask_mod


def build_block_mask(segments: list[Segment], device, padded_len: int | None = None):
    """The FlexAttention BlockMask of a packed row, from the segments, without a row×row mask.

    Each query's keys are two intervals (its own segment up to itself, its prefix), so the number of
    allowed keys of every (query block, key block) tile is a sum of interval overlaps: O(T·T/BLOCK)
    small integers instead of T² booleans. A tile is full (no mask_mod needed), partial or empty.
    """
    from torch.nn.attention.flex_attention import BlockMask

    total = segments[-1][1]
    n = padded_len or bucket(total)
    if n % BLOCK or n < total:
        raise ValueError(f"padded length {n} must be a multiple of {BLOCK} and ≥ the row's {total} tokens")
    start, lo, hi = (t.to(device, non_blocking=True) for t in _token_bounds(segments, n))
    nb = n // BLOCK
    q = torch.arange(n, device=device, dtype=torch.int32)
    k0 = torch.arange(nb, device=device, dtype=torch.int32) * BLOCK  # first key of each key block

    def overlap(a, b):  # |[a, b) ∩ key block| for every query (rows) and key block (columns)
        return (torch.minimum(b[:, None], k0[None] + BLOCK) - torch.maximum(a[:, None], k0[None])).clamp_(min=0)

    counts = (overlap(start, q + 1) + overlap(lo, hi)).view(nb, BLOCK, nb).sum(1)  # (q blocks, k blocks)
    full = counts == BLOCK * BLOCK
    partial = (counts > 0) & ~full

    def ordered(dense):  # (nb, nb) bool → counts (1,1,nb) and indices (1,1,nb,nb), selected blocks first
        num = dense.sum(-1, dtype=torch.int32)
        idx = torch.argsort(dense.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
        return num[None, None], idx[None, None]

    kv_num, kv_idx = ordered(partial)
    full_num, full_idx = ordered(full)
    return BlockMask.from_kv_blocks(
        kv_num,
        kv_idx,
        full_num,
        full_idx,
        BLOCK_SIZE=BLOCK,
        mask_mod=_segment_mask_mod(start, lo, hi),
        seq_lengths=(n, n),
    )


def register() -> str:
    """Make `wps_segments` a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, segment_attention)
    return IMPLEMENTATION
