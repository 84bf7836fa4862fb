"""Style indicators and the Phi coefficient (WorldPM's style-bias analysis).

The paper measures style bias as the Phi coefficient between preferences and style indicators
(longer reply, more markdown) (arXiv 2505.10527 §3.3.2, Eq. (6), Figure 5a; docs/paper_constants.md).
Markdown indicators are true labels where a set has them (RM-Bench's style index) and `has_markdown`
of the text elsewhere (docs/eval_sets.md).
A pair is oriented A/B by index parity (A = chosen on even pairs, rejected on odd ones), so the
indicators are not constant; x = "prefers A", y = "A is longer" (or "only A has markdown").
Pure and dependency-free so that both the trainer (at eval time) and analysis can call it.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

_MD = re.compile(r"(^\s{0,3}#{1,6}\s|^\s*[-*+]\s|^\s*\d+\.\s|```|\*\*[^*]+\*\*|^\s*>\s|\[[^\]]+\]\([^)]+\))", re.M)


def has_markdown(text: str) -> bool:
    """Headings, lists, code fences, bold, quotes or links."""
    return bool(_MD.search(text))


def phi(x: Sequence[bool], y: Sequence[bool]) -> float:
    """Phi coefficient of two binary sequences (NaN when a margin is empty)."""
    if len(x) != len(y):
        raise ValueError(f"phi: lengths differ ({len(x)} vs {len(y)})")
    n11 = sum(1 for a, b in zip(x, y) if a and b)
    n10 = sum(1 for a, b in zip(x, y) if a and not b)
    n01 = sum(1 for a, b in zip(x, y) if not a and b)
    n00 = len(x) - n11 - n10 - n01
    den = math.sqrt((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00))
    return (n11 * n00 - n10 * n01) / den if den else float("nan")


def style_phi(
    prefers_chosen: Sequence[bool], chosen_feature: Sequence[float], rejected_feature: Sequence[float]
) -> float:
    """Phi between "prefers A" and "A has more of the feature", A/B oriented by index parity.

    `chosen_feature`/`rejected_feature`: reply length (tokens) or markdown (0/1) per pair. Pairs where
    the feature ties carry no style signal and are left out.
    """
    xs, ys = [], []
    for i, (p, fc, fr) in enumerate(zip(prefers_chosen, chosen_feature, rejected_feature)):
        if fc == fr:
            continue
        a_is_chosen = i % 2 == 0
        prefers_a = p if a_is_chosen else not p
        a_more = (fc > fr) if a_is_chosen else (fr > fc)
        xs.append(bool(prefers_a))
        ys.append(bool(a_more))
    return phi(xs, ys)
