"""The unit of data every layer passes around: a preference pair, as text and as token ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REQUIRED = ("prompt", "chosen", "rejected")
"""Columns every pairs file has. `prompt` is a string or a conversation (list of {role, content}
turns ending with the user's; see data/io.py for how each format stores it)."""
STYLE_COLUMNS = ("chosen_markdown", "rejected_markdown")
"""Optional true markdown labels; without them markdown is detected from the text (style.has_markdown)."""
GROUP_COLUMNS = ("group", "chosen_slot", "rejected_slot")
"""Optional eval-set metadata (see TokenizedPair.group); written by `wps data evals import`."""


@dataclass(frozen=True, eq=False)
class TokenizedPair:
    """One tokenized preference pair.

    The reward model reads `prompt ++ chosen` and `prompt ++ rejected`. `prompt` is the chat-formatted
    prefix (Qwen template, empty system prompt; one user turn or a whole multi-turn conversation) up to
    and including the assistant header; each reply ends with the reward token (`train.reward_token`:
    `<|endoftext|>` by default, or `<|im_end|>`; data/chat.py), whose position the reward head reads.
    Keeping the prompt apart
    lets collation pack it once for both replies (shared-prompt packing).
    """

    prompt: np.ndarray
    """int32 token ids of the formatted prompt."""
    chosen: np.ndarray
    """int32 token ids of the preferred reply (ends with the reward token)."""
    rejected: np.ndarray
    """int32 token ids of the other reply."""
    chosen_markdown: bool = False
    """Style indicator for the Phi analysis (reply length is len(chosen))."""
    rejected_markdown: bool = False
    group: str | None = None
    """Eval sets only: the prompt group the pair belongs to (RM-Bench item id, best-of-K prompt ×
    model), for the per-set scores of worldpm_scaling/train/set_metrics.py; None elsewhere."""
    chosen_slot: int = -1
    """Eval sets only: which of its group's responses the chosen reply is (RM-Bench style index 0-2,
    best-of-K response index); -1 when the set has none."""
    rejected_slot: int = -1

    @property
    def tokens(self) -> int:
        """Tokens this pair costs when both sequences are run in full."""
        return 2 * len(self.prompt) + len(self.chosen) + len(self.rejected)
