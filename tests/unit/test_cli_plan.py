import json
import subprocess
import sys

import pytest

from worldpm_scaling.cli import main


def test_plan_table(repo, capsys):
    assert main(["plan", str(repo / "sweeps/worldpm.yaml")]) == 0
    out = capsys.readouterr().out
    for needle in ("qwen2.5-1.5b", "qwen2.5-7b", "qwen2.5-72b", "GPU-h", "milestone mode saves"):
        assert needle in out


def test_plan_json_keys(repo, capsys):
    assert main(["plan", str(repo / "sweeps/worldpm.yaml"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    for key in ("cell_id", "model", "params_non_embedding", "pairs", "tokens", "flops", "gpus", "gpu_hours"):
        assert all(key in r for r in rows)


def test_plan_csv(repo, capsys):
    assert main(["plan", str(repo / "sweeps/demo.yaml"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("index,cell_id,model") and len(lines) == 1 + 3 * 8  # header, 3 sizes × 8 seeds


@pytest.mark.parametrize(
    "text,field",
    [
        ("name: t\nmodels: [tiny-xs\n", "YAML syntax error"),
        ("name: t\nmodels: [tiny-xs]\nbogus: 1\n", "bogus"),
        ("name: t\nmodels: [nope]\ndata: {tokens_per_pair: 1}\n", "models[0]"),
        ("name: t\nmodels: [tiny-xs]\ndata: {pairs: 0, tokens_per_pair: 1}\n", "data.pairs"),
        (
            "name: t\nmodels: [tiny-xs]\ndata: {pairs: 100, tokens_per_pair: 1}\nmilestones: {pairs: [200]}\n",
            "milestones.pairs[0]",
        ),
        (
            "name: t\nmodels: [qwen2.5-72b]\ndata: {source: x.parquet, tokens_per_pair: 2000}\nmilestones: {start_log2: 14}\ncluster: {gpu_type: A100-40G, gpus_per_node: 8, max_nodes: 1}\n",
            "models[0]",
        ),
    ],
)
def test_plan_bad_input_exits_2(tmp_path, capsys, text, field):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    assert main(["plan", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and field in err


def test_console_script_and_module(repo):
    r = subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", "plan", str(repo / "sweeps/demo.yaml"), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(r.stdout)[0]["model"] == "tiny-xxxs"


def test_plan_shows_micro_batches_and_compute_comm_eval_hours(repo, capsys):
    args = ["plan", str(repo / "sweeps/worldpm.yaml"), "--cluster", str(repo / "slurm/h100.yaml")]
    assert main(args + ["--wide"]) == 0
    out = capsys.readouterr().out
    for needle in ("micro", "compute-h", "comm-h", "eval-h", "init"):
        assert needle in out
    assert main(args + ["--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["model"]: r for r in rows}
    assert by["qwen2.5-72b"]["micro_batch_pairs"] >= 8 and by["qwen2.5-72b"]["comm_hours"] > 1
    for r in rows:
        assert r["hours"] == pytest.approx(r["compute_hours"] + r["comm_hours"] + r["eval_hours"], abs=1e-3)
        assert r["step_seconds"] > 0 and r["checkpoint_seconds"] > 0


def test_the_plan_table_fits_100_columns_and_wide_shows_the_rest(repo, capsys):
    """Issue 31: the table was over 200 columns wide, unreadable in an 80- or 100-column terminal."""
    assert main(["plan", str(repo / "sweeps/worldpm.yaml"), "--cluster", str(repo / "slurm/h100.yaml")]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100 and "GPU-h" in out and "--wide" in out
    assert main(["plan", str(repo / "sweeps/demo.yaml"), "--wide"]) == 0
    assert "compute-h" in capsys.readouterr().out
