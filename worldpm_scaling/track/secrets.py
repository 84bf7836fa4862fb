"""Keep secrets out of MLflow: params, tags and spool metadata are readable by everyone on the server.

Pure functions. A key that looks like a secret (token, password, secret, key …) is dropped; a value
that embeds credentials (`scheme://user:pass@host`, `?password=…`) has them masked; a value equal to
the content of a secret-looking environment variable is dropped too (a token passed by value).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from .credentials import known_secrets
from .uri_mask import MASK, mask_uri  # noqa: F401 — re-exported: where callers import them from

SECRET_NAME = re.compile(
    r"(token|passw(or)?d|pwd|secret|api[_-]?key|(^|[_\-])key($|[_\-])|credential|(^|[_\-])auth($|[_\-]|orization)|"
    r"cookie|private[_\-]?key)",
    re.I,
)
"""Key names whose values are never logged (MLFLOW_TRACKING_TOKEN, db.password, aws_secret_key …)."""


# Values that are not secrets although their names look like one (a tokenizer is not a token).
_ALLOWED_NAMES = re.compile(r"(tokens?_seen|tokenizer|tokens_per|max_[a-z_]*tokens|(^|_)tokens$|sort_key)", re.I)


def is_secret_name(name: str) -> bool:
    """True for keys like `MLFLOW_TRACKING_TOKEN`, `db.password`, `api_key`; False for `data.tokens`."""
    last = re.split(r"[./]", name)[-1]
    if _ALLOWED_NAMES.search(last) and not re.search(
        r"(passw|secret|api[_-]?key|access[_-]?token|auth[_-]?token)", last, re.I
    ):
        return False
    return bool(SECRET_NAME.search(last))


def secret_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of secret-looking environment variables (≥ 6 chars), to catch tokens passed by value,
    and the tracking password/token from ~/.mlflow/credentials (credentials.known_secrets)."""
    env = os.environ if environ is None else environ
    return {v for k, v in env.items() if is_secret_name(k) and len(v) >= 6} | known_secrets(environ)


def scrub(
    values: Mapping[str, Any], *, max_len: int = 6000, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Stringified, secret-free copy of `values` (params or tags); values cut to `max_len` chars
    (MLflow's param value limit is 6000)."""
    leaked = secret_values(environ)
    out: dict[str, str] = {}
    for k, v in values.items():
        if is_secret_name(str(k)):
            continue
        s = mask_uri(str(v))
        if any(sec in s for sec in leaked):
            continue
        out[str(k)] = s[:max_len]
    return out
