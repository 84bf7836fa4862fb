"""The reward model: a Qwen2 decoder and a scalar head on the last token of each reply.

The head is WorldPM's released design, Linear(h, h) → ReLU → Linear(h, 1) (docs/paper_constants.md,
"Reward head"; arXiv 2505.10527 §2.1 describes a scalar head on the final token), or a single
Linear(h, 1). The loss is Bradley–Terry: −log σ(r_chosen − r_rejected) (arXiv 2505.10527, §2).
The chat template (Qwen, empty system prompt) is applied when pairs are tokenized (data layer), so
the last token of each reply is `<|im_end|>`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import ModelShape
from . import attention
from .collate import Batch

HEADS = ("mlp", "linear")


class RewardModel(nn.Module):
    def __init__(self, backbone: nn.Module, hidden: int, head: str = "mlp"):
        super().__init__()
        self.backbone = backbone
        if head == "mlp":
            self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        elif head == "linear":
            self.head = nn.Linear(hidden, 1)
        else:
            raise ValueError(f"train.head must be one of {HEADS}, got {head!r}")

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, reward_index: torch.Tensor,
                attention_mask: torch.Tensor | None = None, segments: list | None = None) -> torch.Tensor:
        """Rewards (float32) at `reward_index` = (row, position) pairs, shape (n, 2)."""
        kw = {"wps_segments": segments} if segments is not None else {}
        h = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False, **kw).last_hidden_state
        last = h[reward_index[:, 0], reward_index[:, 1]]
        return self.head(last).squeeze(-1).float()

    def rewards(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_chosen, r_rejected) for a collated batch."""
        r = self(b.input_ids, b.position_ids, b.reward_index, b.attention_mask, b.segments)
        return r[:b.pairs], r[b.pairs:]


def build_model(shape: ModelShape, *, head: str = "mlp", seed: int = 0, dtype=torch.float32,
                device: str | torch.device | None = None, zero3_config: dict | None = None) -> RewardModel:
    """Random init from the shape (seeded), or the base weights of a local checkpoint (`shape.path`).

    Built where it will train, in the training dtype: no rank ever holds the full fp32 model.
    - `zero3_config` (a ZeRO-3 DeepSpeed config): created already partitioned. transformers'
      `HfDeepSpeedConfig` is kept alive around the backbone's construction/`from_pretrained`, which
      then runs under `deepspeed.zero.Init` (each rank allocates and loads only its partition); the
      head is built under `deepspeed.zero.Init` too. The returned model keeps the HfDeepSpeedConfig
      (`model.hf_ds_config`) alive for as long as the model lives, as transformers requires.
    - otherwise: built directly on `device` (e.g. cuda:LOCAL_RANK) in `dtype`.
    Random init is the same function of `seed` either way (`seeded_init` for the backbone, then the
    head from a reseed), so a ZeRO-3 run starts from the weights a single process would.
    """
    import contextlib

    import transformers

    if shape.init == "pretrained" and not shape.path:  # never train a paper size from random init by accident
        raise ValueError(f"model {shape.name}: starts from the pretrained base {shape.base} but no folder is set "
                         "(cluster.models_dir or $WPS_MODELS_DIR; docs/pretrained_bases.md)")
    impl = attention.register()
    keep = None
    if zero3_config is not None:
        import deepspeed
        from transformers.integrations import HfDeepSpeedConfig

        keep = HfDeepSpeedConfig(zero3_config)  # must outlive construction (a weakref global in transformers)
        place = contextlib.nullcontext()
        # dtype from the config's bf16 flag (an explicit dtype= is misread on a CPU accelerator by
        # DeepSpeed 0.19's operator precedence and becomes bf16)
        head_ctx = deepspeed.zero.Init(config_dict_or_path=zero3_config)
    else:
        place = torch.device(device) if device is not None else contextlib.nullcontext()
        head_ctx = contextlib.nullcontext()
    torch.manual_seed(seed)
    if shape.path:
        kw = {"device_map": {"": torch.device(device)}} if (zero3_config is None and device is not None
                                                           and torch.device(device).type == "cuda") else {}
        backbone = transformers.AutoModel.from_pretrained(shape.path, local_files_only=True, dtype=dtype,
                                                          attn_implementation=impl, **kw)
    else:
        cfg = transformers.Qwen2Config(**shape.to_hf_config())
        with place:
            backbone = transformers.Qwen2Model._from_config(cfg, dtype=dtype, attn_implementation=impl)
        seeded_init(backbone, std=cfg.initializer_range, seed=seed, partitioned=zero3_config is not None,
                    padding_idx=cfg.pad_token_id)
    torch.manual_seed(seed + 1)
    with place, head_ctx:
        model = RewardModel(backbone, shape.hidden, head)
    if zero3_config is None:
        model.head.to(dtype)
    model.hf_ds_config = keep
    if shape.path:  # an exported WorldPM-format folder brings its reward head too (train/export.py)
        from .export import load_exported_head

        load_exported_head(model, shape.path, head)
    return model


def seeded_init(backbone: nn.Module, *, std: float, seed: int, partitioned: bool = False,
                padding_idx: int | None = None) -> None:
    """Qwen2's init (weights N(0, std), biases 0, norms 1 — transformers' Qwen2 `_init_weights`) drawn
    parameter by parameter from one CPU generator seeded with `seed`, so the values depend on the
    seed only: not on the device, on how construction consumed the global RNG, or on whether the
    model is ZeRO-3 partitioned (then each parameter is gathered, filled on rank 0 and re-partitioned)."""
    g = torch.Generator().manual_seed(seed)
    if partitioned:
        import deepspeed

        gather = lambda p: deepspeed.zero.GatheredParameters([p], modifier_rank=0)  # noqa: E731
        writer = deepspeed.comm.get_rank() == 0
    else:
        import contextlib

        gather = lambda p: contextlib.nullcontext()  # noqa: E731
        writer = True
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            shape = tuple(getattr(p, "ds_shape", p.shape))  # a partitioned parameter's full shape
            if not writer:
                value = None
            elif "norm" in name:
                value = torch.ones(shape)
            elif name.endswith(".bias"):
                value = torch.zeros(shape)
            else:
                value = torch.randn(shape, generator=g) * std
                if name.endswith("embed_tokens.weight") and padding_idx is not None:
                    value[padding_idx] = 0
            with gather(p):
                if writer:
                    p.data.copy_(value)


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley–Terry loss −log σ(r_c − r_r)."""
    return -F.logsigmoid(r_chosen - r_rejected)


def bt_metrics(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> dict[str, float]:
    """Mean BT loss, accuracy (r_c > r_r) and margin (r_c − r_r) of a set of pairs."""
    d = (r_chosen - r_rejected).detach().float()
    return {"loss": float(-F.logsigmoid(d).mean()), "acc": float((d > 0).float().mean()), "margin": float(d.mean())}
