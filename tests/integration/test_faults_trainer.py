"""kill -9 anywhere: the real Trainer, through `wps train`, against a real `mlflow server`.

One cell is killed with SIGKILL at eight places in a row (worldpm_scaling/faults.py: between an update
and its logging, after logging, before a checkpoint save, inside the save before and after the rename,
before the rotation, inside a tracker send before and after the server accepted the batch), each
attempt resuming the previous one; a last attempt finishes it. Afterwards the MLflow run holds every
step of every train and eval metric exactly once, with the values of an uninterrupted run (1e-6), and
each attempt continued from a checkpoint, never from step 0.
"""

from __future__ import annotations

import re
import signal

import pytest

from tests.fixtures.mlflow_server import unique_name
from tests.fixtures.trainer_cell import COMPARED, EVAL_KEYS, STEPS, histories, wps_train, write_sweep
from worldpm_scaling import faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# (point, nth hit in that attempt): each of the first six fires after the attempt saved a new checkpoint
# (saves every 2 steps); the tracker sends are timed by the flusher thread, so those two may not
CHAIN = [
    ("train.after_update", 3),
    ("train.after_log", 3),
    ("ckpt.before_save", 2),
    ("ckpt.before_rename", 2),
    ("ckpt.after_rename", 2),
    ("ckpt.before_rotate", 1),
    ("tracker.before_send", 2),
    ("tracker.after_send", 2),
]


def test_chain_points_are_real_fault_points():
    assert {p for p, _ in CHAIN} == set(faults.POINTS) and len(CHAIN) >= 6


def test_kill_9_at_eight_points_loses_and_duplicates_nothing(mlflow_server, reference_histories, synth_data, tmp_path):
    uri, want = mlflow_server.url, reference_histories
    name = unique_name("faults")

    sweep = write_sweep(tmp_path / "s.yaml", name, synth_data, uri, tmp_path / "out")
    resumed: list[int] = []
    for point, nth in CHAIN:
        r = wps_train(sweep, WPS_FAULT=f"{point}:{nth}")
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stdout[-1500:], r.stderr[-3000:])
        assert f"faults: SIGKILL at {point} (hit {nth})" in r.stderr
        m = re.search(r"resumed from \S+step_(\d+)\.pt \(step (\d+), ", r.stderr)  # the trainer's restore line
        if resumed or m:  # the first attempt starts fresh; every later one must resume
            assert m, (point, "attempt did not resume from a checkpoint", r.stderr[-2000:])
            assert int(m.group(1)) == int(m.group(2))
            first = re.search(r"resuming from checkpoint step (\d+) \(first step trained now: (\d+)\)", r.stdout)
            assert first is None or int(first.group(2)) == int(m.group(2)) + 1, first.group(0)  # may die before
            resumed.append(int(m.group(2)))
        else:
            resumed.append(0)
    r = wps_train(sweep)
    assert r.returncode == 0 and f"FINISHED: {STEPS} steps" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    final = re.search(r"resumed from checkpoint step (\d+); this run trained steps (\d+)–(\d+)", r.stdout)
    assert final, r.stdout[-2000:]
    resumed.append(int(final.group(1)))
    assert int(final.group(2)) == resumed[-1] + 1 and int(final.group(3)) == STEPS
    # every attempt continued from a checkpoint (a restart from 0 would give [0, 0, …]); the first six moved on
    assert resumed[:7] == [0, 2, 4, 6, 8, 10, 12], resumed
    assert all(b >= a for a, b in zip(resumed, resumed[1:])), resumed

    info, got = histories(uri, name, COMPARED + EVAL_KEYS)
    assert info.status == "FINISHED" and info.tags.get("resumed_from_step") == str(resumed[-1])
    for key in COMPARED:
        steps = [s for s, _ in got[key]]
        assert steps == list(range(1, STEPS + 1)), (
            key,
            "lost",
            sorted(set(range(1, STEPS + 1)) - set(steps)),
            "twice",
            sorted({s for s in steps if steps.count(s) > 1}),
        )
    for key in COMPARED + EVAL_KEYS:
        assert [s for s, _ in got[key]] == [s for s, _ in want[key]], key
        diff = max(abs(a - b) for (_, a), (_, b) in zip(got[key], want[key]))
        assert diff <= 1e-6, (key, diff)
    print(
        f"kill -9 chain {[p for p, _ in CHAIN]}: resumed from steps {resumed}; "
        f"{len(COMPARED + EVAL_KEYS)} metrics exact"
    )
