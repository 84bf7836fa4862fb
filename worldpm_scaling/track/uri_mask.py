"""Credentials embedded in a URI masked for display and logs (`scheme://user:pass@host`, `?password=…`).

Its own module because both the secret scrubber (track/secrets.py) and the credentials reader
(track/credentials.py, whose errors show the offending URI) need it, and the scrubber needs the reader.
"""

from __future__ import annotations

import re

_URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^/@:\s]*)(:(?P<pw>[^/@\s]*))?@", re.I)
_QUERY_SECRET = re.compile(
    r"(?P<k>[?&;](?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key|sig)=)"
    r"(?P<v>[^&;#\s]*)",
    re.I,
)
MASK = "***"


def mask_uri(value: str) -> str:
    """`postgresql://u:pw@h/db?password=x` → `postgresql://u:***@h/db?password=***`."""

    def userinfo(m: re.Match) -> str:
        if m.group("pw") is None:  # user only (token-as-user, e.g. https://ghp_x@github.com)
            return f"{m.group('scheme')}{MASK}@"
        return f"{m.group('scheme')}{m.group('user')}:{MASK}@"

    value = _URI_USERINFO.sub(userinfo, value)
    return _QUERY_SECRET.sub(lambda m: m.group("k") + MASK, value)
