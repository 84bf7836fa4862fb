"""The 12 WorldPM sets imported from their release fixtures (`wps data evals import`) and scored by a tiny
model trained with `wps train`: every set logs loss, accuracy and style Phi; RM-Bench and best-of-K
sets log their own scores too; the multi-turn RMB prompts go through the trainer."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.fixtures.eval_sources import SOURCES
from worldpm_scaling import names
from worldpm_scaling.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def wps(*args: str, cwd: Path, timeout: float = 500) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )


def test_tiny_model_scores_every_imported_set(tmp_path):
    data = tmp_path / "synth"
    r = wps(
        "data",
        "synth",
        "--pairs",
        "200",
        "--seed",
        "4",
        "--eval-pairs-per-set",
        "4",
        "--vocab-size",
        "1024",
        "--out",
        str(data),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    evals = tmp_path / "evals"
    for name, src in SOURCES.items():
        assert main(["data", "evals", "import", name, str(src), "--out", str(evals)]) == 0, name
    assert main(["data", "evals", "--dir", str(evals)]) == 0  # all 12 found and readable

    spec = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    spec.update(name="evals-check", models=["tiny-xxs"], out_dir=str(tmp_path / "out"))
    spec.pop("cluster")
    spec["data"].update(
        source=str(data / "train.parquet"),
        tokenizer=str(data / "tokenizer.json"),
        pairs=64,
        tokens_per_pair=None,
        stats_file=str(data / "stats.json"),
    )
    spec["milestones"] = {"start_log2": 6}  # one evaluation, at 64 pairs
    spec["eval"] = {"dir": str(evals), "max_pairs_per_set": 27}  # RM-Bench: 3 prompts × 9 style pairs
    spec["train"].update(global_batch_pairs=32, micro_batch_pairs=32, ctx_len=192, checkpoint_every_steps=100)
    spec["tracking"] = {"backend": "spool"}
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    r = wps("train", str(sweep), "--cell", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    files = list((tmp_path / "out").rglob("cell-*.jsonl"))
    assert len(files) == 1, files
    m = defaultdict(list)
    for line in files[0].read_text().splitlines():
        p = json.loads(line)
        m[p["k"]].append(p["v"])
    for name in names.EVAL_SETS:
        loss, acc = m[names.eval_loss(name)], m[names.eval_acc(name)]
        assert len(loss) == 1 and math.isfinite(loss[0]) and loss[0] > 0, name
        assert len(acc) == 1 and 0.0 <= acc[0] <= 1.0, name
        phis = [m[names.eval_phi(name, f)] for f in names.STYLE_FEATURES]
        assert any(v and math.isfinite(v[0]) for v in phis), (name, phis)  # at least one style Phi, not NaN
    # true (style-index) markdown labels make RM-Bench's markdown Phi defined; detected labels do elsewhere
    for name in ("rmbench_chat", "rmbench_math", "rmbench_humanevalpack", "rmb_helpfulness", "ppe_human_preference"):
        v = m[names.eval_phi(name, "markdown")]
        assert v and -1.0 <= v[0] <= 1.0, name
    for name in ("rmbench_chat", "rmbench_math", "rmbench_humanevalpack"):
        for k in (names.ACC_HARD, names.ACC_NORMAL, names.ACC_EASY):
            v = m[names.eval_set_metric(name, k)]
            assert len(v) == 1 and 0.0 <= v[0] <= 1.0, (name, k)
    for name in ("ppe_mbpp_plus", "ppe_mmlu_pro", "ppe_gpqa", "ppe_ifeval"):
        v = m[names.eval_set_metric(name, names.BON_ACC)]
        assert len(v) == 1 and 0.0 <= v[0] <= 1.0, name
    assert not m.get(names.eval_set_metric("helpsteer2", names.BON_ACC))
