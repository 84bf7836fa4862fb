"""Acceptance (issue 5): `wps data synth` output trains with `wps train`, and the registry loads its
eval sets by category — through the real CLI, a real transformers model and the real tokenizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _wps(*args: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_synth_output_trains_and_its_evals_load_by_category(tmp_path):
    data = tmp_path / "synth"
    r = _wps(
        "data",
        "synth",
        "--pairs",
        "600",
        "--seed",
        "1",
        "--eval-pairs-per-set",
        "16",
        "--vocab-size",
        "1024",
        "--out",
        str(data),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "tokens per pair" in r.stdout

    sweep = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    sweep.update(name="synth-check", models=["tiny-xs"], cluster=None)
    sweep["data"].update(
        source=str(data / "train.parquet"),
        tokenizer=str(data / "tokenizer.json"),
        pairs=128,
        tokens_per_pair=None,
        stats_file=str(data / "stats.json"),
    )
    sweep["milestones"] = {"start_log2": 6}
    sweep["eval"] = {"dir": str(data / "evals"), "max_pairs_per_set": 8}
    sweep["tracking"] = {"backend": "memory"}
    sweep = {k: v for k, v in sweep.items() if v is not None}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))

    r = _wps("data", "evals", str(path), "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    rows = json.loads(r.stdout)
    assert {row["category"] for row in rows} == {"adversarial", "objective", "subjective"}
    assert all(row["status"] == "found" and row["pairs"] == 16 for row in rows)

    r = _wps("train", str(path), "--cell", "0", "--tracking", "memory", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "FINISHED" in r.stdout and "128 pairs" in r.stdout
    # the tokenized cache was built next to the pairs and is reused, not rebuilt
    caches = [c for c in (data / ".tokcache").iterdir() if c.is_dir() and not c.name.startswith(".")]
    assert len(caches) == 1
    assert len((data / ".tokcache" / "builds.log").read_text().splitlines()) == 1  # one build, ever
