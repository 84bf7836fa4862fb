"""The few MLflow operations the tracker needs, with bounded timeouts and no hidden retries.

MlflowClient retries an unreachable HTTP server for minutes (exponential backoff, 7 tries by
default); a training job must instead notice the outage within seconds and spool. So metric batches
and health probes go through MLflow's REST helper with an explicit timeout and retry count; the rare
calls at run start/finish use the client. Non-HTTP URIs (sqlite:///…, postgresql://…) talk to the
database directly through the client. The errors it raises are track/tracking_errors.py's (re-exported here).
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from typing import Any, Iterable, Literal, Mapping, Sequence, overload

from .secrets import mask_uri, scrub
from .spool import Point
from .tracking_errors import (
    TrackingAuthError,
    TrackingError,
    TrackingURIError,
    auth_error,
    auth_status,
    command_auth_error,
)

__all__ = [
    "DEFAULT_URI",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_PER_BATCH",
    "MAX_TAGS_PER_BATCH",
    "ROLE_TAG",
    "Store",
    "TrackingAuthError",
    "TrackingError",
    "TrackingURIError",
    "auth_error",
    "auth_status",
    "check_uri",
    "command_auth_error",
    "filter_literal",
    "points_of",
    "quiet_mlflow",
    "resolve_uri",
    "step_chunks",
    "wait_healthy",
]

MAX_METRICS_PER_BATCH = 1000  # MLflow log_batch limit (REST API docs: runs/log-batch)
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
DEFAULT_URI = "sqlite:///mlflow.db"
ROLE_TAG = "wps.role"  # "sweep" (parent) or "cell" (child)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""The UI opens such an experiment on its model-training views (runs table, charts), not the GenAI
overview an experiment without the tag gets."""


def quiet_mlflow() -> None:
    """Turn MLflow's usage telemetry off unless the user chose otherwise: compute nodes have no
    internet, and its failing start-up unsets an environment variable other threads read, which made
    concurrent requests fail here with KeyError('_MLFLOW_TELEMETRY_SESSION_ID')."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class _Guarded:
    """An MlflowClient whose 401/403 answers become TrackingAuthError (every caller, one place)."""

    def __init__(self, client, store: "Store"):
        self._client, self._store = client, store

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*a, **kw):
            try:
                return attr(*a, **kw)
            except Exception as e:
                self._store.raise_if_auth(e, name)
                raise

        return call


SCHEMES = (
    "http",
    "https",
    "sqlite",
    "postgresql",
    "postgres",
    "mysql",
    "mssql",
    "file",
    "databricks",
    "databricks-uc",
    "uc",
)
"""Tracking URI schemes MLflow's tracking and registry stores accept (`+driver` suffixes allowed)."""


def resolve_uri(uri: str | None) -> str:
    """spec uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def check_uri(uri: str) -> str:
    """`uri` if MLflow can track to it; TrackingURIError naming it otherwise (MLflow itself fails
    later, with a traceback about model-registry stores). An HTTP URI with credentials in it is
    refused (SecretInURIError): they belong in the environment or ~/.mlflow/credentials."""
    if uri.lower().startswith(("http://", "https://")):
        from .credentials import refuse_secret_in_uri

        refuse_secret_in_uri(uri)
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme and scheme.split("+", 1)[0] not in SCHEMES:
        raise TrackingURIError(
            f"tracking URI {mask_uri(uri)!r}: unsupported scheme {scheme!r} "
            f"(use http(s)://HOST:PORT, sqlite:///FILE, postgresql://… or mysql://…)"
        )
    return uri


def step_chunks(points: Sequence[Point], limit: int = MAX_METRICS_PER_BATCH) -> list[list[Point]]:
    """Split points (in step order) into requests of ≤ `limit` that never cut a step in two, so each
    request — one database transaction — holds whole steps and the server always has a prefix of
    the stream; a step with more than `limit` points is split on its own."""
    chunks: list[list[Point]] = []
    cur: list[Point] = []
    i = 0
    while i < len(points):
        j = i
        while j < len(points) and points[j][3] == points[i][3]:
            j += 1
        step = list(points[i:j])
        if len(cur) + len(step) > limit and cur:
            chunks.append(cur)
            cur = []
        while len(step) > limit:
            chunks.append(step[:limit])
            step = step[limit:]
        cur.extend(step)
        i = j
    if cur:
        chunks.append(cur)
    return chunks


class Store:
    """An MLflow tracking URI: health, batched metric writes, run lookup/creation, reads."""

    def __init__(self, uri: str | None = None, *, timeout_s: float = 15.0, retries: int = 1):
        quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = check_uri(resolve_uri(uri))
        self.is_http = self.uri.startswith(("http://", "https://"))
        self.client = _Guarded(MlflowClient(self.uri), self)
        self.timeout_s = timeout_s
        self.retries = retries
        self._creds = None
        self.credentials = None
        """Where this process's credentials come from (`credentials.resolve`, read now: at job or
        command start, from the environment or ~/.mlflow/credentials; never from the job's spec)."""
        if self.is_http:
            from mlflow.utils.credentials import get_default_host_creds

            from .credentials import resolve

            self.credentials = resolve()  # CredentialsFileError for a file others can read
            self._creds = get_default_host_creds(self.uri)

    def raise_if_auth(self, exc: BaseException, doing: str = "") -> None:
        """TrackingAuthError (from `exc`) if the server answered 401/403; else nothing."""
        if isinstance(exc, TrackingAuthError):
            raise exc
        code = auth_status(exc)
        if code is not None:
            raise auth_error(self.safe_uri, code, self.credentials, doing) from None

    def check_access(self) -> None:
        """One authenticated read (HTTP only): TrackingAuthError now, at start, rather than after
        the first batch of points — /health answers without credentials."""
        if self.is_http:
            self._get("/api/2.0/mlflow/experiments/search", {"max_results": 1})

    @property
    def safe_uri(self) -> str:
        return mask_uri(self.uri)

    # -- connectivity ---------------------------------------------------------------------------
    def healthy(self, timeout_s: float = 3.0) -> bool:
        """Whether the store answers now (HTTP: GET /health; a database: a cheap query)."""
        if self.is_http:
            from .server import healthy

            return healthy(self.uri, timeout_s)
        try:
            self.client.search_experiments(max_results=1)
            return True
        except Exception:  # noqa: BLE001 — any failure means "not now"
            return False

    def _post(self, endpoint: str, body: Mapping[str, Any]) -> dict:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        resp = http_request(
            self._creds,
            endpoint,
            "POST",
            max_retries=self.retries,
            backoff_factor=1,
            backoff_jitter=0.5,
            timeout=self.timeout_s,
            json=body,
        )
        if resp.status_code in (401, 403):
            raise auth_error(self.safe_uri, resp.status_code, self.credentials, endpoint.split("/mlflow/", 1)[-1])
        verify_rest_response(resp, endpoint)
        return json.loads(resp.text or "{}")

    def _get(self, endpoint: str, params: Mapping[str, Any]) -> dict:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        resp = http_request(
            self._creds,
            endpoint,
            "GET",
            max_retries=self.retries,
            backoff_factor=1,
            backoff_jitter=0.5,
            timeout=self.timeout_s,
            params=dict(params),
        )
        if resp.status_code in (401, 403):
            raise auth_error(self.safe_uri, resp.status_code, self.credentials, endpoint.split("/mlflow/", 1)[-1])
        verify_rest_response(resp, endpoint)
        return json.loads(resp.text or "{}")

    # -- metrics ------------------------------------------------------------------------------------
    def log_points(self, run_id: str, points: Sequence[Point]) -> None:
        """Send points (step order) in step-aligned batches of ≤ 1000; raises on the first failure
        (earlier batches are on the server: callers spool the rest and dedupe on replay)."""
        for chunk in step_chunks(points):
            if self.is_http:
                body = {
                    "run_id": run_id,
                    "metrics": [
                        {"key": k, "value": _json_float(v), "timestamp": int(t), "step": int(s)} for k, v, t, s in chunk
                    ],
                }
                self._post("/api/2.0/mlflow/runs/log-batch", body)
            else:
                from mlflow.entities import Metric

                self.client.log_batch(run_id, metrics=[Metric(k, float(v), int(t), int(s)) for k, v, t, s in chunk])

    def history(self, run_id: str, key: str) -> list[tuple[int, float, int]]:
        """Every (step, value, timestamp ms) logged for `key`, in server order."""
        if not self.is_http:
            return [(m.step, m.value, m.timestamp) for m in self.client.get_metric_history(run_id, key)]
        out: list[tuple[int, float, int]] = []
        token = None
        for _ in range(100_000):
            params = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                params["page_token"] = token
            d = self._get("/api/2.0/mlflow/metrics/get-history", params)
            out.extend(
                (int(m.get("step", 0)), float(m["value"]), int(m.get("timestamp", 0))) for m in d.get("metrics", [])
            )
            token = d.get("next_page_token")
            if not token:
                break
        return out

    def max_step(self, run_id: str) -> int | None:
        """The highest optimizer step any metric of the run reached (MLflow's latest_metrics keep
        each key's maximum step), in one request; system-metric sample counters are left out."""
        from .base import SYSTEM_PREFIX

        run = self.client.get_run(run_id)
        steps = [m.step for m in getattr(run.data, "_metric_objs", []) if not m.key.startswith(SYSTEM_PREFIX)]
        return max(steps) if steps else None

    # -- runs ---------------------------------------------------------------------------------------
    @overload
    def experiment_id(self, name: str, *, create: Literal[True] = ...) -> str: ...
    @overload
    def experiment_id(self, name: str, *, create: bool) -> str | None: ...

    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        if not create:
            return None
        created = self.create_experiment_once(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        return created if created is not None else self.client.get_experiment_by_name(name).experiment_id

    def create_experiment_once(self, name: str, tags: Mapping[str, str] | None = None) -> str | None:
        """Create experiment `name`: its id if this call created it, None if it already existed (the
        unique name makes this MLflow's one atomic compare-and-set; sync.elect_run builds on it)."""
        try:
            return self.client.create_experiment(name, tags=dict(tags) if tags else None)
        except TrackingAuthError:
            raise
        except Exception:
            if self.client.get_experiment_by_name(name) is None:
                raise
            return None

    def find_runs(self, experiment_id: str, filter_string: str, max_results: int = 50) -> list:
        """Active runs matching the filter, oldest first (ties broken by run id: every caller agrees)."""
        runs = self.client.search_runs([experiment_id], filter_string=filter_string, max_results=max_results)
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def create_run(self, experiment_id: str, *, name: str, tags: Mapping[str, str]) -> str:
        return self.client.create_run(experiment_id, run_name=name, tags=dict(tags)).info.run_id

    def set_running(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def set_status(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)

    def ensure_params(
        self, run_id: str, params: Mapping[str, Any], *, existing: Mapping[str, str] | None = None
    ) -> list[str]:
        """Log params the run does not have yet (MLflow params are immutable: a key already there is
        kept, a changed value is reported back instead of failing the job)."""
        from mlflow.entities import Param

        clean = scrub(params)
        have = dict(existing) if existing is not None else self.client.get_run(run_id).data.params
        for attempt in range(3):
            new = [Param(k, v) for k, v in clean.items() if k not in have]
            try:
                for i in range(0, len(new), MAX_PARAMS_PER_BATCH):
                    self.client.log_batch(run_id, params=new[i : i + MAX_PARAMS_PER_BATCH])
                break
            except TrackingAuthError:
                raise
            except Exception:
                if attempt == 2:  # (the server answers a duplicate key with a 400); re-read and go on
                    raise
                have = self.client.get_run(run_id).data.params
        return [k for k, v in clean.items() if k in have and have[k] != v]

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        clean = [RunTag(k, v) for k, v in scrub(tags, max_len=8000).items()]
        for i in range(0, len(clean), MAX_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=clean[i : i + MAX_TAGS_PER_BATCH])

    def log_inputs(self, run_id: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Dataset inputs (`datasets.describe` records); MLflow keeps one input per (dataset, run),
        so logging the same records again (a requeued job, a replay) adds nothing."""
        from .datasets import to_entities

        if records:
            self.client.log_inputs(run_id, datasets=to_entities([dict(r) for r in records]))

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None = None) -> None:
        if os.path.isdir(path):
            self.client.log_artifacts(run_id, path, artifact_path)
        else:
            self.client.log_artifact(run_id, path, artifact_path)

    def runs_table_url(self, experiment_id: str) -> str | None:
        """The UI's runs table (nested children under the parent) for an HTTP server."""
        if not self.is_http:
            return None
        return f"{self.uri.rstrip('/')}/#/experiments/{urllib.parse.quote(str(experiment_id))}/runs"


def _json_float(v: float) -> float | str:
    """MLflow's REST API takes NaN/±Infinity as strings (protobuf JSON)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return float(v)


def filter_literal(value: str) -> str:
    """Quote a value for an MLflow search filter (single quotes escaped)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def wait_healthy(store: Store, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if store.healthy():
            return True
        time.sleep(0.5)
    return False


def points_of(metrics: Iterable[tuple[str, float]], step: int, ts_ms: int) -> list[Point]:
    return [(k, float(v), ts_ms, int(step)) for k, v in metrics]
