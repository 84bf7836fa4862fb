"""The cell lock of `wps train`: one trainer per cell, but every rank of one multi-process job may run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from worldpm_scaling.cli import CLIError
from worldpm_scaling.cli.train import _lock_cell


def test_ranks_of_one_job_share_a_cell_but_a_second_job_is_refused(tmp_path, monkeypatch):
    spec = SimpleNamespace(out_dir=str(tmp_path / "cell"), cell_id="abc123")
    monkeypatch.setenv("RANK", "0")
    rank0 = _lock_cell(spec)
    monkeypatch.setenv("RANK", "1")
    rank1 = _lock_cell(spec)  # rank 1 of the same job: must not be refused (it was: exit 2, rank 0 hung)
    with pytest.raises(CLIError, match="already being trained"):
        _lock_cell(spec)  # a second job's rank 1
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(CLIError, match="already being trained"):
        _lock_cell(spec)  # a second job's rank 0
    rank0.close()
    rank1.close()
    _lock_cell(spec).close()  # released with its holder
