"""Pure parts of the tracking layer: secret scrubbing, batching, spool format, offline runs."""

from __future__ import annotations

import json

import pytest

from worldpm_scaling.config import TrackingSpec
from worldpm_scaling.track import InMemoryTracker, Run, Tracker, open_tracker
from worldpm_scaling.track.mlflow_store import step_chunks
from worldpm_scaling.track.mlflow_tracker import MlflowTracker, job_tags
from worldpm_scaling.track.secrets import is_secret_name, mask_uri, scrub
from worldpm_scaling.track.spool import Spool, SpoolError, cell_key, find_spools, sweep_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "name",
    [
        "MLFLOW_TRACKING_TOKEN",
        "HF_TOKEN",
        "db.password",
        "api_key",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_TRACKING_PASSWORD",
        "Authorization",
        "ssh_key",
        "auth_token",
        "pg_pwd",
    ],
)
def test_secret_names_are_recognised(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "train/tokens_seen",
        "data.tokenizer",
        "data.tokens_per_pair",
        "data.max_prompt_tokens",
        "model.name",
        "author",
        "monkey",
        "tracking.uri",
        "eval.sets",
    ],
)
def test_ordinary_names_are_kept(name):
    assert not is_secret_name(name)


def test_mask_uri_hides_passwords_and_query_secrets():
    assert (
        mask_uri("postgresql://u:pw@h:5432/db?sslmode=require&password=x")
        == "postgresql://u:***@h:5432/db?sslmode=require&password=***"
    )
    assert mask_uri("https://ghp_abc123@github.com/o/r") == "https://***@github.com/o/r"
    assert mask_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_scrub_drops_secret_keys_env_values_and_truncates():
    env = {"WANDB_API_KEY": "sk-live-abcdef", "HOME": "/root"}
    out = scrub(
        {
            "db.password": "p",
            "note": "uses sk-live-abcdef",
            "uri": "mysql://a:b@h/d",
            "lr": 0.1,
            "long": "y" * 7000,
            "home": "/root",
        },
        environ=env,
    )
    assert out == {"uri": "mysql://a:***@h/d", "lr": "0.1", "long": "y" * 6000, "home": "/root"}


def test_step_chunks_never_split_a_step_and_respect_the_limit():
    pts = [(f"k{i}", 0.0, 0, s) for s in range(1, 8) for i in range(3)]  # 7 steps × 3 keys
    chunks = step_chunks(pts, limit=7)
    assert [len(c) for c in chunks] == [6, 6, 6, 3]
    assert [p for c in chunks for p in c] == pts
    for c in chunks:  # a step lives in exactly one chunk
        assert all({p[3] for p in c}.isdisjoint({p[3] for p in d}) for d in chunks if d is not c)
    big = [(f"k{i}", 0.0, 0, 1) for i in range(5)]  # one step larger than the limit: split alone
    assert [len(c) for c in step_chunks(big, limit=2)] == [2, 2, 1]
    assert step_chunks([]) == []


def test_spool_append_read_cursor_and_torn_lines(tmp_path):
    sp = Spool(tmp_path / "s")
    assert sp.append("cell-a", [("m", 1.0, 10, 1), ("m", 2.0, 11, 2)]) == 2
    with open(tmp_path / "s" / "cell-a.jsonl", "ab") as f:
        f.write(b'{"k": "m", "v": 3.0, "t')  # a writer killed mid-line
    pts, end = sp.read("cell-a")
    assert pts == [("m", 1.0, 10, 1), ("m", 2.0, 11, 2)]
    sp.append("cell-a", [("m", 4.0, 12, 4)])  # closes the torn line first
    pts, end2 = sp.read("cell-a")
    assert pts == [("m", 1.0, 10, 1), ("m", 2.0, 11, 2), ("m", 4.0, 12, 4)]
    assert sp.max_step("cell-a") == 4
    assert sp.pending("cell-a") and sp.cursor("cell-a") == 0
    sp.set_cursor("cell-a", end2)
    assert not sp.pending("cell-a")
    assert sp.read("cell-a", end2) == ([], end2)
    nan, _ = Spool(tmp_path / "n"), None
    nan.append("k", [("m", float("nan"), 1, 1)])
    v = nan.read("k")[0][0][1]
    assert v != v


def test_spool_meta_merges_and_is_replaced_atomically(tmp_path):
    sp = Spool(tmp_path)
    sp.update_meta("cell-a", sweep="s", params={"a": "1"}, artifacts=[["/x", None]])
    sp.update_meta("cell-a", params={"b": "2"}, status="FINISHED", artifacts=[["/x", None], ["/y", "d"]])
    m = sp.meta("cell-a")
    assert m == {
        "sweep": "s",
        "params": {"a": "1", "b": "2"},
        "status": "FINISHED",
        "artifacts": [["/x", None], ["/y", "d"]],
    }
    assert [p.name for p in tmp_path.iterdir()] == ["cell-a.meta.json"]  # no temp files left behind
    (tmp_path / "cell-b.meta.json").write_text("{oops")
    with pytest.raises(SpoolError, match="cell-b.meta.json"):
        sp.meta("cell-b")


def test_spool_keys_parents_first_and_find_spools(tmp_path):
    for d, k in (("x/spool", cell_key("c1")), ("x/spool", sweep_key("demo")), ("y/spool", cell_key("c2"))):
        Spool(tmp_path / d).update_meta(k, sweep="demo")
    assert Spool(tmp_path / "x/spool").keys() == ["sweep-demo", "cell-c1"]
    assert find_spools(tmp_path) == [tmp_path / "x/spool", tmp_path / "y/spool"]
    with pytest.raises(SpoolError, match="no such spool folder"):
        find_spools(tmp_path / "nope")
    assert cell_key("a/b c") == "cell-a_b_c"


def test_job_tags_name_the_slurm_job():
    assert job_tags({"SLURM_JOB_ID": "77"})["slurm_job_id"] == "77"
    assert (
        job_tags({"SLURM_JOB_ID": "80", "SLURM_ARRAY_JOB_ID": "79", "SLURM_ARRAY_TASK_ID": "3"})["slurm_job_id"]
        == "79_3"
    )
    assert "slurm_job_id" not in job_tags({})
    assert job_tags({})["host"]


def test_open_tracker_backends(tmp_path):
    assert isinstance(open_tracker(TrackingSpec(backend="memory")), InMemoryTracker)
    assert isinstance(open_tracker(TrackingSpec(backend="none")), InMemoryTracker)
    with pytest.raises(ValueError, match="spool folder"):
        open_tracker(TrackingSpec(backend="spool"))
    sp = open_tracker(TrackingSpec(backend="spool", experiment="e"), spool_dir=tmp_path)
    assert isinstance(sp, MlflowTracker) and sp.store is None and isinstance(sp, Tracker)


def test_offline_run_drops_repeated_steps_per_key_and_keeps_identity(tmp_path):
    tr = open_tracker(TrackingSpec(backend="spool", flush_every_s=3600), spool_dir=tmp_path)
    parent = tr.start_sweep("demo", params={"description": "d"})
    run = tr.start_cell(
        "demo",
        "c0",
        name="tiny-xs",
        parent_run_id=parent.run_id,
        params={"lr": 0.1, "db.password": "x"},
        tags={"k": "v"},
    )
    assert isinstance(run, Run) and run.run_id == "spool:cell-c0" and parent.run_id == "spool:sweep-demo"
    run.log_metrics({"train/loss": 1.0}, step=1)
    run.log_metrics({"eval/rmb/loss": 0.9}, step=1)  # another key at the same step: kept
    run.log_metrics({"train/loss": 5.0}, step=1)  # same key, same step: dropped
    run.log_metrics({"train/loss": 0.8}, step=2)
    assert run.last_step() == 2 and run.last_steps() == {"train/loss": 2, "eval/rmb/loss": 1}
    run.finish("FAILED")
    sp = Spool(tmp_path)
    assert sp.read("cell-c0")[0] == [
        ("train/loss", 1.0, sp.read("cell-c0")[0][0][2], 1),
        ("eval/rmb/loss", 0.9, sp.read("cell-c0")[0][1][2], 1),
        ("train/loss", 0.8, sp.read("cell-c0")[0][2][2], 2),
    ]
    meta = sp.meta("cell-c0")
    assert meta["status"] == "FAILED" and meta["cell_id"] == "c0" and meta["sweep"] == "demo"
    assert meta["params"] == {"lr": "0.1"} and meta["tags"]["k"] == "v" and meta["name"] == "tiny-xs"
    with pytest.raises(ValueError, match="status"):
        run.finish("DONE")
    # a restarted offline job resumes after what the spool already holds
    again = open_tracker(TrackingSpec(backend="spool"), spool_dir=tmp_path).start_cell("demo", "c0", name="tiny-xs")
    assert again.last_steps() == {"train/loss": 2, "eval/rmb/loss": 1}
    again.finish("FINISHED")
    assert json.loads((tmp_path / "cell-c0.meta.json").read_text())["status"] == "FINISHED"


def test_ensure_params_survives_another_job_logging_the_same_params_first(tmp_path):
    """16 jobs attach to one sweep run at once: the loser of the race gets a duplicate-key error from
    the server, re-reads the run and carries on (the CI concurrency test hit this)."""
    from worldpm_scaling.track.mlflow_store import Store

    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    exp = store.experiment_id("race")
    run_id = store.create_run(exp, name="parent", tags={})
    real = store.client.log_batch
    calls = []

    def racing_log_batch(rid, params=(), **kw):
        calls.append([p.key for p in params])
        if len(calls) == 1:  # the other job wins: its params land, ours are refused as duplicates
            real(rid, params=list(params))
            raise RuntimeError("UNIQUE constraint failed: params.key, params.run_uuid")
        return real(rid, params=list(params), **kw)

    store.client.log_batch = racing_log_batch
    changed = store.ensure_params(run_id, {"description": "x", "n": 1}, existing={})
    assert changed == [] and calls == [["description", "n"]]  # re-read: nothing left to log
    assert store.client.get_run(run_id).data.params == {"description": "x", "n": "1"}
    assert store.ensure_params(run_id, {"description": "y"}) == ["description"]  # a real change is reported
