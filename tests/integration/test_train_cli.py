"""`wps train SWEEP --cell N` end to end through the real CLI, the real data layer (synthetic forum, BPE
tokenizer, eval registry) and the offline spool tracker: every step and every milestone lands on disk,
a run killed with SIGKILL resumes from its checkpoint (not from step 0) and draws the uninterrupted
curve, two trainers on one cell are refused, and bad input is a named error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.conftest import subprocess_env
from worldpm_scaling import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def wps(*args: str, cwd: Path, timeout: float = 500, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(**env),
    )


def unprivileged() -> list[str]:
    """Root writes through 0555 folders; drop CAP_DAC_OVERRIDE so a read-only folder is one for it too."""
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    data = tmp / "synth"
    r = wps(
        "data",
        "synth",
        "--pairs",
        "400",
        "--seed",
        "2",
        "--eval-pairs-per-set",
        "12",
        "--vocab-size",
        "1024",
        "--out",
        str(data),
        cwd=tmp,
    )
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    spec.update(
        name="cli-check", models=["tiny-xs"], seeds=[0], out_dir=str(tmp / "out")
    )  # one cell: --cell 7 is out of range
    spec.pop("cluster")
    spec["data"].update(
        source=str(data / "train.parquet"),
        tokenizer=str(data / "tokenizer.json"),
        pairs=256,
        tokens_per_pair=None,
        stats_file=str(data / "stats.json"),
    )
    spec["milestones"] = {"start_log2": 6}  # 64, 128, 256 pairs
    spec["eval"] = {"dir": str(data / "evals"), "max_pairs_per_set": 8}
    spec["train"].update(checkpoint_every_steps=3, global_batch_pairs=32, micro_batch_pairs=16)
    spec["tracking"] = {"backend": "spool"}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def spooled(out: Path) -> dict[str, list[tuple[int, float]]]:
    files = list(out.rglob("cell-*.jsonl"))
    assert len(files) == 1, files
    series = defaultdict(list)
    for line in files[0].read_text().splitlines():
        p = json.loads(line)
        series[p["k"]].append((p["s"], p["v"]))
    return series


def spooled_tags(out: Path) -> dict[str, str]:
    (meta,) = list(out.rglob("cell-*.meta.json"))
    return json.loads(meta.read_text()).get("tags", {})


@pytest.fixture(scope="module")
def reference(sweep) -> dict[str, list[tuple[int, float]]]:
    """One uninterrupted run of cell 0: the curve every interrupted run must reproduce."""
    tmp = sweep.parent
    r = wps("train", str(sweep), "--cell", "0", cwd=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "FINISHED: 8 steps, 256 pairs" in r.stdout
    assert "resumed from" not in r.stdout  # a fresh cell starts at 0
    return spooled(tmp / "out")


def test_wps_train_writes_every_step_and_milestone(sweep, reference):
    tmp = sweep.parent
    m = reference
    for key in names.TRAIN_METRICS:
        assert [s for s, _ in m[key]] == list(range(1, 9)), key
    for name in ("rmbench_chat", "ppe_gpqa", "helpsteer2", "adversarial", "objective", "subjective"):
        assert [s for s, _ in m[names.eval_loss(name)]] == [2, 4, 8], name  # 64, 128, 256 pairs
        assert all(0.0 <= v <= 1.0 for _, v in m[names.eval_acc(name)])
    ckpts = sorted(p.name for p in (tmp / "out").rglob("step_*.pt"))
    assert ckpts == ["step_00000006.pt", "step_00000008.pt"]  # keep_checkpoints = 2

    again = wps("train", str(sweep), "--cell", "0", cwd=tmp)  # a finished cell: resumes at its end
    assert again.returncode == 0, again.stderr[-3000:]
    assert "FINISHED: 8 steps" in again.stdout
    assert "resumed from checkpoint step 8; this run trained no steps" in again.stdout, again.stdout[-2000:]
    assert spooled(tmp / "out")[names.TRAIN_LOSS] == m[names.TRAIN_LOSS]  # no step logged twice


def test_killed_run_resumes_from_its_checkpoint_with_the_uninterrupted_curve(sweep, reference, tmp_path):
    out = tmp_path / "out"
    # SIGKILL right after step 5 was handed to the tracker; the last checkpoint is step 3's
    r = wps("train", str(sweep), "--cell", "0", "--out", str(out), cwd=sweep.parent, WPS_FAULT="train.after_log:5")
    assert r.returncode == -signal.SIGKILL, r.stdout[-2000:] + r.stderr[-2000:]
    assert sorted(p.name for p in out.rglob("step_*.pt")) == ["step_00000003.pt"]

    again = wps("train", str(sweep), "--cell", "0", "--out", str(out), cwd=sweep.parent)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resumed from checkpoint step 3; this run trained steps 4–8" in again.stdout, again.stdout[-2000:]
    assert spooled_tags(out).get("resumed_from_step") == "3"
    got = spooled(out)
    for key in (
        names.TRAIN_LOSS,
        names.TRAIN_ACC,
        names.TRAIN_GRAD_NORM,
        names.TRAIN_LR,
        names.TRAIN_PAIRS_SEEN,
        names.eval_loss("helpsteer2"),
        names.eval_loss("adversarial"),
    ):
        steps = [s for s, _ in got[key]]
        assert steps == [s for s, _ in reference[key]], (key, steps)  # none lost, none twice
        diff = max(abs(a - b) for (_, a), (_, b) in zip(got[key], reference[key]))
        assert diff <= 1e-6, (key, diff)


def test_a_second_trainer_on_the_same_cell_is_refused(sweep, reference, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-m", "worldpm_scaling", "train", str(sweep), "--cell", "0", "--out", str(out)],
        cwd=sweep.parent,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = next(iter(out.rglob(".wps-train.lock")), None) if out.exists() else None
        end = time.monotonic() + 120
        while time.monotonic() < end and not (lock and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None, first.communicate()
            time.sleep(0.2)
            lock = next(iter(out.rglob(".wps-train.lock")), None) if out.exists() else None
        assert lock is not None, "the first trainer never took the cell lock"
        os.kill(first.pid, signal.SIGSTOP)  # hold it mid-run, lock taken
        try:
            second = wps("train", str(sweep), "--cell", "0", "--out", str(out), cwd=sweep.parent)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert second.stderr.startswith("error:") and "already being trained" in second.stderr
        assert str(first.pid) in second.stderr and ".wps-train.lock" in second.stderr
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert spooled(out)[names.TRAIN_LOSS] == reference[names.TRAIN_LOSS]  # one trainer's steps, once each


def test_a_read_only_output_folder_is_a_named_error(sweep, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("earlier results")
    ro.chmod(0o555)
    try:
        r = subprocess.run(
            [
                *unprivileged(),
                sys.executable,
                "-m",
                "worldpm_scaling",
                "train",
                str(sweep),
                "--cell",
                "0",
                "--out",
                str(ro / "out"),
            ],
            cwd=sweep.parent,
            capture_output=True,
            text=True,
            timeout=300,
            env=subprocess_env(),
        )
    finally:
        ro.chmod(0o755)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: permission denied") and str(ro) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert (ro / "keep.txt").read_text() == "earlier results" and sorted(p.name for p in ro.iterdir()) == ["keep.txt"]


def test_wps_train_names_bad_input(sweep):
    r = wps("train", str(sweep), "--cell", "7", cwd=sweep.parent)
    assert r.returncode == 2 and r.stderr.startswith("error:"), r.stderr
    r = wps("train", str(sweep.parent / "nope.yaml"), "--cell", "0", cwd=sweep.parent)
    assert r.returncode == 2 and "nope.yaml" in r.stderr


def test_wps_train_help_teaches():
    r = wps("train", "--help", cwd=REPO)
    assert r.returncode == 0 and "examples:" in r.stdout and "--cell" in r.stdout
