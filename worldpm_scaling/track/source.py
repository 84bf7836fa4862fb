"""Where a run came from, as MLflow's standard source tags (the UI's Source column and run page).

`mlflow.source.name` is the command that started the sweep (`wps launch sweeps/demo.yaml …`), not the
job's own entry point: `wps` records its command line in $WPS_COMMAND (and the sweep YAML it was given
in $WPS_SWEEP_FILE) before it submits anything, and jobs inherit the environment of the launching
process (submitit's local executor copies it; sbatch exports it by default). Then the git state of the
checkout the code runs from: `mlflow.source.git.commit`, `.branch`, `.repoURL` (credentials masked)
and `wps.git.dirty` (MLflow has no standard tag for uncommitted changes).
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from .secrets import mask_uri

COMMAND_ENV = "WPS_COMMAND"
SWEEP_FILE_ENV = "WPS_SWEEP_FILE"
_OWNER_ENV = "WPS_COMMAND_PID"
DIRTY_TAG = "wps.git.dirty"
SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO = "mlflow.source.git.repoURL"


LAST_ARGS: list[str] = []
"""The arguments of the last `wps` command this process ran (an error may name the URI they gave)."""


def remember_command(argv: Sequence[str] | None = None, environ=None) -> None:
    """Record `wps <argv>` and the sweep YAML it names (the first argument that is an existing
    .yaml/.yml file) for the runs this process and the jobs it submits will create. An outer `wps`
    process (the launcher that started this one) wins: its values are kept; a second command in the
    same process (tests calling `cli.main` twice) replaces the first."""
    global LAST_ARGS
    env = os.environ if environ is None else environ
    args = list(sys.argv[1:] if argv is None else argv)
    LAST_ARGS = args
    if env.get(COMMAND_ENV) and env.get(_OWNER_ENV) != str(os.getpid()):
        return  # set by the `wps` process that started this one
    env[COMMAND_ENV] = shlex.join(["wps", *args])
    env[_OWNER_ENV] = str(os.getpid())  # a later command in this same process replaces it
    env.pop(SWEEP_FILE_ENV, None)
    for a in args:
        if a.endswith((".yaml", ".yml")) and os.path.isfile(a):
            env[SWEEP_FILE_ENV] = os.path.abspath(a)
            break


def _git(args: list[str], cwd: str | None) -> str | None:
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd or os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_state(cwd: str | None = None) -> dict[str, str]:
    """commit, branch, repo URL (credentials masked) and dirty flag of the checkout at `cwd` (or of
    the package's own checkout when `cwd` is not one); {} outside git."""
    here = cwd or os.getcwd()
    commit = _git(["rev-parse", "HEAD"], here)
    if commit is None and cwd is None:  # a job started elsewhere: the checkout the code comes from
        here = str(Path(__file__).resolve().parents[2])
        commit = _git(["rev-parse", "HEAD"], here)
    if not commit:
        return {}
    out = {GIT_COMMIT: commit}
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], here)
    if branch and branch != "HEAD":
        out[GIT_BRANCH] = branch
    url = _git(["config", "--get", "remote.origin.url"], here)
    if url:
        out[GIT_REPO] = mask_uri(url)
    status = _git(["status", "--porcelain", "--untracked-files=no"], here)
    if status is not None:
        out[DIRTY_TAG] = "true" if status else "false"
    return out


def source_tags(environ: Mapping[str, str] | None = None, cwd: str | None = None) -> dict[str, str]:
    """MLflow's source tags for a run started now: the command, its kind (JOB under a scheduler or
    submitit, else LOCAL), the user and the git state."""
    env = os.environ if environ is None else environ
    command = env.get(COMMAND_ENV) or shlex.join([Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]])
    in_job = any(k in env for k in ("SLURM_JOB_ID", "SUBMITIT_EXECUTOR"))
    tags = {SOURCE_NAME: command, SOURCE_TYPE: "JOB" if in_job else "LOCAL", **git_state(cwd)}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        pass
    return tags


def sweep_file(environ: Mapping[str, str] | None = None) -> str | None:
    """The sweep YAML the launching `wps` command was given, if it still exists."""
    env = os.environ if environ is None else environ
    path = env.get(SWEEP_FILE_ENV)
    return path if path and os.path.isfile(path) else None
