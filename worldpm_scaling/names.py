"""Names every layer agrees on: metric keys (the MLflow seam) and the WorldPM eval sets.

Analysis reads only these keys, training writes only these keys; change them here or nowhere.
"""

from __future__ import annotations

# -- metric keys (step = optimizer step) ------------------------------------------------------
TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"
TRAIN_GRAD_NORM = "train/grad_norm"  # before clipping
TRAIN_LR = "train/lr"
TRAIN_PAIRS_SEEN = "train/pairs_seen"
TRAIN_TOKENS_SEEN = "train/tokens_seen"
PERF_PAIRS_PER_S = "perf/pairs_per_s"
PERF_TOKENS_PER_S = "perf/tokens_per_s"
PERF_MFU = "perf/mfu"
PERF_REAL_TOKEN_FRAC = "perf/real_token_frac"

TRAIN_METRICS = (
    TRAIN_LOSS,
    TRAIN_ACC,
    TRAIN_GRAD_NORM,
    TRAIN_LR,
    TRAIN_PAIRS_SEEN,
    TRAIN_TOKENS_SEEN,
    PERF_PAIRS_PER_S,
    PERF_TOKENS_PER_S,
    PERF_MFU,
    PERF_REAL_TOKEN_FRAC,
)


def eval_loss(name: str) -> str:
    """`eval/<set or category>/loss`."""
    return f"eval/{name}/loss"


def eval_acc(name: str) -> str:
    """`eval/<set or category>/acc`."""
    return f"eval/{name}/acc"


def eval_phi(name: str, feature: str) -> str:
    """`eval/<set>/phi_<feature>`: Phi between the model's preference and a style indicator
    (`length` or `markdown`), see worldpm_scaling/style.py."""
    return f"eval/{name}/phi_{feature}"


STYLE_FEATURES = ("length", "markdown")


def eval_set_metric(name: str, metric: str) -> str:
    """`eval/<set>/<metric>`: a score a set defines beyond BT loss/accuracy (see SET_METRICS)."""
    return f"eval/{name}/{metric}"


# Per-set scores beyond BT loss (worldpm_scaling/train/set_metrics.py computes them):
# RM-Bench's style-matrix accuracies (THU-KEG/RM-Bench README "how to compute the accuracy": rows =
# chosen style, columns = rejected style, in the order concise, detailed plain, detailed markdown;
# hard = upper-right triangle, normal = diagonal, easy = lower-left) and best-of-K accuracy (the share
# of a best-of-K group's prompts whose highest-reward response is a correct one; PPE, arXiv 2410.14872).
ACC_HARD, ACC_NORMAL, ACC_EASY = "acc_hard", "acc_normal", "acc_easy"
BON_ACC = "bon_acc"
SET_METRICS = (ACC_HARD, ACC_NORMAL, ACC_EASY, BON_ACC)

# -- eval sets ------------------------------------------------------------------------------
# The 12 WorldPM test sets in three categories (arXiv 2505.10527 §3.2 and Fig. 1; see
# docs/paper_constants.md): adversarial = RM-Bench chat (factual error detection), OffsetBias, LLMBar
# (from RewardBench chat-hard); objective = MBPP-Plus, MMLU-Pro, GPQA, IFEval (from PPE) and MATH,
# HumanEvalPack (from RM-Bench's math and code domains); subjective = PPE human preference (Chatbot
# Arena), HelpSteer2, RMB helpfulness. Files cannot be downloaded here: the data layer's registry
# maps each name to an expected local file.
CATEGORIES = ("adversarial", "objective", "subjective")

EVAL_SETS: dict[str, str] = {
    "rmbench_chat": "adversarial",
    "offsetbias": "adversarial",
    "rewardbench_llmbar": "adversarial",
    "ppe_mbpp_plus": "objective",
    "ppe_mmlu_pro": "objective",
    "ppe_gpqa": "objective",
    "ppe_ifeval": "objective",
    "rmbench_math": "objective",
    "rmbench_humanevalpack": "objective",
    "ppe_human_preference": "subjective",
    "helpsteer2": "subjective",
    "rmb_helpfulness": "subjective",
}
