"""What a sweep's folders record about its cells, read defensively: the launch log (launches.jsonl, one
line per submitted cell) and each cell's status.json. Read by submitting, status and the pre-flight
check alike, so it depends on none of them."""

from __future__ import annotations

import json
from pathlib import Path

UNREADABLE = "UNREADABLE"
"""The state of a cell whose status.json exists but cannot be read (torn, not JSON, not a record): never
shown as SUBMITTED or NOT LAUNCHED, which would invite a relaunch that trains a FINISHED cell again."""


def read_state(out_dir: str) -> dict:
    """The cell's status.json as a record: {} when there is none; {"status": UNREADABLE, "problem": …}
    when it is there but torn, binary, not a JSON object, or its fields have the wrong types."""
    p = Path(out_dir) / "status.json"
    try:
        text = p.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # no file (a file above it: no cell folder, no state)
        return {}
    except OSError as e:
        return {"status": UNREADABLE, "problem": f"{p}: {e.strerror or e}"}
    try:
        d = json.loads(text.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        return {"status": UNREADABLE, "problem": f"{p}: not a JSON record ({e})"}
    if (
        not isinstance(d, dict)
        or not isinstance(d.get("status"), str)
        or not all(
            isinstance(d.get(k), (int, float, type(None))) and not isinstance(d.get(k), bool)
            for k in ("pairs_seen", "steps")
        )
    ):
        return {"status": UNREADABLE, "problem": f"{p}: not a cell status record ({text[:80]!r})"}
    return d


def launches(out_dir: str | Path, *, problems: list[str] | None = None) -> dict[str, dict]:
    """Latest launch record per cell. A line that is not a record (torn by a crash mid-append, or edited)
    is skipped and described in `problems` (`FILE:LINE: …`): the other cells' records still count."""
    p = Path(out_dir) / "launches.jsonl"
    recs: dict[str, dict] = {}
    bad: list[str] = []
    if p.is_dir():
        bad.append(f"{p}: is a folder, not the sweep's launch log; no launch records read")
    elif p.is_file():
        try:
            data = p.read_bytes()
        except OSError as e:
            data = b""
            bad.append(f"{p}: cannot read ({e.strerror or e}); no launch records read")
        for i, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                d = json.loads(raw.decode("utf-8"))
                if not (
                    isinstance(d, dict)
                    and isinstance(d.get("cell_id"), str)
                    and d.get("job_id") is not None
                    and isinstance(d.get("executor"), str)
                ):
                    raise ValueError("not a launch record (cell_id, job_id, executor)")
            except ValueError as e:
                bad.append(f"{p}:{i}: skipped a line that is not a launch record ({str(e)[:80]}): {raw[:60]!r}")
                continue
            recs[d["cell_id"]] = d
    if problems is not None:
        problems.extend(bad)
    return recs
