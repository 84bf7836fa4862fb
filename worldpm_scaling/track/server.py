"""Start, stop and restart a local `mlflow server` process (for `wps ui`, tests and benchmarks).

One class so the CLI, the pytest fixtures and the benchmark start the server the same way: a free
localhost port, the backend store URI (SQLite file or PostgreSQL), artifacts in a local folder, and
a bounded wait on `/health` (the server answers ~8 s after start here: docs/measurements.md).
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
    """A child `mlflow server` bound to 127.0.0.1:<port>; the port is kept across restarts."""

    def __init__(self, backend_uri: str, artifacts_dir: str | os.PathLike, *, host: str = "127.0.0.1",
                 port: int | None = None, workers: int = 1, log_path: str | os.PathLike | None = None):
        self.backend_uri = normalize_backend_uri(backend_uri)
        self.artifacts_dir = Path(artifacts_dir)
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.log_path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / f"wps-mlflow-server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [mlflow_executable(), "server", "--backend-store-uri", self.backend_uri,
                "--artifacts-destination", str(self.artifacts_dir.resolve()),
                "--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]

    def start(self, *, wait_s: float = 120.0) -> "MlflowServer":
        """Start the process and wait until /health answers (ServerError with the log tail if not)."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {"MLFLOW_DISABLE_TELEMETRY": "true", **os.environ}
        with open(self.log_path, "ab") as log:
            # Own process group: stop() ends the server and its workers, nothing else.
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.wait_healthy(wait_s)
        return self

    def wait_healthy(self, wait_s: float = 120.0) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if healthy(self.url, timeout_s=1.0):
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
        while time.monotonic() < deadline and not _port_free(self.host, self.port):
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
