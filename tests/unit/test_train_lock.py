"""The cell lock (launch/cell.py): one trainer per cell, but every rank of one multi-process job may run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from worldpm_scaling.launch.cell import CellBusyError, _lock


def test_ranks_of_one_job_share_a_cell_but_a_second_job_is_refused(tmp_path):
    spec = SimpleNamespace(out_dir=str(tmp_path / "cell"), cell_id="abc123")
    rank0 = _lock(spec, 0)
    rank1 = _lock(spec, 1)  # rank 1 of the same job: must not be refused (it was: exit 2, rank 0 hung)
    with pytest.raises(CellBusyError, match="already being trained"):
        _lock(spec, 1)  # a second job's rank 1
    with pytest.raises(CellBusyError, match="already being trained"):
        _lock(spec, 0)  # a second job's rank 0
    rank0.close()
    rank1.close()
    _lock(spec, 0).close()  # released with its holder
