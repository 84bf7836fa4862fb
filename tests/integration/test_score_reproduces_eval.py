"""`wps score` on a cell's eval files reproduces the eval loss and accuracy the trainer logged at the
same step (1e-5): the exported folder, its chat template and reward token score what training scored."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from tests.fixtures.qwen_tokenizer import trained_path_cell
from worldpm_scaling import names
from worldpm_scaling.cli import main

pytestmark = [pytest.mark.integration]

SETS = ("rmbench_chat", "offsetbias")


def test_wps_score_reproduces_the_logged_eval_loss_and_accuracy(tmp_path_factory, tmp_path, capsys):
    cell = trained_path_cell(tmp_path_factory)
    assert cell["resumed_rc"] == 0, cell["killed_log"]
    tmp, sweep = cell["tmp"], cell["sweep"]
    out = tmp_path / "rm"
    assert main(["export", str(sweep), "--cell", "0", "--out", str(out), "--dtype", "fp32"]) == 0
    (f,) = list((tmp / "runs").rglob("cell-*.jsonl"))
    logged = defaultdict(list)
    for line in f.read_text().splitlines():
        p = json.loads(line)
        logged[p["k"]].append((p["s"], p["v"]))
    for s in SETS:  # the sweep scores the first 8 pairs of each set; the synthetic sets hold exactly 8
        src = tmp / "synth" / "evals" / f"{s}.jsonl"
        assert len(src.read_text().splitlines()) == 8
        capsys.readouterr()
        assert main(["score", str(out), str(src), "--batch", "3", "--no-progress"]) == 0
        printed = capsys.readouterr().out
        m = re.search(r"bt_loss (\S+)\s+accuracy (\S+)", printed)
        step, loss = logged[names.eval_loss(s)][-1]
        _, acc = logged[names.eval_acc(s)][-1]
        assert step == 8
        assert float(m.group(1)) == pytest.approx(loss, abs=1e-5), s
        assert float(m.group(2)) == pytest.approx(acc, abs=1e-5), s
