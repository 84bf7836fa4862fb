"""`wps score`: an exported folder scores a pairs file and a conversations file (multi-turn included) with
the project's own rewards, and bad input is a named error (exit 2) that writes nothing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.fixtures.exported import cell_with_checkpoint
from worldpm_scaling.cli import main
from worldpm_scaling.train.export import project_rewards

pytestmark = pytest.mark.unit

CONVS = [
    [{"role": "user", "content": "Tips for better sleep?"}, {"role": "assistant", "content": "A fixed bedtime."}],
    [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "11, and **13** too."},
    ],
    [{"role": "user", "content": "Write a list"}, {"role": "assistant", "content": "- one\n- two"}],
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    sweep, run = cell_with_checkpoint(root, model="tiny-serve")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["export", str(sweep), "--cell", "0", "--out", "rm", "--dtype", "fp32"]) == 0
    finally:
        os.chdir(cwd)
    return root, run


def test_conversations_score_as_the_project_rewards_them(exported, tmp_path, capsys, monkeypatch):
    root, run = exported
    f = tmp_path / "convs.jsonl"
    f.write_text("\n".join(json.dumps(c if i != 2 else {"messages": c, "id": "x"}) for i, c in enumerate(CONVS)))
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(root / "rm"), str(f), "--out", str(out), "--batch", "2"]) == 0
    assert "scored 3 conversations" in capsys.readouterr().out
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[2]["id"] == "x"
    monkeypatch.chdir(root)
    ours = project_rewards(run, CONVS)
    assert np.abs(np.array([r["reward"] for r in rows]) - np.array(ours)).max() < 1e-5
    assert np.std(ours) > 1e-4


def test_a_pairs_file_gives_both_rewards_and_the_bt_metrics(exported, tmp_path, capsys):
    root, _ = exported
    src = root / "data/demo/evals/rmbench_chat.jsonl"
    out = tmp_path / "pairs.parquet"
    assert main(["score", str(root / "rm"), str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    import pandas as pd

    df = pd.read_parquet(out)
    c, j = df["chosen_reward"].to_numpy(), df["rejected_reward"].to_numpy()
    loss = float(np.mean(np.logaddexp(0.0, -(c - j))))
    assert f"bt_loss {loss:.6f}" in printed and f"accuracy {np.mean(c > j):.6f}" in printed
    assert "pairs/s" in printed and "phi_length" in printed


def test_a_malformed_row_is_named_by_line_and_nothing_is_written(exported, tmp_path, capsys):
    root, _ = exported
    f = tmp_path / "bad.jsonl"
    f.write_text(
        json.dumps(CONVS[0])
        + "\n"
        + json.dumps(CONVS[1])
        + "\n"
        + json.dumps([{"role": "user", "content": "no reply"}])
        + "\n"
    )
    out = tmp_path / "never.jsonl"
    assert main(["score", str(root / "rm"), str(f), "--out", str(out), "--batch", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{f}:3" in err and "last turn must be the assistant reply" in err, err
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    p = tmp_path / "badpairs.jsonl"
    p.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": 3, "rejected": "b"}\n')
    assert main(["score", str(root / "rm"), str(p)]) == 2
    assert f"{p}:2: field 'chosen' must be a string" in capsys.readouterr().err


def test_bad_folders_and_outputs_are_named(exported, tmp_path, capsys):
    root, _ = exported
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps(CONVS[0]) + "\n")
    assert main(["score", str(root / "data/demo"), str(f)]) == 2
    assert "not a WorldPM-format reward model folder" in capsys.readouterr().err
    (tmp_path / "taken.jsonl").write_text("mine\n")
    assert main(["score", str(root / "rm"), str(f), "--out", str(tmp_path / "taken.jsonl")]) == 2
    assert "exists (pass --force" in capsys.readouterr().err
    assert (tmp_path / "taken.jsonl").read_text() == "mine\n"
