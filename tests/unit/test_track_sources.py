"""Pure parts of the researcher-facing MLflow logging: source tags, dataset digests, system-metric
sampling through a Tracker run (no server: an InMemory run or an offline MlflowRun)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from types import SimpleNamespace

import pytest

from worldpm_scaling.config import DataSpec, EvalSetSpec, EvalSpec
from worldpm_scaling.track import datasets, source
from worldpm_scaling.track.memory import InMemoryTracker
from worldpm_scaling.track.mlflow_tracker import MlflowRun
from worldpm_scaling.track.system_metrics import RunSystemMetrics, next_system_step

pytestmark = pytest.mark.unit


def _git(cwd, *args):
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
        },
    )


def test_git_state_commit_and_dirty_flag(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-qm", "one")
    _git(tmp_path, "remote", "add", "origin", "https://user:s3cr3t-token@example.org/r.git")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    st = source.git_state(str(tmp_path))
    assert st[source.GIT_COMMIT] == head and st[source.GIT_BRANCH] == "main"
    assert st[source.DIRTY_TAG] == "false"
    assert "s3cr3t-token" not in st[source.GIT_REPO] and "example.org/r.git" in st[source.GIT_REPO]
    (tmp_path / "a.txt").write_text("2")  # a tracked file changed: dirty
    assert source.git_state(str(tmp_path))[source.DIRTY_TAG] == "true"


def test_source_tags_name_the_launch_command_and_job_kind(tmp_path):
    env = {}
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("name: s\n")
    source.remember_command(["launch", str(yaml_file), "--executor", "local"], environ=env)
    assert env[source.COMMAND_ENV] == f"wps launch {yaml_file} --executor local"
    assert env[source.SWEEP_FILE_ENV] == str(yaml_file.resolve())
    # a second command in the same process replaces it; one set by another process (the launcher) stays
    source.remember_command(["status", "nope.yaml"], environ=env)
    assert env[source.COMMAND_ENV] == "wps status nope.yaml" and source.SWEEP_FILE_ENV not in env
    outer = {source.COMMAND_ENV: "wps launch x.yaml", source._OWNER_ENV: "1"}
    source.remember_command(["train", "x.yaml", "--cell", "0"], environ=outer)
    assert outer[source.COMMAND_ENV] == "wps launch x.yaml"
    tags = source.source_tags({source.COMMAND_ENV: "wps launch x.yaml", "SLURM_JOB_ID": "7"}, cwd=str(tmp_path))
    assert tags[source.SOURCE_NAME] == "wps launch x.yaml" and tags[source.SOURCE_TYPE] == "JOB"
    assert source.source_tags({}, cwd=str(tmp_path))[source.SOURCE_TYPE] == "LOCAL"


def _pairs(path, n):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(n)))
    return path


def test_cell_inputs_digest_rows_and_context(tmp_path):
    train = _pairs(tmp_path / "d1" / "train.jsonl", 5)
    ev = _pairs(tmp_path / "ev" / "mine.jsonl", 3)
    spec = SimpleNamespace(
        data=DataSpec(source=str(train)),
        pairs=4,
        eval=EvalSpec(
            sets=("mine", "gone"),
            dir=str(tmp_path / "ev"),
            extra={
                "mine": EvalSetSpec(category="objective", path=str(ev)),
                "gone": EvalSetSpec(category="subjective", path=str(tmp_path / "no.jsonl")),
            },
        ),
    )
    recs = datasets.cell_inputs(spec)
    assert [(r["name"], r["context"]) for r in recs] == [("d1/train.jsonl", "training"), ("mine", "evaluation")]
    assert recs[0]["digest"] == hashlib.sha256(train.read_bytes()).hexdigest()[:10]
    prof = json.loads(recs[0]["profile"])
    assert prof["num_rows"] == 5 and prof["pairs_used"] == 4 and prof["digest_kind"] == "sha256"
    assert json.loads(recs[1]["profile"])["category"] == "objective"
    assert json.loads(recs[0]["source"])["uri"] == str(train.resolve()) and recs[0]["source_type"] == "local"
    # different bytes, different digest; same bytes elsewhere, same digest
    other = _pairs(tmp_path / "d2" / "train.jsonl", 6)
    assert datasets.file_digest(other)[0] != recs[0]["digest"]
    (tmp_path / "d3").mkdir()
    (tmp_path / "d3" / "train.jsonl").write_bytes(train.read_bytes())
    assert datasets.file_digest(tmp_path / "d3" / "train.jsonl")[0] == recs[0]["digest"]
    run = InMemoryTracker().start_cell("s", "c", name="c")
    assert datasets.log_cell_inputs(run, spec) == recs and run.inputs == recs


def test_large_files_get_a_sampled_digest_that_still_sees_the_middle(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FULL_HASH_MAX", 1000)
    monkeypatch.setattr(datasets, "WINDOW", 100)
    datasets._digest.cache_clear()
    p = tmp_path / "big.jsonl"
    p.write_bytes(b"x" * 5000)
    d1, kind = datasets.file_digest(p)
    assert kind == "sha256-sampled"
    p.write_bytes(b"x" * 2500 + b"y" + b"x" * 2499)  # one byte changed in the middle window
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert datasets.file_digest(p)[0] != d1
    datasets._digest.cache_clear()


def test_unreadable_data_is_a_warning_not_a_failed_job(tmp_path, capsys):
    spec = SimpleNamespace(data=DataSpec(source=str(tmp_path / "missing.jsonl")), pairs=1, eval=EvalSpec(sets=()))
    run = InMemoryTracker().start_cell("s", "c", name="c")
    assert datasets.log_cell_inputs(run, spec) == [] and run.inputs == []
    assert "missing.jsonl" in capsys.readouterr().err


def test_system_metrics_sample_through_the_run_and_resume_their_counter():
    run = InMemoryTracker().start_cell("s", "c", name="c")
    run.last_steps = lambda: {"train/loss": 3, "system/cpu_utilization_percentage": 6}
    mon = RunSystemMetrics(run, interval_s=0.05)
    assert mon._logging_step == 7  # after the run's last system step, like MLflow's resume_logging
    mon.start()
    time.sleep(0.4)
    mon.finish()
    hist = run.history("system/cpu_utilization_percentage")
    assert len(hist) >= 3 and hist[0][0] == 7
    keys = set(run.metrics)
    for k in (
        "system/system_memory_usage_megabytes",
        "system/disk_usage_percentage",
        "system/network_receive_megabytes",
    ):
        assert k in keys
    assert next_system_step({"train/loss": 9}) == 0
    with pytest.raises(ValueError, match="system_metrics_interval_s"):
        RunSystemMetrics(run, interval_s=0)


def test_node_id_prefixes_keys():
    run = InMemoryTracker().start_cell("s", "c", name="c")
    mon = RunSystemMetrics(run, interval_s=10, node_id="node3")
    mon.collect_metrics()
    mon.publish_metrics(mon.aggregate_metrics())
    assert any(k.startswith("system/node3/cpu_") for k in run.metrics)


def test_last_step_is_the_optimizer_step_not_the_sample_counter(tmp_path):
    from worldpm_scaling.track.spool import Spool

    run = MlflowRun(store=None, spool=Spool(tmp_path), key="cell-x", run_id=None, background=False, finish_wait_s=0)
    run.log_metrics({"train/loss": 0.5}, step=2)
    run.log_metrics({"system/cpu_utilization_percentage": 10.0}, step=40)
    assert run.last_step() == 2
    run.finish("FINISHED")
