"""The reduced demo, end to end (issue 9): synthetic forum → scheduler (SLURM when it can start,
else submitit's local executor) → MLflow server → training → analysis. Checks every stage's output:
cells FINISHED in MLflow with contiguous steps, fits with intervals in the report, figures written.
With CI=true the demo must run on SLURM (DEMO_EXECUTOR=slurm: no silent fall-back to local), and the
cells' own tags say which executor ran them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap

import pytest

from worldpm_scaling.track.server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_reduced_demo(tmp_path, repo):
    data, out = tmp_path / "data", tmp_path / "out"
    sweep = tmp_path / "e2e.yaml"
    sweep.write_text(
        textwrap.dedent(f"""\
        name: e2e-demo
        models: [tiny-xs, tiny-s]
        mode: milestones
        data: {{source: {data}/train.parquet, tokenizer: {data}/tokenizer.json, pairs: 1024, tokens_per_pair: 125}}
        milestones: {{start_log2: 6}}
        train: {{lr: 1.0e-3, ctx_len: 256, global_batch_pairs: 32, micro_batch_pairs: 32, precision: fp32,
                 zero_stage: 0, checkpoint_every_steps: 8, warmup_frac: 0.05}}
        eval: {{dir: {data}/evals, max_pairs_per_set: 48}}
        cluster: {repo}/slurm/local.yaml
        out_dir: {out}/sweep
        """)
    )
    port = free_port()
    env = {
        **os.environ,
        "DEMO_SWEEP": str(sweep),
        "DEMO_OUT": str(out),
        "DEMO_DATA": str(data),
        "DEMO_PAIRS": "1500",
        "DEMO_PORT": str(port),
        "DEMO_STORE": str(tmp_path / "mlflow.db"),
        "DEMO_ARTIFACTS": str(tmp_path / "artifacts"),
        "BIN": str(repo / ".venv/bin"),
    }
    ci = os.environ.get("CI", "").lower() == "true"
    if ci:
        env["DEMO_EXECUTOR"] = "slurm"
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        r = subprocess.run(
            ["bash", str(repo / "scripts/demo.sh")], cwd=repo, env=env, capture_output=True, text=True, timeout=900
        )
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        # stage 1: data
        assert (data / "train.parquet").stat().st_size > 0 and len(list((data / "evals").glob("*.jsonl"))) == 12
        # stage 2–5: every cell FINISHED in MLflow, steps 1..n each exactly once
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"http://127.0.0.1:{port}")
        exp = client.get_experiment_by_name("e2e-demo")
        runs = client.search_runs([exp.experiment_id])
        cells = [x for x in runs if "cell_id" in x.data.tags]
        parents = [x for x in runs if "cell_id" not in x.data.tags]
        assert len(cells) == 2 and len(parents) == 1
        assert parents[0].info.status == "FINISHED", "launch --wait closes the sweep's parent run"
        ran = (out / "executor").read_text().strip()
        assert ran in ("slurm", "local") and (ran == "slurm" or not ci), f"CI=true but the demo ran on {ran}"
        for c in cells:
            assert c.data.tags.get("executor") == ran, (c.data.tags.get("executor"), ran)
            assert c.info.status == "FINISHED"
            assert c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            steps = sorted(m.step for m in client.get_metric_history(c.info.run_id, "train/loss"))
            assert steps == list(range(1, len(steps) + 1)) and len(steps) == 1024 // 32
            evals = client.get_metric_history(c.info.run_id, "eval/adversarial/loss")
            assert len(evals) == 5  # milestones 64 … 1024
        # stage 6: analysis
        report = (out / "report.md").read_text()
        assert "| adversarial | tiny-xs |" in report and "90% CI" in report
        for stem in ("loss_vs_pairs", "loss_vs_compute", "grad_norm"):
            for ext in ("pdf", "png"):
                assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 5000
        assert "fitted L = A·pairs^-α" in r.stdout and f"http://127.0.0.1:{port}/#/experiments/" in r.stdout
    finally:
        pid = out / "mlflow-server.pid"
        if pid.is_file():
            try:
                os.killpg(int(pid.read_text()), signal.SIGTERM)
            except (ProcessLookupError, PermissionError, ValueError):
                pass
