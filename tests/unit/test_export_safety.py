"""`wps export --out X --force` only ever replaces a previous export (a folder holding wps_export.json):
it refuses the working directory and the folders above it, the cell's own folder, the training data's
folder and anything inside them, and any other non-empty folder, with a named error, exit 2 and every
file left in place (issue 31: `--out . --force` used to delete the working directory, exit 0)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fixtures.exported import cell_with_checkpoint
from worldpm_scaling.cli import main

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-safety") / "w"
    sweep, run = cell_with_checkpoint(root)
    return root, sweep, run


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "out,named",
    [
        (".", "the current directory"),
        ("..", "the current directory"),
        ("out/demo/cells/{cell}", "the cell's folder"),
        ("out/demo/cells/{cell}/checkpoints", "the cell's folder"),
        ("out/demo", "the cell's folder"),  # above the cell's folder
        ("data/demo", "the training data's folder"),
        ("data/demo/evals", "the training data's folder"),
        ("data", "the training data's folder"),
    ],
)
def test_force_never_replaces_what_is_not_an_export(work, capsys, monkeypatch, out, named):
    root, sweep, run = work
    monkeypatch.chdir(root)
    before = snapshot(root.parent)
    rc = main(["export", str(sweep), "--cell", "0", "--out", out.format(cell=run.cell_id), "--force"])
    err = capsys.readouterr().err
    assert rc == 2 and named in err, err
    assert snapshot(root.parent) == before


def test_force_refuses_a_non_empty_folder_without_the_marker(work, capsys, monkeypatch):
    root, sweep, _ = work
    monkeypatch.chdir(root)
    mine = root / "notes"
    mine.mkdir(exist_ok=True)
    (mine / "thesis.tex").write_text("years of work")
    rc = main(["export", str(sweep), "--cell", "0", "--out", "notes", "--force"])
    err = capsys.readouterr().err
    assert rc == 2 and "not a previous `wps export` (no wps_export.json)" in err, err
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_force_replaces_a_previous_export(work, capsys, monkeypatch):
    root, sweep, run = work
    monkeypatch.chdir(root)
    assert main(["export", str(sweep), "--cell", "0", "--out", "exported/rm", "--dtype", "fp32"]) == 0
    (root / "exported/rm/stale.txt").write_text("from an older export")
    assert main(["export", str(sweep), "--cell", "0", "--out", "exported/rm", "--force"]) == 0
    meta = json.loads((root / "exported/rm/wps_export.json").read_text())
    assert meta["cell_id"] == run.cell_id and meta["dtype"] == "bf16"
    assert not (root / "exported/rm/stale.txt").exists()
    assert [p.name for p in (root / "exported").iterdir()] == ["rm"]  # no work or set-aside folder left
    assert (root / "exported/rm").stat().st_mode & 0o055 == 0o055 & ~_umask()  # readable like any folder
    # the checkpoint and data are where they were
    assert (root / run.out_dir / "checkpoints").is_dir() and (root / "data/demo/train.parquet").is_file()
    assert os.getcwd() == str(root)
