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
COMMAND_MODULES = ("plan", "launch", "train", "export", "score", "data", "track", "analysis")

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
    except (SpecError, CLIError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as e:  # PlanError and other named input errors from the layers
        if type(e).__module__.startswith("worldpm_scaling"):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    except PermissionError as e:  # a read-only output folder (or input file): name it, not a traceback
        print(f"error: permission denied: {e.filename or e}; choose a folder you can write (--out) or fix "
              "its permissions", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:
        import errno

        if e.errno != errno.EROFS:
            raise
        print(f"error: cannot write {e.filename or 'the output'}: read-only file system", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `wps plan … | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
