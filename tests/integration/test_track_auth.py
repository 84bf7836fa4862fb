"""A real `mlflow server --app-name basic-auth` (`wps ui --auth`'s server, listening beyond localhost
when this host has such an address): what anonymous and foreign users are refused, jobs that log with
credentials from the environment or ~/.mlflow/credentials, refused credentials as named errors
(never a silent spool), spool + `wps sync` through auth and an outage, and canary passwords that
appear in no file, database row or output."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures.mlflow_server import REPO_ROOT, AuthServer, unique_name, worker_cmd
from tests.integration.test_track_mlflow import assert_exact
from worldpm_scaling.cli import main as wps
from worldpm_scaling.config import TrackingSpec
from worldpm_scaling.track import answering, open_tracker, query
from worldpm_scaling.track.mlflow_store import TrackingAuthError

pytestmark = pytest.mark.integration

CLIENT_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI")


def _lan_address() -> str:
    """This host's address on its default route (other hosts reach it there), else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP: picks a route, sends nothing
            addr = s.getsockname()[0]
        return "127.0.0.1" if ipaddress.ip_address(addr).is_loopback else addr
    except OSError:
        return "127.0.0.1"


@pytest.fixture(scope="module")
def auth(mlflow_server_factory) -> AuthServer:
    """The authenticated server of these tests, on the LAN address when there is one (the shared
    `mlflow_auth_server` listens on 127.0.0.1)."""
    return AuthServer(mlflow_server_factory(workers=2, auth=True, host=_lan_address()))


@pytest.fixture
def client_env(monkeypatch, tmp_path_factory):
    """`use(user)`: this process authenticates as `user` (None: no credentials at all; HOME is an
    empty folder, so the box's own ~/.mlflow/credentials never counts)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for v in CLIENT_VARS:
        monkeypatch.delenv(v, raising=False)

    def use(srv: AuthServer, user: str | None, password: str | None = None) -> None:
        for v in CLIENT_VARS:
            monkeypatch.delenv(v, raising=False)
        if user is not None:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or srv.passwords[user])

    return use


def test_without_credentials_everything_is_refused_and_others_experiments_stay_closed(auth):
    alice, bob = ("alice", auth.passwords["alice"]), ("bob", auth.passwords["bob"])
    name = unique_name("authz")
    assert auth.request("POST", "/api/2.0/mlflow/experiments/create", {"name": name})[0] == 401
    st, body = auth.request("POST", "/api/2.0/mlflow/experiments/create", {"name": name}, auth=alice)
    assert st == 200, body
    exp = body["experiment_id"]
    st, body = auth.request("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp}, auth=alice)
    run = body["run"]["info"]["run_id"]
    metric = {"run_id": run, "key": "m", "value": 1.0, "timestamp": 0, "step": 1}
    assert auth.request("POST", "/api/2.0/mlflow/runs/log-metric", metric, auth=alice)[0] == 200
    model = unique_name("model")
    # anonymous: no run, no metric, no delete, no model, no read (default permission NO_PERMISSIONS)
    assert auth.request("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp})[0] == 401
    assert auth.request("POST", "/api/2.0/mlflow/runs/log-metric", metric)[0] == 401
    assert auth.request("POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": exp})[0] == 401
    assert auth.request("POST", "/api/2.0/mlflow/registered-models/create", {"name": model})[0] == 401
    assert auth.request("GET", "/api/2.0/mlflow/experiments/get", params={"experiment_id": exp})[0] == 401
    # another user: cannot read, write or delete alice's experiment, and does not see it listed
    assert auth.request("GET", "/api/2.0/mlflow/experiments/get", params={"experiment_id": exp}, auth=bob)[0] == 403
    assert auth.request("POST", "/api/2.0/mlflow/runs/log-metric", metric, auth=bob)[0] == 403
    assert auth.request("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp}, auth=bob)[0] == 403
    assert auth.request("POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": exp}, auth=bob)[0] == 403
    st, body = auth.request("POST", "/api/2.0/mlflow/experiments/search", {"max_results": 1000}, auth=bob)
    assert st == 200 and exp not in [e["experiment_id"] for e in body.get("experiments", [])]
    assert auth.request("POST", "/api/2.0/mlflow/registered-models/create", {"name": model}, auth=alice)[0] == 200
    assert (
        auth.request(
            "PATCH", "/api/2.0/mlflow/registered-models/update", {"name": model, "description": "x"}, auth=bob
        )[0]
        == 403
    )
    # the owner can; MLflow's old default admin password is not a way in
    assert auth.request("POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": exp}, auth=alice)[0] == 200
    assert auth.request("GET", "/api/2.0/mlflow/users/current", auth=("admin", "password1234"))[0] == 401
    srv = auth.server  # what would bypass the server is private to its user
    for f in (
        srv.admin_credentials,
        srv.auth_config,
        srv.auth_key,
        Path(srv.backend_uri[len("sqlite:///") :]),
        Path(srv.auth_db[len("sqlite:///") :]),
    ):
        assert f.stat().st_mode & 0o777 == 0o600, f
    if auth.server.host != "127.0.0.1":  # beyond localhost: an explicit Host allow-list (DNS rebinding)
        import requests

        api = f"{auth.url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(api, auth=alice, timeout=30).status_code == 200
        for host in ("rebind.attacker.example", "10.99.99.99"):  # MLflow's default would admit any private IP
            r = requests.get(api, auth=alice, headers={"Host": host}, timeout=30)
            assert r.status_code in (400, 403), (host, r.status_code, r.text[:200])


def _scan(paths: list[Path], secrets: list[str]) -> list[str]:
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            hits += [f"{f}: {s[:12]}…" for s in secrets if s.encode() in data]
    return hits


def test_jobs_log_with_env_or_file_credentials_sync_works_and_no_canary_leaks(auth, client_env, tmp_path, capsys):
    alice_pw, bob_pw = auth.passwords["alice"], auth.passwords["bob"]
    out = tmp_path / "out"
    sweeps = {"alice": unique_name("auth-a"), "bob": unique_name("auth-b")}
    bob_home = auth.credentials_home("bob", tmp_path.parent / f"home-bob-{uuid.uuid4().hex[:6]}")
    envs = {"alice": auth.env("alice"), "bob": {**auth.env(None), "HOME": str(bob_home)}}
    logs = []
    for user in ("alice", "bob"):  # alice from the environment, bob from ~/.mlflow/credentials
        r = subprocess.run(
            worker_cmd(
                uri=auth.url,
                sweep=sweeps[user],
                cell="c0",
                steps=120,
                metrics=5,
                spool=out / user / "spool",
                flush_every_s=0.3,
            ),
            cwd=REPO_ROOT,
            env=envs[user],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        logs.append(r.stdout + r.stderr)
    # an offline job (spool backend), replayed by `wps sync` with alice's credentials, twice
    r = subprocess.run(
        worker_cmd(
            backend="spool", sweep=sweeps["alice"], cell="c1", steps=80, metrics=5, spool=out / "offline" / "spool"
        ),
        cwd=REPO_ROOT,
        env=auth.env(None),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    client_env(auth, None)
    assert wps(["sync", str(out / "offline"), "--uri", auth.url]) == 2  # no credentials: named, exit 2
    err = capsys.readouterr().err
    assert auth.url in err and "asked for credentials" in err and "no credentials" in err and "Traceback" not in err
    with pytest.raises(TrackingAuthError):  # `wps status`'s probe: an error, not a silently empty column
        answering(auth.url)
    # `wps analyze` reads through MLflow's own client: the same named error, exit 2
    assert wps(["analyze", sweeps["alice"], "--tracking-uri", auth.url, "--out", str(tmp_path / "an")]) == 2
    err = capsys.readouterr().err
    assert auth.url in err and "HTTP 401" in err and "unexpected" not in err, err[-1500:]
    client_env(auth, "alice", "not-" + alice_pw)
    assert wps(["sync", str(out / "offline"), "--uri", auth.url]) == 2
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "'alice'" in err and "MLFLOW_TRACKING_PASSWORD" in err
    client_env(auth, "alice")
    assert wps(["sync", str(out / "offline"), "--uri", auth.url]) == 0
    assert "400 points sent" in capsys.readouterr().out
    assert wps(["sync", str(out / "offline"), "--uri", auth.url]) == 0
    printed = capsys.readouterr()
    assert "0 points sent, 400 already on the server" in printed.out
    logs.append(printed.out + printed.err)
    cells = query.find_cell_runs(auth.url, sweeps["alice"])
    assert_exact(auth.url, cells["c0"].run_id, 120, 5)
    assert_exact(auth.url, cells["c1"].run_id, 80, 5)
    with pytest.raises(TrackingAuthError):  # alice cannot read bob's sweep
        query.find_cell_runs(auth.url, sweeps["bob"])
    client_env(auth, "bob")
    assert_exact(auth.url, query.find_cell_runs(auth.url, sweeps["bob"])["c0"].run_id, 120, 5)
    # the canaries: nowhere in the sweep's folder, the MLflow store (runs, params, tags, artifacts),
    # the server's log, or anything printed
    (tmp_path / "printed.txt").write_text("\n".join(logs))
    srv = auth.server
    store_db = Path(srv.backend_uri[len("sqlite:///") :])
    assert _scan([out, tmp_path / "printed.txt", store_db, srv.artifacts_dir, srv.log_path], [alice_pw, bob_pw]) == []


def test_refused_credentials_stop_a_job_at_start_naming_uri_and_source(auth, client_env, tmp_path):
    sweep = unique_name("auth-no")
    bad_home = auth.credentials_home("alice", tmp_path / "home-0644", mode=0o644)
    for env, expect in (
        (auth.env(None), "no credentials"),
        (
            {
                **auth.env(None),
                "MLFLOW_TRACKING_USERNAME": "alice",
                "MLFLOW_TRACKING_PASSWORD": "wrong-" + uuid.uuid4().hex,
            },
            "refused the credentials",
        ),
        ({**auth.env(None), "HOME": str(bad_home)}, "chmod 600"),
    ):
        spool = tmp_path / f"spool-{uuid.uuid4().hex[:6]}"
        r = subprocess.run(
            worker_cmd(uri=auth.url, sweep=sweep, cell="c0", steps=10, metrics=2, spool=spool),
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode != 0 and expect in r.stderr, r.stderr[-2000:]
        assert auth.passwords["alice"] not in r.stderr + r.stdout
        assert not spool.exists() or not any(spool.iterdir()), sorted(spool.iterdir())  # nothing "logged" offline
    client_env(auth, "alice")
    assert query.sweep_runs(auth.url, sweep) == []


def test_credentials_revoked_mid_run_keep_points_in_the_spool_and_fail_loudly(auth, client_env, tmp_path, capsys):
    """A password changed while a job runs: its points go to the spool with an error naming the
    server and the source (not a quiet offline switch), finish() raises, `wps sync` with the new
    password sends every point exactly once."""
    user = f"carol{uuid.uuid4().hex[:6]}"
    pw1, pw2 = "carol-pw-" + uuid.uuid4().hex, "carol-pw2-" + uuid.uuid4().hex
    assert (
        auth.request("POST", "/api/2.0/mlflow/users/create", {"username": user, "password": pw1}, auth=auth.admin)[0]
        == 200
    )
    client_env(auth, "alice")
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, pw1  # undone by monkeypatch
    sweep = unique_name("auth-revoke")
    tr = open_tracker(
        TrackingSpec(uri=auth.url, flush_every_s=3600, system_metrics=False), spool_dir=tmp_path / "spool"
    )
    parent = tr.start_sweep(sweep)
    run = tr.start_cell(sweep, "c0", name="c0", parent_run_id=parent.run_id)
    for s in range(1, 21):
        run.log_metrics({"m0": s * 100.0, "m1": s * 100.0 + 1}, step=s)
    run.flush()
    assert run.online
    assert (
        auth.request(
            "PATCH", "/api/2.0/mlflow/users/update-password", {"username": user, "password": pw2}, auth=auth.admin
        )[0]
        == 200
    )
    for s in range(21, 41):
        run.log_metrics({"m0": s * 100.0, "m1": s * 100.0 + 1}, step=s)
    run.flush()
    assert run.auth_error is not None and not run.online
    err = capsys.readouterr().err
    assert f"error: tracking server {auth.url} refused the credentials" in err and f"'{user}'" in err
    assert pw1 not in err and pw2 not in err
    with pytest.raises(TrackingAuthError):
        run.finish("FINISHED")
    with pytest.raises(TrackingAuthError):  # the parent's close is refused the same way
        parent.finish("FINISHED")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = pw2
    assert wps(["sync", str(tmp_path / "spool"), "--uri", auth.url]) == 0
    assert_exact(auth.url, query.find_cell_runs(auth.url, sweep)["c0"].run_id, 40, 2)


@pytest.mark.slow
def test_outage_of_30s_through_auth_then_sync_every_point_once(auth, client_env, tmp_path, capsys):
    """The authenticated server goes away for 30 s while a job logs; users survive the restart
    (no new admin, same passwords) and the job plus `wps sync` leave each point exactly once."""
    sweep = unique_name("auth-outage")
    admin_file = auth.server.admin_credentials.read_text()
    proc = subprocess.Popen(
        worker_cmd(
            uri=auth.url,
            sweep=sweep,
            cell="c0",
            steps=300,
            metrics=5,
            sleep=0.1,
            spool=tmp_path / "out" / "spool",
            flush_every_s=0.5,
        ),
        cwd=REPO_ROOT,
        env=auth.env("alice"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert '"event": "start"' in proc.stdout.readline()
        time.sleep(3)
        auth.server.stop()
        restarted = threading.Event()

        def back():
            time.sleep(30)
            auth.server.start(wait_s=420)
            restarted.set()

        t = threading.Thread(target=back)
        t.start()
        out, err = proc.communicate(timeout=900)
        t.join(900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert restarted.is_set() and not auth.server.admin_created
    assert auth.server.admin_credentials.read_text() == admin_file
    client_env(auth, "alice")
    assert wps(["sync", str(tmp_path / "out"), "--uri", auth.url]) == 0
    assert_exact(auth.url, query.find_cell_runs(auth.url, sweep)["c0"].run_id, 300, 5)
    assert wps(["sync", str(tmp_path / "out"), "--uri", auth.url]) == 0
    assert " 0 points sent" in capsys.readouterr().out.splitlines()[-1]
    assert auth.passwords["alice"] not in out + err
