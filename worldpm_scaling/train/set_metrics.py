"""Per-set scores beyond BT loss and accuracy, where a set defines one (metric names in names.py).

Pure functions of a set's pair metadata (group, chosen slot, rejected slot — carried from the eval
file through data.evals into TokenizedPair) and the model's chosen/rejected rewards, in the set's order:

- RM-Bench (rmbench_chat, rmbench_math, rmbench_humanevalpack): the style matrix of the RM-Bench
  README ("how to compute the accuracy", scripts/utils.py compute_accuracy). Cell (i, j) = share of
  prompts whose chosen reply in style i out-scores the rejected reply in style j (styles 0 concise,
  1 detailed plain, 2 detailed markdown); hard = mean of the cells above the diagonal (chosen plainer
  than rejected), normal = mean of the diagonal, easy = mean below it. A cell with no pair (a skipped
  empty reply, or pairing=original) is left out of its mean; a level with no cell is not reported.
- PPE best-of-K (ppe_mbpp_plus, ppe_mmlu_pro, ppe_gpqa, ppe_ifeval): best-of-K accuracy = share of
  groups (prompt × generating model) whose highest-reward response is a correct one (PPE, arXiv
  2410.14872, "best-of-K"). Only responses that appear in the set's pairs are known here; every
  pair is (correct, incorrect), so a group's top response is correct iff its best correct reward
  beats its best incorrect reward (ties count as not correct).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol, Sequence

from .. import names

RMBENCH_SETS = ("rmbench_chat", "rmbench_math", "rmbench_humanevalpack")
BEST_OF_K_SETS = ("ppe_mbpp_plus", "ppe_mmlu_pro", "ppe_gpqa", "ppe_ifeval")


class PairMeta(Protocol):
    """What the metrics read of a pair (read-only: TokenizedPair is frozen)."""

    @property
    def group(self) -> str | None: ...
    @property
    def chosen_slot(self) -> int: ...
    @property
    def rejected_slot(self) -> int: ...


def rmbench_accuracy(meta: Sequence[PairMeta], chosen: Sequence[float], rejected: Sequence[float]) -> dict[str, float]:
    """{acc_hard, acc_normal, acc_easy} of RM-Bench's 3×3 style matrix (see the module docstring)."""
    cells: dict[tuple[int, int], list[bool]] = defaultdict(list)
    for m, c, r in zip(meta, chosen, rejected, strict=True):
        if m.group is None or m.chosen_slot < 0 or m.rejected_slot < 0:
            continue
        cells[(m.chosen_slot, m.rejected_slot)].append(c > r)
    acc = {k: sum(v) / len(v) for k, v in cells.items()}
    out = {}
    for key, keep in (
        (names.ACC_HARD, lambda i, j: i < j),
        (names.ACC_NORMAL, lambda i, j: i == j),
        (names.ACC_EASY, lambda i, j: i > j),
    ):
        vals = [a for (i, j), a in acc.items() if keep(i, j)]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out


def best_of_k_accuracy(
    meta: Sequence[PairMeta], chosen: Sequence[float], rejected: Sequence[float]
) -> dict[str, float]:
    """{bon_acc}: share of groups whose highest-reward response is correct (module docstring)."""
    best_ok: dict[str, float] = {}
    best_bad: dict[str, float] = {}
    for m, c, r in zip(meta, chosen, rejected, strict=True):
        if m.group is None:
            continue
        best_ok[m.group] = max(best_ok.get(m.group, float("-inf")), float(c))
        best_bad[m.group] = max(best_bad.get(m.group, float("-inf")), float(r))
    if not best_ok:
        return {}
    return {names.BON_ACC: sum(best_ok[g] > best_bad[g] for g in best_ok) / len(best_ok)}


def extra_metrics(
    name: str, meta: Sequence[PairMeta], chosen: Sequence[float], rejected: Sequence[float]
) -> dict[str, float]:
    """`eval/<name>/<metric>` for the sets that define one (RM-Bench, PPE best-of-K); {} otherwise."""
    if name in RMBENCH_SETS:
        m = rmbench_accuracy(meta, chosen, rejected)
    elif name in BEST_OF_K_SETS:
        m = best_of_k_accuracy(meta, chosen, rejected)
    else:
        return {}
    return {names.eval_set_metric(name, k): v for k, v in m.items()}
