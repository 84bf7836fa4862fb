"""Start, stop and restart a local `mlflow server` process (for `wps ui`, tests and benchmarks).

One class so the CLI, the pytest fixtures and the benchmark start the server the same way: a free
port, the backend store URI (SQLite file or PostgreSQL), artifacts in a local folder, and a bounded
wait on `/health` (the server answers ~8 s after start here: docs/measurements.md).

Exposure policy (docs/tracking_security.md): the server listens on 127.0.0.1 unless told otherwise.
Listening beyond localhost needs either `auth=True` (MLflow's basic-auth app: users and permissions
in a SQL database beside the store, default permission NO_PERMISSIONS, a random admin password
written once to a 0600 credentials file) or `open_network=True`, a flag that says the server is
open on purpose; either way MLflow gets an explicit `--allowed-hosts` list.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


class ServerError(RuntimeError):
    """The mlflow server did not start (its log tail is in the message)."""


class ServerConfigError(ValueError):
    """A server setting refused before anything starts (e.g. listening beyond localhost without
    authentication and without saying it is open): exit 2 in the CLI."""


ADMIN_USER = "admin"
DEFAULT_PERMISSION = "NO_PERMISSIONS"
"""What a user may do on an experiment or model someone else created: nothing, until granted."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, `localhost`)."""
    import ipaddress

    if host.strip("[]").lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:  # a name: where it resolves
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def check_exposure(host: str, *, auth: bool, open_network: bool) -> str | None:
    """None if the server may listen on `host` as asked; a warning to print for an open server on
    the network; ServerConfigError for a network server with neither auth nor the open flag."""
    if auth and open_network:
        raise ServerConfigError("--auth and --open contradict each other: an authenticated server is not open")
    if is_loopback(host) or auth:
        return None
    if not open_network:
        raise ServerConfigError(
            f"--host {host}: a tracking server listening beyond localhost lets anyone who reaches it read, "
            "change and delete every run; start it with --auth (users and permissions, docs/tracking_security.md), "
            "or pass --open to say it is an unauthenticated server on purpose"
        )
    return (
        f"warning: OPEN tracking server on {host}: no authentication, anyone who reaches this address can "
        "read, change and delete every run and model (use --auth on a shared network)"
    )


def default_allowed_hosts(host: str, port: int) -> list[str]:
    """Host headers a network server accepts (MLflow's DNS-rebinding guard): the address it binds
    (or, for 0.0.0.0/::, this host's addresses), this host's names, and localhost; each bare and
    with `:port`."""
    names = {"localhost", "127.0.0.1"}
    wildcard = host in ("0.0.0.0", "::", "")
    if not wildcard:
        names.add(host)
    for n in (socket.gethostname(), socket.getfqdn()):
        if n:
            names.add(n)
    if wildcard:
        try:
            names.update(str(a[4][0]) for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
        except OSError:
            pass
    out: list[str] = []
    for n in sorted(names):
        out += [n, f"{n}:{port}"]
    return out


def _secret_file(path: Path, make) -> str:
    """The content of 0600 `path`, created once with `make()` (never overwritten)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = make()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return value


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; never a fixed port)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    """True if `url`/health answers 200 within `timeout_s`."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def mlflow_executable() -> str:
    """The `mlflow` script next to this interpreter (the venv's), else the one on PATH."""
    cand = Path(sys.executable).with_name("mlflow")
    return str(cand) if cand.exists() else "mlflow"


def normalize_backend_uri(uri: str) -> str:
    """`postgresql://…` → `postgresql+psycopg2://…` when psycopg (v3) is absent: SQLAlchemy 2 picks
    psycopg 3 for a bare `postgresql://`, the project ships psycopg2-binary."""
    if uri.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            return "postgresql+psycopg2://" + uri.split("://", 1)[1]
    return uri


class MlflowServer:
    """A child `mlflow server` bound to host:<port> (127.0.0.1 by default); the port is kept across
    restarts. `auth=True` runs MLflow's basic-auth app (see the module docstring and `auth_files`)."""

    def __init__(
        self,
        backend_uri: str,
        artifacts_dir: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        log_path: str | os.PathLike | None = None,
        auth: bool = False,
        open_network: bool = False,
        allowed_hosts: list[str] | None = None,
        auth_db: str | None = None,
        auth_dir: str | os.PathLike | None = None,
    ):
        self.backend_uri = normalize_backend_uri(backend_uri)
        self.artifacts_dir = Path(artifacts_dir)
        self.host = host
        self.exposure_warning = check_exposure(host, auth=auth, open_network=open_network)
        self.port = port or free_port(host if host not in ("0.0.0.0", "::") else "0.0.0.0")
        self.workers = workers
        self.log_path = (
            Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"wps-mlflow-server-{self.port}.log"
        )
        self.proc: subprocess.Popen | None = None
        self.auth = bool(auth)
        self.allowed_hosts = list(allowed_hosts or [])
        if self.backend_uri.startswith("sqlite:///"):
            db = Path(self.backend_uri[len("sqlite:///") :])
            default_dir, stem = db.parent, db.stem
        else:
            default_dir, stem = Path.cwd(), "mlflow"
        self.auth_dir = Path(auth_dir) if auth_dir else default_dir
        self.auth_stem = stem
        self.auth_db = (
            normalize_backend_uri(auth_db)
            if auth_db
            else f"sqlite:///{(self.auth_dir / (stem + '-auth.db')).resolve()}"
        )
        self.admin_created = False
        """True when this start created the admin user (its password is in `admin_credentials`)."""

    # -- authentication files (beside the store, all 0600) -------------------------------------
    @property
    def auth_config(self) -> Path:
        return self.auth_dir / f"{self.auth_stem}-auth.ini"

    @property
    def auth_key(self) -> Path:
        return self.auth_dir / f"{self.auth_stem}-auth.key"

    @property
    def admin_credentials(self) -> Path:
        """The admin's password, in MLflow's ~/.mlflow/credentials format (mode 0600)."""
        return self.auth_dir / f"{self.auth_stem}-admin.credentials"

    def _auth_env(self) -> dict[str, str]:
        """Write the basic-auth config (default permission NO_PERMISSIONS, the user database), the
        CSRF key (created once) and, at first start, a random admin password; the environment
        that hands them to the server process (never its command line, which `ps` shows)."""
        import secrets as pysecrets

        from .credentials import PASSWORD_VAR, SECTION, write_credentials_file

        self.auth_dir.mkdir(parents=True, exist_ok=True)
        admin = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or ADMIN_USER
        text = (
            f"[mlflow]\ndefault_permission = {DEFAULT_PERMISSION}\ndatabase_uri = {self.auth_db}\n"
            f"admin_username = {admin}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        fd = os.open(self.auth_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(self.auth_config, 0o600)
        env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(self.auth_config.resolve()),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret_file(self.auth_key, lambda: pysecrets.token_urlsafe(32)),
        }
        self.admin_created = False
        if os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
            return env  # the operator chose the admin password; MLflow reads it from the environment
        if self.admin_credentials.exists():
            import configparser

            cfg = configparser.ConfigParser(interpolation=None)
            cfg.read(self.admin_credentials)
            pw = cfg[SECTION].get(PASSWORD_VAR.lower()) if SECTION in cfg else None
            if pw:  # lets a lost user database be recreated with the same admin password
                env["MLFLOW_AUTH_ADMIN_PASSWORD"] = pw
            return env
        pw = pysecrets.token_urlsafe(24)
        write_credentials_file(self.admin_credentials, admin, pw)
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = pw
        self.admin_created = True
        return env

    def _check_admin(self) -> None:
        """After a first start: the admin password we wrote is the one the server has. An older user
        database keeps its admin; then the file we just wrote is wrong, so it goes and we say so."""
        if not self.admin_created:
            return
        import base64
        import configparser

        from .credentials import PASSWORD_VAR, SECTION, USER_VAR

        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(self.admin_credentials)
        user, pw = cfg[SECTION][USER_VAR.lower()], cfg[SECTION][PASSWORD_VAR.lower()]
        req = urllib.request.Request(
            f"{self.probe_url}/api/2.0/mlflow/users/current",
            headers={"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()},
        )
        try:
            urllib.request.urlopen(req, timeout=30).close()
        except urllib.error.HTTPError as e:
            if e.code != 401:
                return  # an older server without /users/current: nothing to compare
            self.admin_credentials.unlink(missing_ok=True)
            self.admin_created = False
            self.stop()
            raise ServerError(
                f"user database {self.auth_db.split('@')[-1]} already has an admin {user!r} with "
                "another password: its credentials are wherever they were first written "
                f"(not in {self.admin_credentials}, which was removed again)"
            ) from None
        except OSError:
            return

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = socket.getfqdn() or "127.0.0.1"
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        # The store URI goes by environment (`env()`): a database password on the command line
        # is visible to every user of the host in `ps`.
        cmd = [
            mlflow_executable(),
            "server",
            "--artifacts-destination",
            str(self.artifacts_dir.resolve()),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.auth:
            cmd += ["--app-name", "basic-auth"]
        if not is_loopback(self.host) or self.allowed_hosts:
            hosts = self.allowed_hosts_list()
            cmd += ["--allowed-hosts", ",".join(hosts)]
        return cmd

    def allowed_hosts_list(self) -> list[str]:
        """`default_allowed_hosts` plus what the caller asked for (a bare name also with `:port`)."""
        out = default_allowed_hosts(self.host, self.port)
        for h in self.allowed_hosts:
            for v in [h] if (":" in h or "*" in h) else [h, f"{h}:{self.port}"]:
                if v not in out:
                    out.append(v)
        return out

    def start(self, *, wait_s: float = 120.0) -> "MlflowServer":
        """Start the process and wait until /health answers (ServerError with the log tail if not)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {"MLFLOW_DISABLE_TELEMETRY": "true", **os.environ, "MLFLOW_BACKEND_STORE_URI": self.backend_uri}
        if self.auth:
            env.update(self._auth_env())
        with open(self.log_path, "ab") as log:
            # Own process group: stop() ends the server and its workers, nothing else.
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.wait_healthy(wait_s)
        if self.auth:
            self._check_admin()
            self._private_files()
        return self

    def _private_files(self) -> None:
        """With auth, what the server stores is its users' business only: a SQLite store or user
        database (password hashes) and the artifact folder that others could read would bypass it."""
        for uri in (self.backend_uri, self.auth_db):
            if uri.startswith("sqlite:///"):
                p = Path(uri[len("sqlite:///") :])
                if p.exists():
                    os.chmod(p, 0o600)
        if self.artifacts_dir.is_dir():
            os.chmod(self.artifacts_dir, 0o700)

    @property
    def probe_url(self) -> str:
        """Where this machine reaches the server (a wildcard bind answers on 127.0.0.1)."""
        return f"http://127.0.0.1:{self.port}" if self.host in ("0.0.0.0", "::") else self.url

    def wait_healthy(self, wait_s: float = 120.0) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if healthy(self.probe_url, timeout_s=1.0):
                return
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"mlflow server {self.url} not healthy after {wait_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM the server's process group, SIGKILL after `timeout_s` (uvicorn otherwise waits for
        every keep-alive client connection to close); wait until the port is free."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        try:  # workers of the group may outlive the leader for a moment
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _port_free("0.0.0.0" if self.host == "::" else self.host, self.port):
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole server at once (a crashed or unplugged server)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop(timeout_s=0.1)

    def restart(self, *, wait_s: float = 120.0) -> "MlflowServer":
        self.stop()
        return self.start(wait_s=wait_s)

    def log_tail(self, n_chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def __enter__(self) -> "MlflowServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False
