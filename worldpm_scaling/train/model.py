"""The reward model: a Qwen2 decoder and a scalar head on the last token of each reply.

The head is WorldPM's released design, Linear(h, h) → ReLU → Linear(h, 1) (shared/notes/
worldpm_paper.md; arXiv 2505.10527 §2 describes a scalar head on the final token), or a single
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


def build_model(shape: ModelShape, *, head: str = "mlp", seed: int = 0, dtype=torch.float32) -> RewardModel:
    """Random init from the shape (seeded), or the base weights of a local checkpoint (`shape.path`)."""
    import transformers

    impl = attention.register()
    torch.manual_seed(seed)
    if shape.path:
        backbone = transformers.AutoModel.from_pretrained(shape.path, local_files_only=True, dtype=dtype,
                                                          attn_implementation=impl)
    else:
        cfg = transformers.Qwen2Config(**shape.to_hf_config())
        cfg._attn_implementation = impl
        backbone = transformers.Qwen2Model(cfg).to(dtype)
    return RewardModel(backbone, shape.hidden, head)


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley–Terry loss −log σ(r_c − r_r)."""
    return -F.logsigmoid(r_chosen - r_rejected)


def bt_metrics(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> dict[str, float]:
    """Mean BT loss, accuracy (r_c > r_r) and margin (r_c − r_r) of a set of pairs."""
    d = (r_chosen - r_rejected).detach().float()
    return {"loss": float(-F.logsigmoid(d).mean()), "acc": float((d > 0).float().mean()), "margin": float(d.mean())}
