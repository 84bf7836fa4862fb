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
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.fixtures.mlflow_server import unique_name
from worldpm_scaling import faults, names
from worldpm_scaling.track import query
from worldpm_scaling.track.server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STEPS = 20          # 640 pairs / 32 per step
CKPT_EVERY = 2
# (point, nth hit in that attempt): each of the first six fires after the attempt saved a new checkpoint
# (saves every 2 steps); the tracker sends are timed by the flusher thread, so those two may not
CHAIN = [("train.after_update", 3), ("train.after_log", 3), ("ckpt.before_save", 2), ("ckpt.before_rename", 2),
         ("ckpt.after_rename", 2), ("ckpt.before_rotate", 1), ("tracker.before_send", 2), ("tracker.after_send", 2)]
COMPARED = (names.TRAIN_LOSS, names.TRAIN_ACC, names.TRAIN_GRAD_NORM, names.TRAIN_LR, names.TRAIN_PAIRS_SEEN,
            names.TRAIN_TOKENS_SEEN)
EVAL_KEYS = (names.eval_loss("helpsteer2"), names.eval_acc("offsetbias"), names.eval_loss("subjective"))


def start_server(folder: Path) -> MlflowServer:
    """A private SQLite-backed `mlflow server` (a loaded 2-core box can take minutes to answer /health)."""
    folder.mkdir(parents=True, exist_ok=True)
    srv = MlflowServer(f"sqlite:///{folder / 'mlflow.db'}", folder / "artifacts", workers=1,
                       log_path=folder / "server.log")
    return srv.start(wait_s=600)


@pytest.fixture(scope="module")
def trainer_mlflow(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("mlflow-faults"))
    yield srv
    srv.stop()


def write_sweep(path: Path, name: str, synth: Path, uri: str, out: Path) -> Path:
    """The cell every fault test trains. System metrics are off: they are sampled by the wall clock, so
    the tracker's nth send would land at a different place (even before the restore) from run to run."""
    path.write_text(f"""name: {name}
models: [tiny-xs]
mode: milestones
data: {{source: {synth}/train.parquet, tokenizer: {synth}/tokenizer.json, pairs: 640, tokens_per_pair: 125}}
milestones: {{start_log2: 7}}
train: {{lr: 1.0e-3, schedule: constant, ctx_len: 512, global_batch_pairs: 32, micro_batch_pairs: 16, precision: fp32,
        zero_stage: 0, checkpoint_every_steps: {CKPT_EVERY}, keep_checkpoints: 2}}
eval: {{dir: {synth}/evals, sets: [helpsteer2, offsetbias], max_pairs_per_set: 8}}
tracking: {{backend: mlflow, uri: "{uri}", flush_every_s: 0.5, system_metrics: false}}
out_dir: {out}
""")
    return path


def wps_train(sweep: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worldpm_scaling", "train", str(sweep), "--cell", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=subprocess_env(**env))


def histories(uri: str, sweep: str, keys) -> tuple[query.RunInfo, dict[str, list[tuple[int, float]]]]:
    (info,) = query.find_cell_runs(uri, sweep).values()
    got = query.histories(uri, [(info.run_id, k) for k in keys])
    return info, {k: [(s, v) for s, v, _t in got[(info.run_id, k)]] for k in keys}


def test_chain_points_are_real_fault_points():
    assert {p for p, _ in CHAIN} == set(faults.POINTS) and len(CHAIN) >= 6


def test_kill_9_at_eight_points_loses_and_duplicates_nothing(trainer_mlflow, synth_data, tmp_path):
    uri = trainer_mlflow.url
    ref_name, name = unique_name("faults-ref"), unique_name("faults")
    ref = write_sweep(tmp_path / "ref.yaml", ref_name, synth_data, uri, tmp_path / "ref")
    r = wps_train(ref)
    assert r.returncode == 0 and f"FINISHED: {STEPS} steps" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    _, want = histories(uri, ref_name, COMPARED + EVAL_KEYS)

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
        assert steps == list(range(1, STEPS + 1)), (key, "lost", sorted(set(range(1, STEPS + 1)) - set(steps)),
                                                    "twice", sorted({s for s in steps if steps.count(s) > 1}))
    for key in COMPARED + EVAL_KEYS:
        assert [s for s, _ in got[key]] == [s for s, _ in want[key]], key
        diff = max(abs(a - b) for (_, a), (_, b) in zip(got[key], want[key]))
        assert diff <= 1e-6, (key, diff)
    print(f"kill -9 chain {[p for p, _ in CHAIN]}: resumed from steps {resumed}; "
          f"{len(COMPARED + EVAL_KEYS)} metrics exact")
