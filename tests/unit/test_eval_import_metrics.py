"""Per-set scores (train/set_metrics.py) on imported sets' metadata: RM-Bench hard/normal/easy against
the README's matrix recipe, best-of-K accuracy by hand, and the metadata surviving the registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from worldpm_scaling import names
from worldpm_scaling.train.set_metrics import best_of_k_accuracy, extra_metrics, rmbench_accuracy

pytestmark = pytest.mark.unit

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "evals"


@dataclass
class M:
    group: str | None
    chosen_slot: int = -1
    rejected_slot: int = -1


def _readme_matrix(score_chosen: np.ndarray, score_rejected: np.ndarray) -> dict[str, float]:
    """RM-Bench README recipe, written out: acc[i][j] = share of items whose chosen style-i score beats the
    rejected style-j score; hard = upper-right triangle mean, normal = diagonal, easy = lower-left."""
    acc = (score_chosen[:, :, None] > score_rejected[:, None, :]).mean(axis=0)
    return {
        names.ACC_HARD: np.triu(acc, 1).sum() / 3,
        names.ACC_NORMAL: np.diag(acc).mean(),
        names.ACC_EASY: np.tril(acc, -1).sum() / 3,
    }


def test_rmbench_accuracy_matches_the_readme_matrix():
    rng = np.random.default_rng(0)
    sc, sr = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + np.array([0.0, 0.3, 0.8])
    meta, c, r = [], [], []
    for k in range(40):
        for i in range(3):
            for j in range(3):
                meta.append(M(str(k), i, j))
                c.append(sc[k, i])
                r.append(sr[k, j])
    got = rmbench_accuracy(meta, c, r)
    want = _readme_matrix(sc, sr)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12)
    assert got[names.ACC_HARD] < got[names.ACC_EASY]  # rejected replies scored higher with more style
    # prefixed names for the RM-Bench sets only; BT-only sets get nothing extra
    ex = extra_metrics("rmbench_chat", meta, c, r)
    assert ex == {names.eval_set_metric("rmbench_chat", k): v for k, v in got.items()}
    assert extra_metrics("helpsteer2", meta, c, r) == {}


def test_rmbench_levels_without_cells_are_not_reported():
    got = rmbench_accuracy([M("a", 2, 2), M("b", 2, 2)], [1.0, 0.0], [0.0, 1.0])  # pairing=original
    assert got == {names.ACC_NORMAL: 0.5}


def test_best_of_k_accuracy_by_hand():
    # group g1: correct responses 0 (reward 2.0) and 2 (0.1); incorrect 1 (1.5) and 3 (3.0): top is incorrect
    # group g2: correct 0 (1.0); incorrect 1 (0.5), 2 (-1): top is correct
    meta = [M("g1", 0, 1), M("g1", 0, 3), M("g1", 2, 1), M("g2", 0, 1), M("g2", 0, 2)]
    c = [2.0, 2.0, 0.1, 1.0, 1.0]
    r = [1.5, 3.0, 1.5, 0.5, -1.0]
    assert best_of_k_accuracy(meta, c, r) == {names.BON_ACC: 0.5}
    assert extra_metrics("ppe_gpqa", meta, c, r) == {"eval/ppe_gpqa/bon_acc": 0.5}
    assert best_of_k_accuracy([M(None)], [1.0], [0.0]) == {}
    assert names.BON_ACC in names.SET_METRICS


def test_group_metadata_reaches_tokenized_pairs(tmp_path):
    """Eval file → EvalSet → TokenizedPair: group and slots survive, markdown is detected when the file
    has no labels, and a conversation prompt is tokenized whole."""
    import json

    from worldpm_scaling.config import EvalSpec
    from worldpm_scaling.data import load_eval_sets, train_bpe
    from worldpm_scaling.data.eval_import import import_set

    import_set("ppe_gpqa", FIX / "ppe" / "gpqa.parquet", tmp_path)
    import_set("rmb_helpfulness", FIX / "rmb" / "Pairwise_set" / "Helpfulness", tmp_path)
    (tmp_path / "helpsteer2.jsonl").write_text(  # no markdown columns, a conversation prompt
        json.dumps(
            {
                "prompt": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                    {"role": "user", "content": "list two"},
                ],
                "chosen": "- a\n- b",
                "rejected": "a and b",
            }
        )
        + "\n"
    )
    tok = train_bpe(["hello world list two a b - yo hi"] * 20, tmp_path / "tok.json", vocab_size=300)
    sets = load_eval_sets(
        EvalSpec(dir=str(tmp_path), sets=("ppe_gpqa", "helpsteer2", "rmb_helpfulness")), tokenizer=tok, ctx_len=4096
    )
    g = sets["ppe_gpqa"].pairs
    assert {p.group for p in g} == {
        "q1/gpt-4o-mini-2024-07-18",
        "q1/claude-3-haiku-20240307",
        "q3/Meta-Llama-3-8B-Instruct",
        "q4/gpt-4o-mini-2024-07-18",
    }
    assert [(p.chosen_slot, p.rejected_slot) for p in g[:4]] == [(0, 1), (2, 3), (4, 5), (2, 1)]
    hs = sets["helpsteer2"].pairs[0]
    assert (hs.chosen_markdown, hs.rejected_markdown, hs.group, hs.chosen_slot) == (True, False, None, -1)
    assert tok.decode(hs.prompt.tolist()).count("<|im_start|>user\n") == 2
    rmb = sets["rmb_helpfulness"].pairs
    assert max(tok.decode(p.prompt.tolist()).count("<|im_start|>user\n") for p in rmb) == 3


def test_label_sources_reach_the_report_style_section(tmp_path):
    """The report's style section says how each set's markdown labels were obtained: RM-Bench's style
    index, detection at import, a file's own columns, or detection at load."""
    import json

    from worldpm_scaling.analysis.report import Report, write_markdown
    from worldpm_scaling.config import EvalSpec
    from worldpm_scaling.data.eval_import import LABELS_DETECTED, LABELS_STYLE_INDEX, import_set
    from worldpm_scaling.data.evals import LABELS_DETECTED as AT_LOAD
    from worldpm_scaling.data.evals import LABELS_TRUE, label_sources

    import_set("rmbench_chat", FIX / "rmbench" / "chat_filtered.json", tmp_path)
    import_set("offsetbias", FIX / "offsetbias" / "biasbench.json", tmp_path)
    row = {"prompt": "p", "chosen": "- a", "rejected": "b"}
    (tmp_path / "helpsteer2.jsonl").write_text(
        json.dumps({**row, "chosen_markdown": True, "rejected_markdown": False}) + "\n"
    )
    (tmp_path / "rmb_helpfulness.jsonl").write_text(json.dumps(row) + "\n")
    labels = label_sources(EvalSpec(dir=str(tmp_path)))
    assert labels == {
        "rmbench_chat": LABELS_STYLE_INDEX,
        "offsetbias": LABELS_DETECTED,
        "helpsteer2": LABELS_TRUE,
        "rmb_helpfulness": AT_LOAD,
    }
    rep = Report(sweep="s", models=["tiny"], n_of={"tiny": 1e5})
    phi = {"markdown": {"tiny": (np.array([64.0, 128.0]), np.array([0.2, 0.1]))}}
    text = write_markdown(rep, tmp_path / "report.md", phi, labels).read_text()
    style = text[text.index("## Style") :]
    assert f"- rmbench_chat: {LABELS_STYLE_INDEX}" in style and f"- rmb_helpfulness: {AT_LOAD}" in style
