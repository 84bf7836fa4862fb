"""The unit of data every layer passes around: a preference pair, as text and as token ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TokenizedPair:
    """One tokenized preference pair.

    The reward model reads `prompt ++ chosen` and `prompt ++ rejected`. `prompt` is the chat-formatted
    prefix (Qwen template, empty system prompt) up to and including the assistant header; each reply
    ends with the end-of-turn token, whose position the reward head reads. Keeping the prompt apart
    lets collation pack it once for both replies (shared-prompt packing).
    """

    prompt: np.ndarray
    """int32 token ids of the formatted prompt."""
    chosen: np.ndarray
    """int32 token ids of the preferred reply (ends with end-of-turn)."""
    rejected: np.ndarray
    """int32 token ids of the other reply."""
    chosen_markdown: bool = False
    """Style indicator for the Phi analysis (reply length is len(chosen))."""
    rejected_markdown: bool = False

    @property
    def tokens(self) -> int:
        """Tokens this pair costs when both sequences are run in full."""
        return 2 * len(self.prompt) + len(self.chosen) + len(self.rejected)
