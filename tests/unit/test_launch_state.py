"""Sweep state on disk: launches.jsonl, done markers, skip/resubmit decisions, status rows."""

import json
from pathlib import Path

import pytest

from worldpm_scaling.config import load_sweep
from worldpm_scaling.launch import launches, pending_cells, sweep_status
from worldpm_scaling.launch.job import read_marker, write_marker
from worldpm_scaling.plan import plan

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    y = tmp_path / "demo.yaml"
    import yaml

    d = yaml.safe_load((ROOT / "sweeps" / "demo.yaml").read_text())
    d.update(
        seeds=[0], out_dir=str(tmp_path / "out"), tracking={"backend": "mlflow", "uri": f"sqlite:///{tmp_path}/none.db"}
    )
    y.write_text(yaml.safe_dump(d))
    return plan(load_sweep(y))


def test_finished_cells_are_skipped_failed_ones_resubmitted(demo):
    a, b, c = demo.runs
    write_marker(a.out_dir, "FINISHED", steps=3)
    write_marker(b.out_dir, "FAILED", error="x")
    todo, done = pending_cells(demo)
    assert [r.cell_id for r in done] == [a.cell_id]
    assert [r.cell_id for r in todo] == [b.cell_id, c.cell_id]


def test_marker_write_is_atomic_and_readable(tmp_path):
    write_marker(str(tmp_path), "RUNNING", job_id="7")
    write_marker(str(tmp_path), "FINISHED", steps=9)
    assert read_marker(str(tmp_path))["status"] == "FINISHED"
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "status.json").write_text("{broken")
    assert read_marker(str(tmp_path)) == {}


def test_latest_launch_per_cell_wins(tmp_path):
    lines = [
        {"cell_id": "a", "job_id": "1_0", "executor": "slurm"},
        {"cell_id": "b", "job_id": "1_1", "executor": "slurm"},
        {"cell_id": "a", "job_id": "5_0", "executor": "slurm"},
    ]
    (tmp_path / "launches.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rec = launches(tmp_path)
    assert rec["a"]["job_id"] == "5_0" and rec["b"]["job_id"] == "1_1"
    assert launches(tmp_path / "nothing") == {}


def test_status_rows_from_markers_and_dead_local_jobs(demo):
    a, b, c = demo.runs
    write_marker(a.out_dir, "FINISHED", steps=3, pairs_seen=64)
    write_marker(b.out_dir, "RUNNING")
    out = Path(demo.sweep.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # job ids of local jobs are pids; 2**22+1 exceeds pid_max, so that process is certainly gone
    (out / "launches.jsonl").write_text(
        json.dumps({"cell_id": b.cell_id, "job_id": str(2**22 + 1), "executor": "local"}) + "\n"
    )
    rows = {r["cell_id"]: r for r in sweep_status(demo)}
    assert rows[a.cell_id]["state"] == "FINISHED" and rows[a.cell_id]["pairs_seen"] == 64
    assert rows[b.cell_id]["state"] == "FAILED", "a local job that died while RUNNING is reported failed"
    assert rows[c.cell_id]["state"] == "NOT LAUNCHED"
    assert not Path(demo.sweep.tracking.uri[len("sqlite:///") :]).exists(), "status must not create the MLflow db"


def test_progress_line_for_logs_names_every_cell():
    from worldpm_scaling.cli.launch import _progress_line

    rows = [
        {"model": "tiny-xs", "state": "FINISHED", "pairs_seen": 4096, "pairs_budget": 4096, "loss": 0.41234},
        {"model": "tiny-m", "state": "SUBMITTED", "pairs_seen": None, "pairs_budget": 4096, "loss": None},
    ]
    assert _progress_line(rows) == "1/2 finished | tiny-xs FINISHED 4,096/4,096 loss 0.412 | tiny-m SUBMITTED 0/4,096"
    seeded = [{**r, "seed": s} for r in rows for s in (0, 1)]  # a sweep with seeds: each cell says which
    assert _progress_line(seeded).startswith(
        "2/4 finished | tiny-xs s0 FINISHED"
    ) and "tiny-m s1 SUBMITTED" in _progress_line(seeded)


def test_progress_line_of_a_large_sweep_names_only_the_cells_at_work():
    from worldpm_scaling.cli.launch import _progress_line

    def row(state, seed, seen=None, loss=None):
        return {
            "model": "tiny-sm",
            "seed": seed,
            "state": state,
            "pairs_seen": seen,
            "pairs_budget": 8192,
            "loss": loss,
        }

    rows = (
        [row("FINISHED", s, 8192, 0.3) for s in range(8)]
        + [row("RUNNING", 8, 4000, 0.6234), row("FAILED", 9, 96)]
        + [row("SUBMITTED", s) for s in range(10, 24)]
    )
    assert _progress_line(rows) == (
        "8/24 finished | 14 SUBMITTED | tiny-sm s8 RUNNING 4,000/8,192 loss 0.623 | tiny-sm s9 FAILED 96/8,192"
    )


def test_status_table_has_a_seed_column_and_never_wraps_at_80_columns():
    from rich.console import Console

    from worldpm_scaling.cli.launch import _table

    rows = [
        {
            "index": i,
            "cell_id": f"{i:010x}",
            "model": "tiny-s-2l",
            "seed": i % 4,
            "job_id": f"1234_{i}",
            "state": "NOT LAUNCHED",
            "mlflow": "FINISHED",
            "pairs_seen": 8192,
            "pairs_budget": 8192,
            "loss": 0.1234,
        }
        for i in range(12)
    ]
    con = Console(width=80, record=True)
    con.print(_table(rows, "sweep demo"))
    lines = con.export_text().splitlines()
    assert "seed" in lines[1] and sum("NOT LAUNCHED" in x for x in lines) == 12
    assert len([x for x in lines if x.strip()]) == 2 + 1 + 12  # title, header, rule, one line per cell
    assert all("…" not in x for x in lines)
    con = Console(width=80, record=True)
    con.print(_table([{**r, "seed": 0} for r in rows], "sweep demo"))
    assert "seed" not in con.export_text()  # one seed: no column


def test_sweep_outcome_is_the_truth_about_every_cell():
    from worldpm_scaling.launch import sweep_outcome

    rows = lambda *states: [{"state": s} for s in states]
    assert sweep_outcome(rows("FINISHED", "FINISHED")) == "FINISHED"
    assert sweep_outcome(rows("FINISHED", "RUNNING")) is None  # not over yet: leave the parent alone
    assert sweep_outcome(rows("FINISHED", "SUBMITTED")) is None
    assert sweep_outcome(rows("FINISHED", "CANCELLED")) == "KILLED"
    assert sweep_outcome(rows("CANCELLED", "FAILED", "FINISHED")) == "FAILED"
    assert sweep_outcome(rows("TIMEOUT")) == "FAILED"
    assert sweep_outcome([]) is None
