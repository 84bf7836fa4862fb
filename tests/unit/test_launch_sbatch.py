"""The exact sbatch scripts the launcher submits (golden files), and the SLURM parameters behind them."""

from pathlib import Path

import pytest

from worldpm_scaling.config import SpecError, load_cluster, load_sweep
from worldpm_scaling.launch import render_sbatch, slurm_parameters
from worldpm_scaling.launch.submit import _groups
from worldpm_scaling.plan import plan

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


def _check(name: str, text: str) -> None:
    """Compare with the committed golden file (WPS_UPDATE_GOLDEN=1 rewrites it)."""
    import os

    path = GOLDEN / name
    if os.environ.get("WPS_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path} (run with WPS_UPDATE_GOLDEN=1)"
    assert text == path.read_text()


def _72b(monkeypatch):
    monkeypatch.chdir(ROOT)
    p = plan(load_sweep("sweeps/worldpm.yaml", cluster="slurm/h100.yaml"))
    return p, max((r for r in p.runs if r.model.name == "qwen2.5-72b"), key=lambda r: r.pairs)


def test_72b_cell_on_h100_matches_golden(monkeypatch):
    p, run = _72b(monkeypatch)
    script = render_sbatch(run, p.sweep.cluster, folder="out/worldpm/jobs/%j")
    _check("sbatch_worldpm_72b_h100.sh", script)


def test_72b_cell_is_multi_node_one_task_per_gpu(monkeypatch):
    p, run = _72b(monkeypatch)
    params = slurm_parameters(run, p.sweep.cluster)
    assert run.resources.nodes > 1
    assert params["nodes"] == run.resources.nodes
    assert params["ntasks_per_node"] == params["gpus_per_node"] == 8
    assert params["time"] == run.resources.time_limit_minutes
    assert params["partition"] == "gpu" and params["account"] == "my-account" and params["constraint"] == "h100"
    script = render_sbatch(run, p.sweep.cluster, folder="out/worldpm/jobs/%j")
    assert "srun --unbuffered" in script
    assert "source ~/worldpm_scaling/.venv/bin/activate" in script
    assert "#SBATCH --signal=USR2@" in script and "#SBATCH --requeue" in script


def test_demo_array_on_local_cluster_matches_golden(monkeypatch):
    monkeypatch.chdir(ROOT)
    p = plan(load_sweep("sweeps/demo.yaml", cluster="slurm/local-cluster.yaml"))
    groups = _groups(list(p.runs))
    assert len(groups) == 1, "the demo grid's cells share one resource shape → one array"
    script = render_sbatch(groups[0][0], p.sweep.cluster, folder="out/demo/jobs/%j", array=len(groups[0]))
    assert f"#SBATCH --array=0-{len(p.runs) - 1}%{p.sweep.cluster.array_parallelism}" in script
    assert "--gpus-per-node" not in script  # CPU cluster: no GRES request
    _check("sbatch_demo_array_local_cluster.sh", script)


def test_array_time_limit_is_the_longest_cell(monkeypatch):
    monkeypatch.chdir(ROOT)
    p = plan(load_sweep("sweeps/demo.yaml", cluster="slurm/local-cluster.yaml"))
    (g,) = _groups(list(p.runs))
    assert {r.resources.time_limit_minutes for r in g} == {max(r.resources.time_limit_minutes for r in p.runs)}


def test_unknown_profile_key_is_rejected_with_valid_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "slurm" / "local-cluster.yaml").read_text() + "partitoin: gpu\n")
    with pytest.raises(SpecError) as e:
        load_cluster(bad)
    msg = str(e.value)
    assert "partitoin" in msg and "partition" in msg and "array_parallelism" in msg and str(bad.name) in msg


def test_wps_launch_dry_run_prints_scripts_and_submits_nothing(tmp_path, monkeypatch, capsys):
    from worldpm_scaling.cli import main

    monkeypatch.chdir(ROOT)
    sweep = tmp_path / "demo.yaml"
    text = (ROOT / "sweeps" / "demo.yaml").read_text().replace("data/demo/", f"{tmp_path}/nodata/")
    sweep.write_text(text + f"out_dir: {tmp_path / 'out'}\n")
    assert main(["launch", str(sweep), "--cluster", "slurm/local-cluster.yaml", "--dry-run"]) == 2  # no data here
    cap = capsys.readouterr()
    out = cap.out
    assert out.count("#!/bin/bash") == 1 and "#SBATCH --array=0-23%2" in out  # 3 sizes × 8 seeds
    assert "data.source" in cap.err and "data.tokenizer" in cap.err and "eval sets" in cap.err
    assert not (tmp_path / "out" / "launches.jsonl").exists()
