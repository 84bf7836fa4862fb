"""What a researcher sees in the MLflow UI, on a real `mlflow server`: system metrics, dataset inputs
with digests, source tags and the sweep YAML on the parent; the same after an outage (spool + sync);
a dead server costs the end of a run nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from tests.fixtures.mlflow_server import REPO_ROOT, unique_name
from worldpm_scaling.config import DataSpec, EvalSetSpec, EvalSpec, TrackingSpec
from worldpm_scaling.track import open_tracker, query, source
from worldpm_scaling.track.datasets import log_cell_inputs
from worldpm_scaling.track.server import free_port
from worldpm_scaling.track.sync import sync

pytestmark = pytest.mark.integration

SYSTEM_KEYS = (
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/disk_usage_percentage",
    "system/network_receive_megabytes",
)


def _pairs(path, n, tag=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"prompt": f"p{tag}{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(n))
    )
    return path


def _cell_spec(tmp_path, folder: str, rows: int):
    train = _pairs(tmp_path / folder / "train.jsonl", rows, tag=folder)
    ev = _pairs(tmp_path / "evals" / "mine.jsonl", 3)
    return SimpleNamespace(
        data=DataSpec(source=str(train)),
        pairs=rows - 1,
        eval=EvalSpec(sets=("mine",), extra={"mine": EvalSetSpec(category="objective", path=str(ev))}),
    )


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def launched_from(monkeypatch, tmp_path):
    """The environment `wps launch SWEEP.yaml` leaves for its jobs."""
    yaml_file = tmp_path / "mysweep.yaml"
    yaml_file.write_text("name: mysweep\nmodels: [tiny-xs]\n")
    monkeypatch.setenv(source.COMMAND_ENV, f"wps launch {yaml_file} --executor local")
    monkeypatch.setenv(source._OWNER_ENV, "1")
    monkeypatch.setenv(source.SWEEP_FILE_ENV, str(yaml_file))
    monkeypatch.chdir(REPO_ROOT)
    return yaml_file


def test_cell_runs_have_system_metrics_dataset_inputs_and_source(mlflow_server, tmp_path, launched_from):
    sweep = unique_name("researcher")
    tr = open_tracker(
        TrackingSpec(uri=mlflow_server.url, flush_every_s=0.5, system_metrics_interval_s=0.25),
        spool_dir=tmp_path / "spool",
    )
    parent = tr.start_sweep(sweep)
    specs = {"a": _cell_spec(tmp_path, "data_a", 5), "b": _cell_spec(tmp_path, "data_b", 7)}
    ids = {}
    for cid, spec in specs.items():
        run = tr.start_cell(sweep, cid, name=f"cell-{cid}", parent_run_id=parent.run_id)
        log_cell_inputs(run, spec)
        run.log_metrics({"train/loss": 0.7}, step=1)
        time.sleep(1.2)  # several system samples (their counter passes the optimizer step)
        run.log_metrics({"train/loss": 0.6}, step=2)
        run.finish("FINISHED")
        ids[cid] = run.run_id
    client = MlflowClient(mlflow_server.url)
    head, dirty = _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))
    digests = {}
    for cid, run_id in ids.items():
        r = client.get_run(run_id)
        for k in SYSTEM_KEYS:
            assert k in r.data.metrics, (k, sorted(r.data.metrics))
        cpu = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
        assert len(cpu) >= 3 and sorted(m.step for m in cpu) == list(range(len(cpu)))
        assert query.find_cell_runs(mlflow_server.url, sweep)[cid].last_step == 2  # not the sample counter
        got = {
            (
                i.dataset.name,
                i.dataset.digest,
                dict((t.key, t.value) for t in i.tags)["mlflow.data.context"],
                json.loads(i.dataset.profile)["num_rows"],
            )
            for i in r.inputs.dataset_inputs
        }
        train_file = tmp_path / f"data_{cid}" / "train.jsonl"
        want_digest = hashlib.sha256(train_file.read_bytes()).hexdigest()[:10]
        mine = hashlib.sha256((tmp_path / "evals" / "mine.jsonl").read_bytes()).hexdigest()[:10]
        assert got == {
            (f"data_{cid}/train.jsonl", want_digest, "training", 5 if cid == "a" else 7),
            ("mine", mine, "evaluation", 3),
        }
        digests[cid] = want_digest
        tags = r.data.tags
        assert tags["mlflow.source.name"] == f"wps launch {launched_from} --executor local"
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.git.commit"] == head
        assert tags["wps.git.dirty"] == ("true" if dirty else "false")
    assert digests["a"] != digests["b"]  # two runs on different data are visibly different
    p = client.get_run(parent.run_id)
    assert (
        p.data.tags["mlflow.source.name"].startswith("wps launch ") and p.data.tags["mlflow.source.git.commit"] == head
    )
    assert "system/cpu_utilization_percentage" not in p.data.metrics  # the sweep parent samples nothing
    art = client.download_artifacts(parent.run_id, f"sweep/{launched_from.name}", str(tmp_path / "dl"))
    assert open(art).read() == launched_from.read_text()
    # a requeued job reattaching logs the same inputs again: still one input per dataset
    again = tr.start_cell(sweep, "a", name="cell-a", parent_run_id=parent.run_id)
    log_cell_inputs(again, specs["a"])
    again.finish("FINISHED")
    assert len(client.get_run(ids["a"]).inputs.dataset_inputs) == 2


def test_system_metrics_off_with_one_switch(mlflow_server, tmp_path):
    sweep = unique_name("nosys")
    tr = open_tracker(
        TrackingSpec(uri=mlflow_server.url, system_metrics=False, system_metrics_interval_s=0.1),
        spool_dir=tmp_path / "spool",
    )
    run = tr.start_cell(sweep, "c", name="c", parent_run_id=tr.start_sweep(sweep).run_id)
    run.log_metrics({"train/loss": 0.7}, step=1)
    time.sleep(0.5)
    run.finish("FINISHED")
    assert set(MlflowClient(mlflow_server.url).get_run(run.run_id).data.metrics) == {"train/loss"}


def test_dead_server_spools_everything_and_finish_does_not_wait(mlflow_server, tmp_path, launched_from):
    """A server away for the whole run: system metrics, inputs and tags go to the spool, finish()
    returns at once (it used to sleep its 60 s finish_wait_s), and `wps sync` delivers all of it."""
    sweep = unique_name("deadsys")
    dead = f"http://127.0.0.1:{free_port()}"
    tr = open_tracker(
        TrackingSpec(uri=dead, flush_every_s=0.2, system_metrics_interval_s=0.2), spool_dir=tmp_path / "spool"
    )
    assert tr._kw["finish_wait_s"] == 60.0  # the default, so the timing below means something
    parent = tr.start_sweep(sweep)
    run = tr.start_cell(sweep, "z", name="cell-z", parent_run_id=parent.run_id)
    log_cell_inputs(run, _cell_spec(tmp_path, "data_z", 4))
    for s in range(1, 6):
        run.log_metrics({"train/loss": 1.0 / s}, step=s)
        time.sleep(0.15)
    t0 = time.monotonic()
    run.finish("FINISHED")
    assert time.monotonic() - t0 < 10
    spooled = (tmp_path / "spool" / "cell-z.jsonl").read_text()
    assert "system/cpu_utilization_percentage" in spooled and spooled.count('"train/loss"') == 5
    sync(tmp_path / "spool", mlflow_server.url)
    info = query.find_cell_runs(mlflow_server.url, sweep)["z"]
    r = MlflowClient(mlflow_server.url).get_run(info.run_id)
    assert info.status == "FINISHED" and info.last_step == 5 and "system/cpu_utilization_percentage" in r.data.metrics
    assert {i.dataset.name for i in r.inputs.dataset_inputs} == {"data_z/train.jsonl", "mine"}
    assert r.data.tags["mlflow.source.name"] == f"wps launch {launched_from} --executor local"
