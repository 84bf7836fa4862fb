"""What a refusing or silent tracking server becomes: the named tracking errors and the 401/403 reading."""

from __future__ import annotations

import os

from .secrets import mask_uri


class TrackingError(RuntimeError):
    """The tracking server refused or did not answer (message names the URI, without credentials)."""


class TrackingURIError(TrackingError, ValueError):
    """A tracking URI whose scheme MLflow cannot store runs in (bad input: exit 2)."""


class TrackingAuthError(TrackingError, ValueError):
    """The server refused the client: HTTP 401 (no or wrong credentials) or 403 (no permission).
    Names the URI and the credential source tried, never the secret; never a reason to spool
    silently (the CLI exits 2 with it, a job stops with it)."""

    def __init__(self, message: str, status: int | None = None, uri: str | None = None):
        super().__init__(message)
        self.status, self.uri = status, uri

    def __reduce__(self):  # a failed job's exception is pickled (submitit): keep status and URI
        return type(self), (str(self), self.status, self.uri)


def auth_error(uri: str, status: int, credentials, doing: str = "") -> TrackingAuthError:
    """The named error for a 401/403 from `uri` (already masked) after trying `credentials`."""
    what = (
        "refused the credentials"
        if status == 401 and credentials is not None and credentials.present
        else "asked for credentials"
        if status == 401
        else "denied permission"
    )
    hint = (
        "set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD where the command or job runs, or write "
        "~/.mlflow/credentials (mode 0600); an admin creates users (docs/tracking_security.md)"
        if status == 401
        else "ask the experiment's owner or an admin for EDIT or MANAGE on it (docs/tracking_security.md)"
    )
    who = credentials.describe() if credentials is not None else "no credentials"
    return TrackingAuthError(
        f"tracking server {uri} {what} (HTTP {status}{', ' + doing if doing else ''}); tried {who}; {hint}", status, uri
    )


def auth_status(exc: BaseException) -> int | None:
    """401 or 403 if `exc` is MLflow's (or requests') answer to an unauthenticated/forbidden request."""
    if isinstance(exc, TrackingAuthError):
        return exc.status
    code = None
    get = getattr(exc, "get_http_status_code", None)
    if callable(get) and getattr(exc, "error_code", None) in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        code = get()
    resp = getattr(exc, "response", None)
    if code is None and resp is not None:
        code = getattr(resp, "status_code", None)
    if code is None:  # an artifact upload's failure keeps only the text
        msg = str(exc)
        for c in (401, 403):
            if f"error code {c} " in msg or f"{c} Client Error" in msg:
                code = c
    return code if code in (401, 403) else None


def command_auth_error(exc: BaseException, argv: list[str] | None = None) -> TrackingAuthError | None:
    """For a CLI command that met a 401/403 through MLflow's own client (not through Store): the
    TrackingAuthError naming the URI it was given (--tracking-uri/--uri, else $MLFLOW_TRACKING_URI)
    and the credential source; None if `exc` is no such refusal."""
    import sys

    code = auth_status(exc)
    if code is None:
        return None
    if isinstance(exc, TrackingAuthError):
        return exc
    from .credentials import CredentialsError, resolve
    from .source import LAST_ARGS

    args = list(argv if argv is not None else (LAST_ARGS or sys.argv[1:]))
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "(the sweep's tracking.uri)"
    for i, a in enumerate(args):
        for flag in ("--tracking-uri", "--uri"):
            if a == flag and i + 1 < len(args):
                uri = args[i + 1]
            elif a.startswith(flag + "="):
                uri = a.split("=", 1)[1]
    try:
        creds = resolve()
    except CredentialsError:
        creds = None
    return auth_error(mask_uri(uri), code, creds)
