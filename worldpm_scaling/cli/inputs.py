"""What `wps fit`, `wps analyze` and `wps predict` read: a results table (CSV/Parquet) and its columns,
a sweep's frame from a file, and a tracking store checked before it is queried. Shared by the
commands' modules, so neither imports the other. Heavy imports stay inside the functions: `wps --help`
must not load pandas or MLflow."""

from __future__ import annotations


def read_table(path: str):
    """A CSV or Parquet file as a DataFrame; an AnalysisInputError naming the file otherwise."""
    from pathlib import Path

    import pandas as pd

    from ..analysis.errors import AnalysisInputError

    p = Path(path)
    if not p.is_file():
        raise AnalysisInputError(f"{p}: no such file")
    try:
        return pd.read_parquet(p) if p.suffix in (".parquet", ".pq") else pd.read_csv(p)
    except Exception as e:  # noqa: BLE001 — any parser error is a bad input file
        raise AnalysisInputError(f"{p}: cannot read as a table: {e}") from None


def column(df, name: str, path: str):
    """Column `name` of `df` as floats (non-numbers → NaN); an AnalysisInputError naming it when absent."""
    from ..analysis.errors import AnalysisInputError

    if name not in df.columns:
        raise AnalysisInputError(f"{path}: no column {name!r} (columns: {', '.join(map(str, df.columns))})")
    import pandas as pd

    col = pd.to_numeric(df[name], errors="coerce")
    return col.to_numpy(float)


def frame_from_file(path: str):
    """load.from_file, with a file pandas or pyarrow cannot parse named as such (not their traceback)."""
    from ..analysis import load
    from ..analysis.errors import AnalysisInputError

    try:
        return load.from_file(path)
    except AnalysisInputError:
        raise
    except Exception as e:  # noqa: BLE001 — any parser error means a bad input file
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise AnalysisInputError(f"{path}: cannot read as a CSV/Parquet table of runs ({why})") from None


def check_store(uri: str, timeout_s: float = 5.0) -> None:
    """The tracking store answers, or a named error now: an HTTP server that is away is asked once for
    /health (`wps status` does the same), a SQLite file must be one, a scheme MLflow cannot read is named."""
    from pathlib import Path

    from ..track import reachable
    from ..track.mlflow_store import TrackingError, check_uri
    from ..track.secrets import mask_uri
    from . import CLIError

    try:
        check_uri(uri)
    except TrackingError as e:
        raise CLIError(str(e)) from None
    from ..launch.preflight import database_answers

    if database_answers(uri, timeout_s) is False:
        raise CLIError(
            f"tracking database {mask_uri(uri)} does not accept a connection within {timeout_s:g} s: "
            "start it, pass --tracking-uri, or analyse an export with --from FILE"
        )
    if uri.startswith(("http://", "https://")) and not reachable(uri, timeout_s):
        raise CLIError(
            f"tracking server {mask_uri(uri)} is not answering /health within {timeout_s:g} s: start it, "
            "pass --tracking-uri (or fix the sweep's tracking.uri), or analyse an export with --from FILE"
        )
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if db.is_dir():
            raise CLIError(f"{db}: a folder, not an MLflow SQLite store (--tracking-uri)")
        if db.is_file():
            try:
                with open(db, "rb") as f:
                    head = f.read(16)
            except OSError as e:
                raise CLIError(f"{db}: cannot read the MLflow store: {e.strerror or e}") from None
            if head and head != b"SQLite format 3\x00":
                raise CLIError(f"{db}: not an SQLite database, so not an MLflow store (--tracking-uri)")
