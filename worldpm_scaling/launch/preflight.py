"""The pre-flight check: everything a sweep's jobs will need, verified before anything queues.

A job that finds its data, tokenizer or eval files missing dies seconds after it starts, hours after it
was queued, and says so only in its log. `preflight(plan)` looks at every input once, here: the training
pairs (and that they hold the budget), the tokenizer (and that it fits each model's vocabulary), the eval
files, the pretrained bases, the tracking server, the output folder and the cells' own state files. Each
is a `Check` row of one readiness table (`wps check`, `wps launch --dry-run`); `wps launch` refuses with
`PreflightError` naming every row that is not ready. Value ranges (seeds ≥ 0, fractions in [0, 1], …)
are checked earlier, when the sweep is loaded (config/).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..plan import Plan
from .records import UNREADABLE, launches, read_state


@dataclass
class Check:
    """One row of the readiness table."""

    item: str
    """What is checked: `data.source`, `eval set helpsteer2`, `base qwen2.5-7b`, …"""
    where: str
    """The file, folder or URI looked at."""
    ok: bool
    detail: str
    """What was found (`20,000 pairs`) or what to do (`run wps data synth --out data/demo`)."""
    blocking: bool = True
    """False for a warning that does not stop a launch."""


class PreflightError(ValueError):
    """`wps launch` refuses: an input a job needs is missing or unreadable (names each)."""


def _count_pairs(path: Path) -> int:
    """Rows of a pairs file without reading it: the Parquet footer, or the JSONL's non-empty lines."""
    from ..data.io import PairsFileError, _parquet

    if path.suffix == ".parquet":
        return _parquet(path).metadata.num_rows
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError as e:
        raise PairsFileError(f"{path}: {e.strerror or e}") from None


def check_data(plan: Plan) -> Check:
    from ..data.io import PairsFileError, pairs_file

    spec = plan.sweep
    src = spec.data.source
    need = max((r.pairs for r in plan.runs), default=0)
    try:
        path = pairs_file(src)
        n = _count_pairs(path)
    except (PairsFileError, OSError) as e:
        hint = "" if Path(src).exists() else " (make it with `wps data synth` or `wps data stackexchange`)"
        return Check("data.source", src, False, f"{e}{hint}")
    if n < need:
        return Check(
            "data.source",
            str(path),
            False,
            f"holds {n:,} pairs; the sweep trains on up to {need:,} "
            "(data.pairs, milestones): add data or lower the budget",
        )
    return Check("data.source", str(path), True, f"{n:,} pairs (≥ {need:,} needed)")


def check_tokenizer(plan: Plan) -> Check:
    from ..data.tokenizer import TokenizerError, load_tokenizer

    tok_path = plan.sweep.data.tokenizer
    if tok_path is None:
        return Check("data.tokenizer", "-", True, "none given: the job trains the demo BPE on the data")
    try:
        tok = load_tokenizer(tok_path)
    except (TokenizerError, OSError, ValueError) as e:
        return Check("data.tokenizer", str(tok_path), False, str(e) + _tokenizer_hint(plan, tok_path))
    small = sorted({r.model.name for r in plan.runs if r.model.vocab < tok.vocab_size})
    if small:
        return Check(
            "data.tokenizer",
            str(tok_path),
            False,
            f"{tok.vocab_size:,} tokens, more than the vocabulary of {', '.join(small)}",
        )
    return Check("data.tokenizer", str(tok_path), True, f"{tok.vocab_size:,} tokens")


def _tokenizer_hint(plan: Plan, tok_path: str) -> str:
    """Where a Qwen2.5 tokenizer already is: every base folder under the models directory holds one."""
    if Path(tok_path).exists():
        return ""
    for r in plan.runs:
        folder = Path(r.model.path) if r.model.path else None
        if folder is not None and (folder / "tokenizer.json").is_file():
            return f"; the base folder {folder} holds one (data.tokenizer: {folder})"
    return ""


def check_evals(plan: Plan) -> list[Check]:
    """One row per eval set that is missing or unreadable; one row for all when every set is there."""
    from ..data.evals import EvalSetMissing, find, registry
    from ..data.io import iter_pairs

    spec = plan.sweep.eval
    reg = registry(spec)
    if not Path(spec.dir).is_dir() and not spec.extra:  # one row, not twelve
        return [
            Check(
                "eval sets",
                spec.dir,
                False,
                f"no folder {spec.dir} (eval.dir) for the {len(reg)} sets; "
                "`wps data evals` lists where each set comes from",
            )
        ]
    rows, found = [], 0
    for name, (_cat, paths) in reg.items():
        try:
            path = find(name, paths)
        except EvalSetMissing:
            where = paths[0].parent if not paths[0].parent.is_dir() else paths[0]
            rows.append(
                Check(
                    f"eval set {name}",
                    str(where),
                    False,
                    "missing"
                    + ("" if Path(spec.dir).is_dir() else f" (no folder {spec.dir}: eval.dir)")
                    + "; `wps data evals` lists where each set comes from",
                )
            )
            continue
        try:
            n = sum(1 for _ in iter_pairs(path))
            if n == 0:
                raise ValueError("no pairs in the file")
        except (ValueError, OSError) as e:
            rows.append(Check(f"eval set {name}", str(path), False, f"unreadable: {e}"))
            continue
        found += 1
    if found and not rows:
        return [Check("eval sets", spec.dir, True, f"{found} of {found} found and readable")]
    return rows


def check_bases(plan: Plan) -> list[Check]:
    from ..models import missing_bases

    bad = missing_bases(plan.runs)
    by_model: dict[str, str] = {}
    for r in plan.runs:
        if r.cell_id in bad:
            by_model.setdefault(r.model.name, bad[r.cell_id])
    paths = {r.model.name: r.model.path or "cluster.models_dir / $WPS_MODELS_DIR" for r in plan.runs}
    rows = [Check(f"base {m}", paths[m], False, why.removeprefix(f"{m}: ")) for m, why in sorted(by_model.items())]
    pretrained = {r.model.name for r in plan.runs if r.model.init == "pretrained"}
    if pretrained and not rows:
        rows.append(
            Check(
                "bases",
                plan.sweep.cluster.models_dir or "-",
                True,
                f"{len(pretrained)} pretrained base folder(s) found",
            )
        )
    return rows


def database_answers(uri: str, timeout_s: float = 3.0) -> bool | None:
    """For a database store URI (postgresql://, mysql://…): whether its host accepts a TCP connection
    within `timeout_s` (MLflow itself retries a dead database for minutes); None for other URIs."""
    import socket
    from urllib.parse import urlsplit

    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    ports = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
    if scheme not in ports:
        return None
    try:
        u = urlsplit(uri)
        host, port = u.hostname, u.port or ports[scheme]
    except ValueError:
        return False
    if not host:
        return None  # a local socket: nothing to probe over TCP
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def check_tracking(plan: Plan, *, timeout_s: float = 3.0) -> Check:
    from ..track import reachable
    from ..track.mlflow_store import TrackingError, check_uri, resolve_uri
    from ..track.secrets import mask_uri

    t = plan.sweep.tracking
    if t.backend != "mlflow":
        return Check(
            "tracking",
            t.backend,
            True,
            {
                "spool": "spooled under each cell; `wps sync` sends them later",
                "none": "metrics are not recorded",
                "memory": "metrics kept in memory (tests)",
            }[t.backend],
        )
    try:
        uri = check_uri(resolve_uri(t.uri))
    except TrackingError as e:
        return Check("tracking.uri", str(t.uri), False, str(e))
    shown = mask_uri(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return _writable_check("tracking.uri", db.parent, shown, "SQLite store")
    if uri.startswith(("http://", "https://")):
        if reachable(uri, timeout_s):
            return Check("tracking.uri", shown, True, "answers /health")
        return Check(
            "tracking.uri",
            shown,
            False,
            f"not answering /health within {timeout_s:g} s: start the server, "
            "fix tracking.uri, or set tracking.backend: spool (then `wps sync` after the jobs)",
        )
    answers = database_answers(uri, timeout_s)
    if answers is False:
        return Check(
            "tracking.uri",
            shown,
            False,
            f"the database does not accept a connection within {timeout_s:g} s: start it or fix tracking.uri",
        )
    if answers:
        return Check("tracking.uri", shown, True, "the database accepts connections")
    return Check("tracking.uri", shown, True, "not checked (not an HTTP, SQLite or database store)", blocking=False)


def _writable_check(item: str, folder: Path, shown: str, what: str) -> Check:
    """The folder (or its nearest existing parent) is a folder this user can write."""
    p = folder if str(folder) else Path(".")
    while not p.exists() and p != p.parent:
        if p.is_symlink():
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        return Check(item, shown, False, f"{p} is a file, not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        return Check(item, shown, False, f"{p} is not writable by this user")
    return Check(item, shown, True, f"{what}: {'exists' if folder.exists() else 'will be created in ' + str(p)}")


def check_output(plan: Plan) -> Check:
    out = Path(plan.sweep.output_dir)
    c = _writable_check("out_dir", out, str(out), "output folder")
    if c.ok and (out / "cells").exists() and not (out / "cells").is_dir():
        return Check("out_dir", str(out), False, f"{out / 'cells'} is a file, not a folder")
    return c


def check_state(plan: Plan) -> list[Check]:
    """Cells whose status.json cannot be read (a relaunch could train a FINISHED cell again), and
    launch-log lines that are skipped."""
    rows = []
    for r in plan.runs:
        st = read_state(r.out_dir)
        if st.get("status") == UNREADABLE:
            rows.append(
                Check(
                    f"cell {r.index} state",
                    str(Path(r.out_dir) / "status.json"),
                    False,
                    f"{st['problem']}; check the cell's checkpoints, then remove the file to resume it",
                )
            )
    problems: list[str] = []
    launches(plan.sweep.output_dir, problems=problems)
    rows += [
        Check("launch log", str(Path(plan.sweep.output_dir) / "launches.jsonl"), True, p, blocking=False)
        for p in problems
    ]
    return rows


def preflight(plan: Plan, *, tracking_timeout_s: float = 3.0) -> list[Check]:
    """Every check, in the order a job meets them; nothing is written."""
    values = Check(
        "sweep values",
        "-",
        True,
        f"{len(plan.runs)} cells; seeds in [0, 2^32), fractions in [0, 1], "
        "every range and type checked when the sweep was loaded",
    )
    rows = [
        values,
        check_data(plan),
        check_tokenizer(plan),
        *check_evals(plan),
        *check_bases(plan),
        check_tracking(plan, timeout_s=tracking_timeout_s),
        check_output(plan),
        *check_state(plan),
    ]
    return rows


def not_ready(rows: list[Check]) -> list[Check]:
    return [c for c in rows if not c.ok and c.blocking]


def require_ready(rows: list[Check]) -> None:
    """Raise PreflightError naming every blocking row that is not ready."""
    bad = not_ready(rows)
    if bad:
        raise PreflightError(
            f"{len(bad)} input(s) not ready, nothing submitted: "
            + "; ".join(f"{c.item} ({c.where}): {c.detail}" for c in bad)
            + " (`wps check SWEEP.yaml` shows the readiness table)"
        )
