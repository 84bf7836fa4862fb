"""A WorldPM-format reward model: a Qwen2 decoder and a scalar head read at the last token.

`wps export` copies this file, unchanged, into every exported folder as `modeling_worldpm.py`, and the
folder's config.json points `auto_map` at it, so the QwenLM/WorldPM README's usage code loads and
scores an exported model with nothing of this project installed:

    model = AutoModel.from_pretrained(DIR, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)
    text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
    score = model(input_ids=tok.encode(text, return_tensors="pt", add_special_tokens=False))[0].item()

The exported chat template ends every conversation with the reward token (`<|endoftext|>` after the
Qwen2.5-templated turns, as the release reads it; or the last `<|im_end|>`), and the reward is the
head applied to the hidden state of the last real token. It must import only torch and transformers.
"""

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


def reward_head(config) -> nn.Module:
    """config.reward_head: `mlp` = Linear(h, h) → ReLU → Linear(h, 1) (WorldPM's head) or `linear`."""
    h = config.hidden_size
    kind = getattr(config, "reward_head", "mlp")
    if kind == "mlp":
        return nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1))
    if kind == "linear":
        return nn.Linear(h, 1)
    raise ValueError(f"config.json reward_head must be 'mlp' or 'linear', got {kind!r}")


class Qwen2ForRewardModel(Qwen2PreTrainedModel):
    config_class = Qwen2Config

    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.score = reward_head(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        """One reward per sequence (float32, shape (batch,)) in `logits`, i.e. `outputs[0]`.

        The reward is read at the last real token of each row: the last position without a mask, else
        the last position whose attention_mask is 1 (left or right padding alike)."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
        )
        h = out.last_hidden_state
        rows, length = h.shape[0], h.shape[1]
        if attention_mask is None:
            last = torch.full((rows,), length - 1, dtype=torch.long, device=h.device)
        else:
            last = (length - 1 - attention_mask.flip(-1).long().argmax(-1)).to(h.device)
        rewards = self.score(h[torch.arange(rows, device=h.device), last]).squeeze(-1).float()
        return SequenceClassifierOutputWithPast(logits=rewards)
