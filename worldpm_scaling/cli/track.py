"""`wps sync` (replay offline spools into MLflow) and `wps ui` (serve the MLflow UI on the store)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="replay spooled (offline) runs into an MLflow server, idempotently",
        description="Send every run spooled under DIR (jobs on nodes that could not reach the tracking "
        "server, or that lost it mid-run) to MLflow. Runs are created or reattached by "
        "their cell_id under the sweep's parent run; points the server already has are "
        "skipped, so running sync twice gives the same result as once. Finished runs get "
        "the status they ended with.",
        epilog="examples:\n"
        "  wps sync out/demo                              # every spool under the sweep's output\n"
        "  wps sync out/demo/cells/d24101f60e/spool --uri http://mlflow.internal:5000\n"
        "  MLFLOW_TRACKING_URI=sqlite:///mlflow.db wps sync out/demo --resume-cursor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="a spool folder, or any folder above spool folders")
    p.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.add_argument(
        "--resume-cursor",
        action="store_true",
        help="start each run where its job's last replay stopped instead of re-checking every "
        "spooled point against the server (faster; same result unless the server lost data)",
    )
    p.set_defaults(func=run_sync)

    u = sub.add_parser(
        "ui",
        help="start the MLflow UI on the project's store and print the sweep's runs-table URL",
        description="Start `mlflow server` on STORE (default: sqlite:///mlflow.db in this directory, "
        "artifacts in ./mlartifacts), wait until it answers, print the URL of the runs table "
        "(the sweep's parent run with its cell runs nested under it) and keep serving until "
        "Ctrl-C or SIGTERM (`kill`), either of which stops the server too.\n\n"
        "Multi-user clusters: use PostgreSQL as the store, e.g.\n"
        "  --store postgresql://USER:PASSWORD@dbhost:5432/mlflow\n"
        "(create the database once: `createdb mlflow`; psycopg2 is installed with this "
        "package) and point jobs at the server with tracking.uri: http://HOST:PORT or "
        "$MLFLOW_TRACKING_URI. SQLite locks under many concurrent writers.\n\n"
        "Shared clusters: --auth runs MLflow's basic-auth app: users and permissions in a "
        "database beside the store (STORE-auth.db), default permission NO_PERMISSIONS (a user "
        "sees and changes only the experiments they created or were granted), and at first "
        "start a random admin password written to STORE-admin.credentials (mode 0600, "
        "MLflow's credentials format; printed as a path, never as the password). Jobs and "
        "commands authenticate with MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or "
        "~/.mlflow/credentials (mode 0600) on the nodes, never with a password in the URI. "
        "Listening beyond localhost (--host) needs --auth, or --open to say the server is "
        "unauthenticated on purpose; either way MLflow gets an explicit --allowed-hosts list "
        "(this host's names and addresses, plus the ones you give). See "
        "docs/tracking_security.md.",
        epilog="examples:\n"
        "  wps ui --sweep demo\n"
        "  wps ui --store sqlite:///runs/mlflow.db --port 5001 --sweep worldpm\n"
        "  wps ui --auth --host 0.0.0.0 --port 5000 --allowed-hosts mlflow.cluster.internal --sweep worldpm\n"
        "  wps ui --auth --store postgresql://mlflow@db01:5432/mlflow --auth-db postgresql://mlflow@db01:5432/mlflow_auth \\\n"
        "         --host 0.0.0.0     # database passwords in ~/.pgpass, not in the URI\n"
        "  wps ui --host 10.213.7.1 --open   # a private test bridge, no authentication (says so)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    u.add_argument(
        "--store",
        default="sqlite:///mlflow.db",
        help="backend store URI: sqlite:///FILE (default sqlite:///mlflow.db) or postgresql://…",
    )
    u.add_argument("--artifacts", default="mlartifacts", help="artifact folder (default ./mlartifacts)")
    u.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    u.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); another address, or "
        "0.0.0.0 for all, lets jobs on other hosts log live and needs --auth or --open",
    )
    u.add_argument(
        "--auth",
        action="store_true",
        help="require users and passwords (MLflow basic-auth app, default permission NO_PERMISSIONS)",
    )
    u.add_argument(
        "--open",
        action="store_true",
        help="allow --host beyond localhost WITHOUT authentication (anyone who reaches it can "
        "read, change and delete every run); printed as a warning",
    )
    u.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated extra Host names clients use for this server (e.g. its DNS alias); "
        "this host's own names and addresses are always allowed",
    )
    u.add_argument(
        "--auth-db",
        help="user database URI for --auth (default: sqlite STORE-auth.db beside a "
        "SQLite store, ./mlflow-auth.db otherwise)",
    )
    u.add_argument("--sweep", help="sweep (= experiment) whose runs table URL to print")
    u.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    u.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the server to answer")
    u.add_argument("--no-block", action="store_true", help=argparse.SUPPRESS)  # tests: print and stop
    u.set_defaults(func=run_ui)


def run_sync(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from ..track.mlflow_store import TrackingError, check_uri, resolve_uri
    from ..track.spool import SpoolError, find_spools
    from ..track.sync import sync
    from . import CLIError

    try:
        uri = check_uri(resolve_uri(args.uri))
        folders = find_spools(args.dir)
    except (SpoolError, TrackingError) as e:
        raise CLIError(str(e)) from e
    if not folders:
        print(f"nothing to sync: no spooled runs under {args.dir}")
        return 0
    with Progress(transient=True) as bar:
        task = bar.add_task("replaying", total=None)
        try:
            report = sync(
                args.dir,
                uri,
                full=not args.resume_cursor,
                progress=lambda r: bar.update(task, advance=1, description=f"{r.key}: +{r.sent}"),
            )
        except (TrackingError, SpoolError) as e:
            raise CLIError(str(e)) from e
    for r in report.runs:
        print(
            f"{r.key:<32} run {r.run_id}  sent {r.sent:>8}  already there {r.skipped:>8}"
            f"{'  status ' + r.status if r.status else ''}"
        )
    print(
        f"synced {len(report.runs)} runs from {len(folders)} spool folders: {report.sent} points sent, "
        f"{report.skipped} already on the server"
    )
    return 0


def run_ui(args: argparse.Namespace) -> int:
    import signal
    import time

    from ..track.mlflow_store import Store
    from ..track.secrets import mask_uri
    from ..track.server import MlflowServer, ServerConfigError, ServerError
    from . import CLIError

    try:
        srv = MlflowServer(
            args.store,
            args.artifacts,
            host=args.host,
            port=args.port or None,
            workers=args.workers,
            auth=args.auth,
            open_network=args.open,
            auth_db=args.auth_db,
            allowed_hosts=[h.strip() for h in args.allowed_hosts.split(",") if h.strip()],
        )
    except ServerConfigError as e:
        raise CLIError(str(e)) from e
    if srv.exposure_warning:
        print(srv.exposure_warning, file=sys.stderr)

    def on_term(signum, frame):  # `kill`, or the session's terminal going away: stop the server with us
        raise SystemExit(128 + signum)  # the server runs in its own session, so nothing else would

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    print(f"starting mlflow server on {mask_uri(args.store)} (log: {srv.log_path}) …", file=sys.stderr)
    try:  # stop() also when Ctrl-C or SIGTERM comes while the server is still starting
        try:
            srv.start(wait_s=args.wait)
        except ServerError as e:
            raise CLIError(mask_uri(str(e))) from e
        url = srv.url
        if srv.auth:
            print(
                f"authentication on: default permission NO_PERMISSIONS; admin credentials "
                f"{'written to' if srv.admin_created else 'in'} {srv.admin_credentials} (mode 0600)"
                if srv.admin_created or srv.admin_credentials.exists()
                else "authentication on: admin password from $MLFLOW_AUTH_ADMIN_PASSWORD",
                file=sys.stderr,
            )
        if args.sweep and srv.auth:  # the experiment id needs a user; the table URL works once logged in
            print(url)
        elif args.sweep:
            store = Store(srv.probe_url)
            exp = store.experiment_id(args.sweep, create=False)
            if exp is None:
                print(f"warning: no experiment named {args.sweep!r} yet; showing all experiments", file=sys.stderr)
                print(url)
            else:
                print(f"{url}/#/experiments/{exp}/runs")
        else:
            print(url)
        sys.stdout.flush()
        if args.no_block:
            return 0
        while srv.proc is not None and srv.proc.poll() is None:
            time.sleep(1.0)
        raise CLIError(f"mlflow server exited with {srv.proc.returncode if srv.proc else '?'}: {srv.log_tail(1000)}")
    finally:
        srv.stop()
