"""Bad input that needs a real process: read-only output folders (as root too: the child runs without
CAP_DAC_OVERRIDE) for `wps data stackexchange` and `wps data synth` are a named error, exit 2, no
traceback, and what the folder held before is untouched. (`wps train` is in test_train_cli.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.integration.test_train_cli import unprivileged

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POSTS = REPO / "tests" / "fixtures" / "stackexchange" / "Posts.xml"


def wps_unprivileged(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*unprivileged(), sys.executable, "-m", "worldpm_scaling", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )


@pytest.mark.parametrize("where", ["folder", "parent"])
@pytest.mark.parametrize("command", [["data", "stackexchange", POSTS], ["data", "synth", "--pairs", "50"]])
def test_a_read_only_output_folder_is_a_named_error(tmp_path, where, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("earlier results")
    out = ro if where == "folder" else ro / "new"
    ro.chmod(0o555)
    try:
        r = wps_unprivileged(*command, "--out", out)
    finally:
        ro.chmod(0o755)
    assert r.returncode == 2, r.stdout[-1000:] + r.stderr[-2000:]
    assert r.stderr.lstrip().startswith("error: permission denied") and str(ro) in r.stderr, r.stderr  # after a bar
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in ro.iterdir()) == ["keep.txt"] and (ro / "keep.txt").read_text() == "earlier results"


# -- wps sync (issue 31): nothing lost silently ------------------------------------------------------

from worldpm_scaling.cli import main as wps_main  # noqa: E402 — this section (issue 31) keeps its imports
from worldpm_scaling.track.spool import Spool, cell_key  # noqa: E402 — the same


def _spooled_cell(
    folder: Path,
    sweep: str,
    cell: str,
    *,
    points: int = 20,
    status: str | None = "FINISHED",
    keys: tuple[str, ...] = ("train/loss",),
) -> Spool:
    """A cell's spool as an offline job leaves it: metadata, points (one per key and step), final status."""
    sp = Spool(folder)
    sp.update_meta(
        cell_key(cell),
        role="cell",
        sweep=sweep,
        cell_id=cell,
        name=cell,
        experiment=sweep,
        **({"status": status} if status else {}),
    )
    sp.append(cell_key(cell), [(k, float(s), 1_700_000_000_000 + s, s) for s in range(points) for k in keys])
    return sp


def _run(uri: str, sweep: str, cell: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(sweep)
    (run,) = c.search_runs([exp.experiment_id], filter_string=f"tags.cell_id = '{cell}'")
    return c, run


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One SQLite MLflow store for the module (each test its own sweep name): creating one costs seconds."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('sync_store') / 'mlflow.db'}"
    MlflowClient(uri).search_experiments(max_results=1)
    return uri


def test_sync_of_a_launched_sweep_folder_skips_files_that_are_not_spools(tmp_path, store_uri, capsys):
    """README's `wps sync out/demo`: launches.jsonl, job logs and eval files sit beside the spools."""
    out = tmp_path / "out" / "demo"
    (out / "jobs" / "123").mkdir(parents=True)
    (out / "launches.jsonl").write_text('{"cell_id": "c1", "job_id": "123", "executor": "local"}\n')
    (out / "jobs" / "123" / "123_0_log.out").write_text("training …\n")
    (out / "evals.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    _spooled_cell(out / "cells" / "c1" / "spool", "sync-launched", "c1")
    before = (out / "launches.jsonl").read_bytes()
    assert wps_main(["sync", str(out), "--uri", store_uri]) == 0, capsys.readouterr().err
    assert "20 points sent" in capsys.readouterr().out
    c, run = _run(store_uri, "sync-launched", "c1")
    assert run.info.status == "FINISHED" and len(c.get_metric_history(run.info.run_id, "train/loss")) == 20
    assert (out / "launches.jsonl").read_bytes() == before


def test_a_garbage_points_file_is_reported_and_the_run_is_not_marked_finished(tmp_path, store_uri, capsys):
    sp = _spooled_cell(tmp_path / "spool", "sync-garbage", "c2", points=5)
    with open(sp.dir / "cell-c2.jsonl", "ab") as f:
        f.write(b'\x00\x17garbage that is not a record\n{"k": "train/loss", "v": "x"}\n')
    rc = wps_main(["sync", str(tmp_path / "spool"), "--uri", store_uri])
    err = capsys.readouterr().err
    assert rc == 2 and "2 point(s) not sent" in err and "cell-c2" in err and "not metric records" in err, err
    c, run = _run(store_uri, "sync-garbage", "c2")
    assert run.info.status != "FINISHED" and "wps.sync_incomplete" in run.data.tags
    assert len(c.get_metric_history(run.info.run_id, "train/loss")) == 5  # the good points are all there


def test_a_points_file_that_is_all_garbage_never_gives_a_finished_run_with_no_metrics(tmp_path, store_uri, capsys):
    sp = Spool(tmp_path / "spool")
    sp.update_meta(cell_key("c3"), role="cell", sweep="sync-allgarbage", cell_id="c3", name="c3", status="FINISHED")
    (sp.dir / "cell-c3.jsonl").write_bytes(b"\x89PNG\r\x1a binary, no newline at all")
    rc = wps_main(["sync", str(tmp_path / "spool"), "--uri", store_uri])
    err = capsys.readouterr().err
    assert rc == 2 and "cut short" in err and "1 point(s) not sent" in err, err
    _, run = _run(store_uri, "sync-allgarbage", "c3")
    assert run.info.status != "FINISHED"


def test_a_resume_cursor_past_the_end_still_sends_everything(tmp_path, store_uri, capsys):
    sp = _spooled_cell(tmp_path / "spool", "sync-cursor", "c4", points=12)
    sp.set_cursor(cell_key("c4"), 10**9)
    assert wps_main(["sync", str(tmp_path / "spool"), "--uri", store_uri, "--resume-cursor"]) == 0
    cap = capsys.readouterr()
    assert "12 points sent" in cap.out and "past the end" in cap.err, cap
    c, run = _run(store_uri, "sync-cursor", "c4")
    assert len(c.get_metric_history(run.info.run_id, "train/loss")) == 12 and run.info.status == "FINISHED"


def test_a_key_the_server_refuses_loses_only_its_points_and_is_reported(tmp_path, store_uri, capsys):
    _spooled_cell(tmp_path / "spool", "sync-refused", "c5", points=10, keys=("train/loss", "bad@key"))
    rc = wps_main(["sync", str(tmp_path / "spool"), "--uri", store_uri])
    err = capsys.readouterr().err
    assert rc == 2 and "10 point(s) not sent" in err and "'bad@key'" in err, err
    c, run = _run(store_uri, "sync-refused", "c5")
    assert len(c.get_metric_history(run.info.run_id, "train/loss")) == 10  # the other key got through
    assert run.info.status != "FINISHED"


def test_an_unreadable_spool_folder_is_an_error_not_nothing_to_sync(tmp_path, store_uri):
    _spooled_cell(tmp_path / "out" / "cells" / "c6" / "spool", "sync-unreadable", "c6")
    locked = tmp_path / "out" / "cells"
    locked.chmod(0o000)
    try:
        r = wps_unprivileged("sync", tmp_path / "out", "--uri", store_uri)
    finally:
        locked.chmod(0o755)
    assert r.returncode == 2 and "cannot list" in r.stderr and str(locked) in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "nothing to sync" not in r.stdout


def test_wps_status_is_read_only_even_when_every_cell_has_ended(tmp_path, store_uri, monkeypatch, capsys):
    """A view that wrote: `wps status` used to end the sweep's parent MLflow run once all cells ended."""
    import json

    import yaml

    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.plan import plan
    from worldpm_scaling.track.mlflow_store import Store
    from worldpm_scaling.track.sync import sweep_run

    monkeypatch.chdir(tmp_path)
    spec = {
        "name": "status-ro",
        "models": ["tiny-xxxs"],
        "init": "random",
        "data": {"source": "x.parquet", "pairs": 256, "tokens_per_pair": 100},
        "milestones": {"start_log2": 6},
        "train": {"global_batch_pairs": 32, "micro_batch_pairs": 16},
        "tracking": {"backend": "mlflow", "uri": store_uri},
        "out_dir": str(tmp_path / "out"),
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    run = plan(load_sweep(tmp_path / "s.yaml")).runs[0]
    Path(run.out_dir).mkdir(parents=True)
    (Path(run.out_dir) / "status.json").write_text(json.dumps({"status": "FINISHED", "pairs_seen": 256}))
    parent = sweep_run(Store(store_uri), "status-ro")
    before = Store(store_uri).client.get_run(parent).info.status
    assert wps_main(["status", "s.yaml"]) == 0, capsys.readouterr().err
    assert "FINISHED" in capsys.readouterr().out
    assert Store(store_uri).client.get_run(parent).info.status == before == "RUNNING"


@pytest.mark.parametrize("meta", [b"[1, 2]", b"\xff\xfe\x00binary", b'{"role": "cell"'])
def test_bad_run_metadata_is_named_and_the_other_runs_still_sync(tmp_path, store_uri, capsys, meta):
    _spooled_cell(tmp_path / "spool", "sync-meta", "ok1", points=4)
    bad = _spooled_cell(tmp_path / "spool", "sync-meta", "bad1", points=4)
    (bad.dir / "cell-bad1.meta.json").write_bytes(meta)
    rc = wps_main(["sync", str(tmp_path / "spool"), "--uri", store_uri])
    err = capsys.readouterr().err
    assert rc == 2 and "cell-bad1" in err and "not replayed" in err and "(a bug" not in err, err
    c, run = _run(store_uri, "sync-meta", "ok1")
    assert len(c.get_metric_history(run.info.run_id, "train/loss")) == 4
