"""Tracking credentials: where they come from (named, never shown), where they must never go (URIs,
sweep specs, sbatch scripts, pickled jobs, params/tags), and the server's exposure policy."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from worldpm_scaling.config import SpecError, TrackingSpec, build, load_sweep
from worldpm_scaling.track import credentials as cr
from worldpm_scaling.track.mlflow_store import TrackingAuthError, auth_error, check_uri
from worldpm_scaling.track.secrets import scrub
from worldpm_scaling.track.server import (
    MlflowServer,
    ServerConfigError,
    check_exposure,
    default_allowed_hosts,
    is_loopback,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-pw-3b9f0c2e7d114a8f"


def _home(tmp_path: Path, mode: int = 0o600, user: str = "alice", pw: str = CANARY) -> dict:
    f = cr.write_credentials_file(tmp_path / ".mlflow" / "credentials", user, pw)
    os.chmod(f, mode)
    return {"HOME": str(tmp_path)}


def test_environment_wins_and_the_source_is_named_without_the_secret(tmp_path):
    env = {
        **_home(tmp_path, pw="file-pw-123456"),
        "MLFLOW_TRACKING_USERNAME": "bob",
        "MLFLOW_TRACKING_PASSWORD": CANARY,
    }
    c = cr.resolve(env)
    assert (c.username, c.password) == ("bob", CANARY)
    assert "environment" in c.source and "MLFLOW_TRACKING_PASSWORD" in c.source
    assert CANARY not in repr(c) and CANARY not in c.describe() and "'bob'" in c.describe()


def test_credentials_file_is_read_and_named(tmp_path):
    c = cr.resolve(_home(tmp_path))
    assert (c.username, c.password) == ("alice", CANARY)
    assert str(tmp_path / ".mlflow" / "credentials") in c.source and CANARY not in c.describe()
    assert CANARY in cr.known_secrets(_home(tmp_path / "again"))


def test_a_credentials_file_others_can_read_is_refused_naming_it(tmp_path):
    with pytest.raises(cr.CredentialsFileError) as e:
        cr.resolve(_home(tmp_path, mode=0o644))
    assert "chmod 600" in str(e.value) and str(tmp_path) in str(e.value) and CANARY not in str(e.value)


def test_no_credentials_says_where_it_looked(tmp_path):
    c = cr.resolve({"HOME": str(tmp_path)})
    assert not c.present and "MLFLOW_TRACKING_USERNAME" in c.describe() and ".mlflow/credentials" in c.describe()
    assert "MLFLOW_TRACKING_TOKEN" in cr.resolve({"HOME": str(tmp_path), "MLFLOW_TRACKING_TOKEN": CANARY}).source


def test_secret_in_a_tracking_uri_is_refused_masked():
    for uri in (f"http://alice:{CANARY}@mlflow:5000", f"https://{CANARY}@mlflow", f"postgresql://u:{CANARY}@db/mlflow"):
        with pytest.raises(cr.SecretInURIError) as e:
            cr.refuse_secret_in_uri(uri)
        assert CANARY not in str(e.value) and "***" in str(e.value)
    cr.refuse_secret_in_uri("postgresql://mlflow@db/mlflow")  # a user name is no secret
    cr.refuse_secret_in_uri("http://mlflow.internal:5000")
    with pytest.raises(cr.SecretInURIError):
        check_uri(f"http://alice:{CANARY}@127.0.0.1:5000")  # $MLFLOW_TRACKING_URI / --uri of every command


def test_sweep_spec_with_credentials_in_tracking_uri_is_a_named_spec_error(tmp_path):
    with pytest.raises(SpecError) as e:
        build(TrackingSpec, {"uri": f"http://alice:{CANARY}@h:5000"}, file="sweep.yaml")
    assert "tracking.uri" in str(e.value) and "sweep.yaml" in str(e.value) and CANARY not in str(e.value)
    text = (ROOT / "sweeps" / "demo.yaml").read_text()
    bad = tmp_path / "demo.yaml"
    bad.write_text(
        text + f"\ntracking:\n  uri: http://alice:{CANARY}@mlflow:5000\n"
        if "\ntracking:" not in text
        else text.replace("\ntracking:\n", f"\ntracking:\n  uri: http://alice:{CANARY}@mlflow:5000\n", 1)
    )
    with pytest.raises(SpecError) as e:
        load_sweep(bad)
    assert "tracking" in str(e.value) and CANARY not in str(e.value)


def test_password_of_the_environment_or_file_never_becomes_a_param_or_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", _home(tmp_path)["HOME"])
    out = scrub({"note": CANARY, "cmd": f"x --pw {CANARY}", "lr": 0.1})
    assert out == {"lr": "0.1"}


def test_sbatch_script_and_pickled_job_carry_no_credentials(monkeypatch):
    """The job reads credentials where it runs; what `wps launch` writes never holds them."""
    from worldpm_scaling.launch import render_sbatch
    from worldpm_scaling.launch.job import CellJob
    from worldpm_scaling.plan import plan

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", CANARY)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    p = plan(load_sweep("sweeps/demo.yaml", cluster="slurm/local-cluster.yaml"))
    run = p.runs[0]
    script = render_sbatch(run, p.sweep.cluster, folder="out/demo/jobs/%j")
    blob = pickle.dumps(CellJob(run.to_json()))
    assert CANARY not in script and CANARY.encode() not in blob
    with pytest.raises(cr.SecretInURIError):  # and a spec cannot be made to carry them
        replace(run, tracking=TrackingSpec(uri=f"http://alice:{CANARY}@h:1"))


def test_auth_error_names_uri_and_source_and_survives_pickling(tmp_path):
    creds = cr.resolve({"HOME": str(tmp_path), "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": CANARY})
    e = auth_error("http://h:5000", 401, creds, "runs/log-batch")
    s = str(e)
    assert "http://h:5000" in s and "401" in s and "'alice'" in s and "MLFLOW_TRACKING_PASSWORD" in s
    assert CANARY not in s and isinstance(e, ValueError)
    back = pickle.loads(pickle.dumps(e))
    assert isinstance(back, TrackingAuthError) and str(back) == s and back.status == 401
    assert "permission" in str(auth_error("http://h:5000", 403, creds))


def test_network_server_needs_auth_or_the_open_flag():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.213.7.1")
    assert check_exposure("127.0.0.1", auth=False, open_network=False) is None
    assert check_exposure("0.0.0.0", auth=True, open_network=False) is None
    with pytest.raises(ServerConfigError, match="--auth"):
        check_exposure("10.213.7.1", auth=False, open_network=False)
    assert "OPEN" in check_exposure("10.213.7.1", auth=False, open_network=True)
    with pytest.raises(ServerConfigError):
        MlflowServer("sqlite:///x.db", "art", host="0.0.0.0", port=5999)
    srv = MlflowServer(
        "sqlite:///x.db", "art", host="10.213.7.1", port=5999, open_network=True, allowed_hosts=["mlflow.lab"]
    )
    cmd = srv.command()
    hosts = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert {"10.213.7.1", "10.213.7.1:5999", "mlflow.lab", "mlflow.lab:5999"} <= set(hosts)
    assert "*" not in hosts and "--backend-store-uri" not in cmd  # the store URI goes by environment (ps)
    assert "0.0.0.0" not in default_allowed_hosts("0.0.0.0", 5000)
    assert "--allowed-hosts" not in MlflowServer("sqlite:///x.db", "art", port=5999).command()


def test_wps_ui_beyond_localhost_without_auth_exits_2_naming_the_flags():
    r = subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", "ui", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2 and "--auth" in r.stderr and "--open" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", "ui", "--auth", "--open"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 2 and "contradict" in r.stderr
