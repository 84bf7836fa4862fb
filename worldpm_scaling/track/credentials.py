"""Credentials for an authenticated MLflow server, read where the job or command runs, never carried.

A shared tracking server runs MLflow's basic-auth app (`wps ui --auth`, docs/tracking_security.md).
Clients authenticate the way MLflow's own client does, so `MlflowClient` and this module agree:

1. the environment: `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`, or `MLFLOW_TRACKING_TOKEN`;
2. else the file `~/.mlflow/credentials` (MLflow's format: section `[mlflow]`, keys
   `mlflow_tracking_username`, `mlflow_tracking_password`), which must be mode 0600.

Nothing here is ever written into a sweep spec, a pickled job, an sbatch script, a spool or an
MLflow param/tag: the job reads its credentials when it opens the tracker (`Store.__init__`). This
module only *names* where they came from (for errors: never the secret itself), refuses a
credentials file others can read, and refuses credentials embedded in a tracking URI (a URI is
copied into job pickles, logs and spool metadata).
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .uri_mask import mask_uri

USER_VAR = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VAR = "MLFLOW_TRACKING_PASSWORD"
TOKEN_VAR = "MLFLOW_TRACKING_TOKEN"
SECTION = "mlflow"


class CredentialsError(ValueError):
    """Credentials that must not be used as given (a world-readable file, a secret in a URI).
    A ValueError of this package: the CLI reports it as `error: …` with exit code 2."""


class CredentialsFileError(CredentialsError):
    """The credentials file is readable by others or cannot be parsed (names the file)."""


class SecretInURIError(CredentialsError):
    """A tracking URI with `user:password@` in it (the message shows it masked)."""


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    """MLflow's credentials file: `~/.mlflow/credentials` of the user running the job ($HOME)."""
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".mlflow" / "credentials"


@dataclass(frozen=True)
class Credentials:
    """Who the client will be on the server, and where that came from. `repr` never shows secrets."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: str = "none"
    """Human-readable origin, e.g. `environment (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD)`."""

    @property
    def present(self) -> bool:
        return bool(self.token or (self.username and self.password))

    def describe(self) -> str:
        """`user 'alice' from <source>` / `a token from <source>` / `no credentials (looked in …)`."""
        if self.token:
            return f"a token from {self.source}"
        if self.username and self.password:
            return f"user {self.username!r} from {self.source}"
        if self.username:
            return f"user {self.username!r} without a password ({self.source})"
        return f"no credentials ({self.source})"

    def secrets(self) -> set[str]:
        return {s for s in (self.password, self.token) if s}


def _read_file(path: Path) -> tuple[str | None, str | None]:
    """(username, password) from an MLflow credentials file; refuses one that others can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        raise CredentialsFileError(f"credentials file {path}: cannot read ({e.strerror})") from None
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        cfg.read(path)
    except (configparser.Error, UnicodeDecodeError) as e:
        raise CredentialsFileError(
            f"credentials file {path}: not in MLflow's format ([mlflow] section with "
            f"mlflow_tracking_username / mlflow_tracking_password): {type(e).__name__}"
        ) from None
    if SECTION not in cfg:
        return None, None
    user = cfg[SECTION].get(USER_VAR.lower()) or None
    password = cfg[SECTION].get(PASSWORD_VAR.lower()) or None
    if password and stat.S_IMODE(st.st_mode) & 0o077:
        raise CredentialsFileError(
            f"credentials file {path} holds a password but is readable by others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}` (not used as it is)"
        )
    return user, password


def resolve(environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials MLflow's client will send, read now (environment first, then the file).

    Same precedence as `mlflow.utils.credentials.read_mlflow_creds` (each of username and password
    from the environment if set there, else from the file); a token wins over both on the wire."""
    env = os.environ if environ is None else environ
    path = credentials_path(env)
    token = env.get(TOKEN_VAR) or None
    env_user, env_pw = env.get(USER_VAR) or None, env.get(PASSWORD_VAR) or None
    file_user, file_pw = (None, None) if (env_user and env_pw) else _read_file(path)
    user, password = env_user or file_user, env_pw or file_pw
    if token:
        return Credentials(username=user, token=token, source=f"the environment ({TOKEN_VAR})")
    parts = []
    if env_user or env_pw:
        parts.append(
            "the environment (" + ", ".join(v for v, x in ((USER_VAR, env_user), (PASSWORD_VAR, env_pw)) if x) + ")"
        )
    if (file_user and not env_user) or (file_pw and not env_pw):
        parts.append(f"credentials file {path}")
    if not parts:
        return Credentials(source=f"looked in ${USER_VAR}/${PASSWORD_VAR}, ${TOKEN_VAR} and {path}")
    return Credentials(username=user, password=password, source=" and ".join(parts))


_USERINFO = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.\-]*)://(?P<userinfo>[^/@?#]*)@", re.I)


def refuse_secret_in_uri(uri: str | None, *, what: str = "tracking URI") -> None:
    """SecretInURIError if `uri` carries a password (or a token as its user part). Such a URI is
    copied into the pickled job, its log and the spool; credentials belong in the environment or
    in ~/.mlflow/credentials (HTTP), or in ~/.pgpass / $PGPASSWORD (PostgreSQL)."""
    if not uri:
        return
    m = _USERINFO.match(uri.strip())
    if not m:
        return
    scheme = m.group("scheme").lower()
    userinfo = m.group("userinfo")
    http = scheme in ("http", "https")
    if ":" not in userinfo and not http:
        return  # postgresql://user@host/db: a user name, no secret
    where = (
        "$MLFLOW_TRACKING_USERNAME/$MLFLOW_TRACKING_PASSWORD on the nodes, or ~/.mlflow/credentials (mode 0600)"
        if http
        else "~/.pgpass (mode 0600) or $PGPASSWORD on the nodes"
    )
    raise SecretInURIError(
        f"{what} {mask_uri(uri)!r} embeds credentials; a URI is copied into job pickles, logs and spool "
        f"files, so give the URI without them and put the credentials in {where} "
        "(docs/tracking_security.md)"
    )


def known_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """The password/token the client would send (≥ 6 chars), to keep them out of params and tags
    even when they came from the credentials file rather than the environment."""
    try:
        creds = resolve(environ)
    except CredentialsError:
        return set()
    return {s for s in creds.secrets() if len(s) >= 6}


def write_credentials_file(path: str | os.PathLike, username: str, password: str) -> Path:
    """Create `path` (mode 0600 from the first byte, never overwriting a file) in MLflow's format."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[{SECTION}]\n{USER_VAR.lower()} = {username}\n{PASSWORD_VAR.lower()} = {password}\n")
    return p
