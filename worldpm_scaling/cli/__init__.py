"""`wps` — the command line. Front end only: parse, call the layers, print.

Each layer's commands live in their own module here (`cli/plan.py`, `cli/train.py`, …) exposing
`register(subparsers)`; heavy imports (torch, mlflow) happen inside the handlers so `wps --help` and
`wps plan` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..config import SpecError

# Order = order in `wps --help`.
COMMAND_MODULES = ("plan", "launch", "train", "export", "score", "data", "track", "analysis", "predict")

EXIT_BAD_INPUT = 2


class CLIError(Exception):
    """A user error the CLI reports as `error: …` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wps",
        description="worldpm_scaling: plan, launch, track and analyse scaling-law sweeps of "
        "Bradley–Terry reward models (WorldPM, arXiv 2505.10527).",
        epilog="Start with `wps plan sweeps/demo.yaml`; every command has --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of an error instead of the one-line `error: …` (also WPS_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:  # a layer not installed in this checkout
            if e.name != f"{__name__}.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..track.source import remember_command

    remember_command(argv)  # the runs' mlflow.source.name, inherited by the jobs this command submits
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        import os

        if (getattr(args, "debug", False) or os.environ.get("WPS_DEBUG")) and not isinstance(e, (SpecError, CLIError)):
            raise
        return _report(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _report(e: Exception) -> int:
    """The one-line `error: …` for a failure, and its exit code: 2 for bad input (a spec, a flag, a file
    or folder that is wrong or missing), 1 for a failure nobody named (a bug: `--debug` shows where)."""
    import errno
    import os

    def say(msg: str, code: int = EXIT_BAD_INPUT) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return code

    if isinstance(e, (SpecError, CLIError)):
        return say(str(e))
    if isinstance(e, UnicodeDecodeError):  # a binary or non-UTF-8 file read as text
        return say(f"an input file is not UTF-8 text ({e.reason} at byte {e.start}); run with --debug to see which")
    if isinstance(e, ValueError) and type(e).__module__.startswith("worldpm_scaling"):
        return say(str(e))  # PlanError and other named input errors from the layers
    if isinstance(e, BrokenPipeError):  # `wps plan … | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if isinstance(e, PermissionError):  # a read-only output folder (or input file): name it, not a traceback
        return say(
            f"permission denied: {e.filename or e}; choose a folder you can write (--out) or fix its permissions"
        )
    if isinstance(e, OSError):
        if e.errno == errno.EROFS:
            return say(f"cannot write {e.filename or 'the output'}: read-only file system")
        what = {
            FileNotFoundError: "no such file or folder",
            IsADirectoryError: "is a folder, not a file",
            NotADirectoryError: "a file stands where a folder is expected",
            FileExistsError: "already exists as something this command does not replace",
        }.get(type(e))
        if what and e.filename:  # a file where a folder is expected (or the reverse), or a path not there
            return say(f"{e.filename}: {what}")
        return say(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", 1)
    from ..track.mlflow_store import command_auth_error

    refused = command_auth_error(e)  # a tracking server's 401/403 met through MLflow's client (wps analyze)
    if refused is not None:
        return say(str(refused))
    import traceback

    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    at = f" at {os.path.basename(where.filename)}:{where.lineno} in {where.name}" if where else ""
    return say(
        f"unexpected {type(e).__name__}{at}: {e} (a bug: run again with --debug or WPS_DEBUG=1 for the "
        "traceback, and report it)",
        1,
    )


if __name__ == "__main__":
    sys.exit(main())
