"""`wps train SWEEP --cell N` end to end through the real CLI, the real data layer (synthetic forum, BPE
tokenizer, eval registry) and the offline spool tracker: every step and every milestone lands on disk,
a re-run resumes instead of retraining, and bad input is a named error."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from worldpm_scaling import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def wps(*args: str, cwd: Path, timeout: float = 500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worldpm_scaling", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                           "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "synth"
    r = wps("data", "synth", "--pairs", "400", "--seed", "2", "--eval-pairs-per-set", "12", "--vocab-size", "1024",
            "--out", str(data), cwd=tmp)
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    spec.update(name="cli-check", models=["tiny-xs"], out_dir=str(tmp / "out"))
    spec.pop("cluster")
    spec["data"].update(source=str(data / "train.parquet"), tokenizer=str(data / "tokenizer.json"), pairs=256,
                        tokens_per_pair=None, stats_file=str(data / "stats.json"))
    spec["milestones"] = {"start_log2": 6}            # 64, 128, 256 pairs
    spec["eval"] = {"dir": str(data / "evals"), "max_pairs_per_set": 8}
    spec["train"].update(checkpoint_every_steps=3, global_batch_pairs=32, micro_batch_pairs=16)
    spec["tracking"] = {"backend": "spool"}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def spooled(out: Path) -> dict[str, list[tuple[int, float]]]:
    files = list(out.rglob("cell-*.jsonl"))
    assert len(files) == 1, files
    series = defaultdict(list)
    for line in files[0].read_text().splitlines():
        p = json.loads(line)
        series[p["k"]].append((p["s"], p["v"]))
    return series


def test_wps_train_writes_every_step_and_milestone_then_resumes(sweep):
    tmp = sweep.parent
    r = wps("train", str(sweep), "--cell", "0", cwd=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "FINISHED: 8 steps, 256 pairs" in r.stdout
    m = spooled(tmp / "out")
    for key in names.TRAIN_METRICS:
        assert [s for s, _ in m[key]] == list(range(1, 9)), key
    for name in ("rmbench_chat", "ppe_gpqa", "helpsteer2", "adversarial", "objective", "subjective"):
        assert [s for s, _ in m[names.eval_loss(name)]] == [2, 4, 8], name  # 64, 128, 256 pairs
        assert all(0.0 <= v <= 1.0 for _, v in m[names.eval_acc(name)])
    ckpts = sorted(p.name for p in (tmp / "out").rglob("step_*.pt"))
    assert ckpts == ["step_00000006.pt", "step_00000008.pt"]  # keep_checkpoints = 2

    again = wps("train", str(sweep), "--cell", "0", cwd=tmp)  # a re-launch resumes: nothing left to do
    assert again.returncode == 0, again.stderr[-3000:]
    assert "FINISHED: 8 steps" in again.stdout
    assert spooled(tmp / "out")[names.TRAIN_LOSS] == m[names.TRAIN_LOSS]  # no step logged twice


def test_wps_train_names_bad_input(sweep):
    r = wps("train", str(sweep), "--cell", "7", cwd=sweep.parent)
    assert r.returncode == 2 and r.stderr.startswith("error:"), r.stderr
    r = wps("train", str(sweep.parent / "nope.yaml"), "--cell", "0", cwd=sweep.parent)
    assert r.returncode == 2 and "nope.yaml" in r.stderr


def test_wps_train_help_teaches():
    r = wps("train", "--help", cwd=REPO)
    assert r.returncode == 0 and "examples:" in r.stdout and "--cell" in r.stdout
