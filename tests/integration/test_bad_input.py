"""Bad input that needs a real process: read-only output folders (as root too: the child runs without
CAP_DAC_OVERRIDE) for `wps data stackexchange` and `wps data synth` are a named error, exit 2, no
traceback, and what the folder held before is untouched. (`wps train` is in test_train_cli.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.integration.test_train_cli import unprivileged

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
POSTS = REPO / "tests" / "fixtures" / "stackexchange" / "Posts.xml"


def wps_unprivileged(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*unprivileged(), sys.executable, "-m", "worldpm_scaling", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=subprocess_env())


@pytest.mark.parametrize("where", ["folder", "parent"])
@pytest.mark.parametrize("command", [["data", "stackexchange", POSTS], ["data", "synth", "--pairs", "50"]])
def test_a_read_only_output_folder_is_a_named_error(tmp_path, where, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("earlier results")
    out = ro if where == "folder" else ro / "new"
    ro.chmod(0o555)
    try:
        r = wps_unprivileged(*command, "--out", out)
    finally:
        ro.chmod(0o755)
    assert r.returncode == 2, r.stdout[-1000:] + r.stderr[-2000:]
    assert r.stderr.lstrip().startswith("error: permission denied") and str(ro) in r.stderr, r.stderr  # after a bar
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in ro.iterdir()) == ["keep.txt"] and (ro / "keep.txt").read_text() == "earlier results"
