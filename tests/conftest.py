"""Test tiers: tests/unit (pure, fast), tests/integration (real servers), tests/e2e (the demo).

Each tier is also a marker (`-m unit`, `-m integration`, `-m e2e`), applied here from the folder so
no test can sit in a tier without its marker. Shared fixtures live in tests/fixtures/*.py and are
loaded as plugins.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

_FIXTURES = Path(__file__).parent / "fixtures"
pytest_plugins = [f"tests.fixtures.{p.stem}" for p in sorted(_FIXTURES.glob("*.py")) if p.stem != "__init__"]

REPO = Path(__file__).resolve().parent.parent
RESTORE_HOOK = Path(__file__).parent / "restore_hook"


def pytest_configure(config: pytest.Config) -> None:
    """WPS_TEST_DISABLE_RESTORE=1: `Trainer._restore` is a no-op here and in every Python subprocess
    (the hook folder goes first on PYTHONPATH), to show the resume tests fail on a restart from 0."""
    if os.environ.get("WPS_TEST_DISABLE_RESTORE") == "1":
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(RESTORE_HOOK), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        import importlib.util

        spec = importlib.util.spec_from_file_location("wps_restore_hook", RESTORE_HOOK / "sitecustomize.py")
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def subprocess_env(**extra: str) -> dict[str, str]:
    """A minimal environment for `wps` subprocesses that keeps the restore hook when it is on."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if os.environ.get("WPS_TEST_DISABLE_RESTORE") == "1":
        env["WPS_TEST_DISABLE_RESTORE"] = "1"
        env["PYTHONPATH"] = os.pathsep.join([str(RESTORE_HOOK), str(REPO)])
    env.update(extra)
    return env


def run_ranks(argv: list[str], *, world: int, cwd: Path, timeout: float = 600, **env: str) -> list[tuple[int, str]]:
    """Run `argv` as ranks 0…world-1 of one gloo job (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT on a
    free localhost port; a world of 1 gets none of them) in `subprocess_env(**env)`, and wait for all.
    Returns (returncode, stdout+stderr) per rank; a rank still running when waiting ends is killed."""
    from worldpm_scaling.track.server import free_port

    port, procs = str(free_port()), []
    for rank in range(world):
        dist = (
            {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
            }
            if world > 1
            else {}
        )
        procs.append(
            subprocess.Popen(
                argv,
                cwd=cwd,
                env=subprocess_env(**dist, **env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(p.returncode, log) for p, log in zip(procs, logs)]


# pytest-xdist (`make test` runs the integration and e2e tiers with `-n 2 --dist loadgroup`): a work unit
# is a file (module fixtures are built once) or a group of files — everything that submits to the one
# local SLURM cluster, and files sharing a trained session cell (the `path:` cell of
# tests/fixtures/qwen_tokenizer.py, the reference run of tests/fixtures/trainer_cell.py). The two-host
# cluster (tests/fixtures/slurm_multihost.py) is a cluster of its own: its files form a second group that
# runs beside the one-host cluster's on the other worker. The scheduler
# below reads the group from the node id, since xdist's own `xdist_group` marks do not reach node ids
# under pytest 9.
GROUPS = {
    "test_slurm_launch.py": "slurm",
    "test_slurm_preempt_ranks.py": "slurm",
    "test_demo.py": "slurm",
    "test_slurm_auth_sweep.py": "slurm",
    "test_slurm_multihost.py": "slurm-mh",
    "test_slurm_multihost_cell.py": "slurm-mh",
    "test_hf_checkpoint.py": "path-cell",
    "test_export.py": "path-cell",
    "test_faults_trainer.py": "trainer-ref",
    "test_track_outage.py": "trainer-ref",
}
LONGEST_FIRST = ("slurm", "slurm-mh", "trainer-ref", "path-cell")
"""Groups sorted to the front, so neither worker starts a long one late and runs on alone at the end."""


def work_unit(nodeid: str) -> str:
    """The work unit of a test: its GROUPS entry, else its file."""
    file = nodeid.split("::", 1)[0]
    return GROUPS.get(file.rsplit("/", 1)[-1], file)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        tier = path.relative_to(REPO / "tests").parts[0]
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, group in (("slurm_cluster", "slurm"), ("slurm_multihost", "slurm-mh")):
            if fixture in fixtures and work_unit(item.nodeid) != group:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {fixture}: add its file to GROUPS ({group!r}) in {__file__}"
                )
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(work_unit(it.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup`: xdist's scope scheduling with work_unit() as the scope."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return GroupScheduling(config, log)


@pytest.fixture
def repo() -> Path:
    """The repository root (sweeps/, slurm/ …)."""
    return REPO


@pytest.fixture(autouse=True)
def _no_leaked_launch_command():
    """`cli.main` records its command and sweep YAML in os.environ for the runs it creates (MLflow
    source tags, the parent's sweep artifact); an in-process CLI test must not hand them to the next test."""
    keys = ("WPS_COMMAND", "WPS_SWEEP_FILE", "WPS_COMMAND_PID")
    for k in keys:
        os.environ.pop(k, None)
    yield
    for k in keys:
        os.environ.pop(k, None)
