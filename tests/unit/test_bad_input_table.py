"""The CLI under bad input, as a table (issue 31): every case is a command run in process on a scratch
copy of a tiny sweep, with the exit code it must give, a fragment its message must hold (the field,
file or flag at fault), and the files that must come through byte-identical. No case may end in a
traceback, exit 0, lose a file, or take more than 120 s (a hang fails the case by pytest-timeout; the
limit leaves room for a first import of torch's compiler stack on a loaded box: a 30 s limit fired inside
that import once and left torch._dynamo half-imported for the worker's later tests).

Cases that need a real MLflow store or real processes (sync, read-only folders) are in
tests/integration/test_bad_input.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import yaml

from worldpm_scaling.cli import main

pytestmark = pytest.mark.unit

SWEEP = {
    "name": "t",
    "models": ["tiny-xxxs"],
    "init": "random",
    "data": {"source": "data/train.parquet", "tokenizer": "data/tokenizer.json", "pairs": 256, "tokens_per_pair": 125},
    "milestones": {"start_log2": 6},
    "train": {
        "global_batch_pairs": 32,
        "micro_batch_pairs": 16,
        "warmup_frac": 0.05,
        "ctx_len": 256,
        "precision": "fp32",
        "zero_stage": 0,
    },
    "eval": {"dir": "data/evals", "max_pairs_per_set": 8},
    "tracking": {"backend": "none"},
    "cluster": {"executor": "local"},
    "seeds": [0],
    "out_dir": "out/t",
}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    """A tiny synthetic forum (400 train pairs, 12 eval sets, tokenizer), made once per module."""
    root = tmp_path_factory.mktemp("bad_input_data")
    assert main(["data", "synth", "--out", str(root / "data"), "--pairs", "400"]) == 0
    return root / "data"


@pytest.fixture
def ws(tmp_path, demo_data, monkeypatch) -> Path:
    """A scratch workspace: data/ (a copy), s.yaml (the tiny sweep), slurm/p.yaml (a local profile); cwd."""
    import os

    # links, not copies (a case that changes a data file replaces its link, never the shared file)
    shutil.copytree(demo_data, tmp_path / "data", copy_function=os.symlink)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "p.yaml").write_text("name: p\nexecutor: local\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WPS_MODELS_DIR", raising=False)
    return tmp_path


# -- setup helpers: each returns a function of the workspace ---------------------------------------


def _set(d: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    for k in head:
        d = d.setdefault(k, {})
    if value is _DEL:
        d.pop(last, None)
    else:
        d[last] = value


_DEL = object()


def sweep(**over) -> Callable[[Path], None]:
    """The sweep with fields replaced (`train__warmup_frac=1.5`; `_DEL` removes a field)."""

    def f(ws: Path) -> None:
        d = json.loads(json.dumps(SWEEP))
        for k, v in over.items():
            _set(d, k.replace("__", "."), v)
        (ws / "s.yaml").write_text(yaml.safe_dump(d, sort_keys=False))

    return f


def raw(text: str | bytes, name: str = "s.yaml") -> Callable[[Path], None]:
    def f(ws: Path) -> None:
        p = ws / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir():
            shutil.rmtree(p)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())

    return f


def write(name: str, content: str | bytes | None) -> Callable[[Path], None]:
    """Write a file (None: make it a folder; a folder that stood there is replaced)."""

    def f(ws: Path) -> None:
        p = ws / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content if isinstance(content, bytes) else content.encode())

    return f


def remove(name: str) -> Callable[[Path], None]:
    def f(ws: Path) -> None:
        p = ws / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return f


def cell_dir(ws: Path) -> Path:
    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.plan import plan

    return ws / plan(load_sweep(ws / "s.yaml")).runs[0].out_dir


def cell_id(ws: Path) -> str:
    return cell_dir(ws).name


def launched(
    *, marker: str | bytes | None = None, lines: list[str | bytes] | None = None, marker_is_dir: bool = False
) -> Callable[[Path], None]:
    """A sweep that was launched: launches.jsonl with a record for cell 0 (pid 999999999: gone), then
    `lines` appended raw, and the cell's status.json as given."""

    def f(ws: Path) -> None:
        out = ws / "out" / "t"
        out.mkdir(parents=True, exist_ok=True)
        cid = cell_id(ws)
        rec = {"cell_id": cid, "index": 0, "job_id": "999999999", "executor": "local", "folder": "x", "time": 1.0}
        text = (json.dumps(rec) + "\n").encode() + b"".join(
            (ln if isinstance(ln, bytes) else ln.encode()).replace(b"CID", cid.encode()) for ln in (lines or [])
        )
        (out / "launches.jsonl").write_bytes(text)
        cd = cell_dir(ws)
        cd.mkdir(parents=True, exist_ok=True)
        if marker_is_dir:
            (cd / "status.json").mkdir()
        elif marker is not None:
            (cd / "status.json").write_bytes(marker if isinstance(marker, bytes) else marker.encode())

    return f


def both(*fs: Callable[[Path], None]) -> Callable[[Path], None]:
    def f(ws: Path) -> None:
        for g in fs:
            g(ws)

    return f


FINISHED = json.dumps({"status": "FINISHED", "pairs_seen": 256, "steps": 8})
BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    + "name: t\n"
)

# (id, argv, setup, exit code, message fragment, files that must survive)
Case = tuple[str, list[str], Callable[[Path], None] | None, int, str, tuple[str, ...]]

PLAN_CASES: list[Case] = [
    # -- the sweep file itself
    ("no-such-file", ["plan", "nope.yaml"], None, 2, "nope.yaml", ()),
    ("sweep-is-a-folder", ["plan", "data"], None, 2, "data", ()),
    ("empty-file", ["plan", "s.yaml"], raw(""), 2, "s.yaml", ()),
    ("binary-file", ["plan", "s.yaml"], raw(b"\x00\x01\x02\xff\xfe" * 20), 2, "s.yaml", ()),
    ("latin-1-file", ["plan", "s.yaml"], raw("name: caf\xe9\n".encode("latin-1")), 2, "UTF-8", ()),
    ("utf16-file", ["plan", "s.yaml"], raw("name: t\n".encode("utf-16")), 2, "s.yaml", ()),
    ("syntax-error", ["plan", "s.yaml"], raw("name: [t\nmodels: x\n"), 2, "YAML syntax error", ()),
    ("tab-indent", ["plan", "s.yaml"], raw("name: t\ndata:\n\tpairs: 5\n"), 2, "s.yaml", ()),
    ("top-level-list", ["plan", "s.yaml"], raw("- name: t\n"), 2, "mapping", ()),
    ("top-level-scalar", ["plan", "s.yaml"], raw("hello\n"), 2, "mapping", ()),
    ("alias-bomb", ["plan", "s.yaml"], raw(BOMB), 2, "alias", ()),
    ("alias-recursive", ["plan", "s.yaml"], raw("name: t\nmodels: &m [tiny-xs, *m]\n"), 2, "alias", ()),
    ("unknown-key", ["plan", "s.yaml"], sweep(modles=["tiny-xs"]), 2, "did you mean 'models'", ()),
    ("unknown-train-key", ["plan", "s.yaml"], sweep(train__lrate=1e-3), 2, "train.lrate", ()),
    ("key-twice", ["plan", "s.yaml"], raw("name: a\nname: b\n"), 2, "key given twice", ()),
    ("non-string-key", ["plan", "s.yaml"], raw("name: t\n1: 2\n"), 2, "unknown key", ()),
    ("name-missing", ["plan", "s.yaml"], sweep(name=_DEL), 2, "name", ()),
    ("name-empty", ["plan", "s.yaml"], sweep(name=""), 2, "name", ()),
    ("name-slash", ["plan", "s.yaml"], sweep(name="a/../b"), 2, "name", ()),
    ("name-number", ["plan", "s.yaml"], sweep(name=5), 2, "name", ()),
    ("description-list", ["plan", "s.yaml"], sweep(description=[1]), 2, "description", ()),
    # -- models
    ("models-empty", ["plan", "s.yaml"], sweep(models=[]), 2, "models", ()),
    ("models-unknown", ["plan", "s.yaml"], sweep(models=["tiny-zz"]), 2, "tiny-zz", ()),
    ("models-mapping", ["plan", "s.yaml"], sweep(models={"a": 1}), 2, "models", ()),
    ("models-duplicate", ["plan", "s.yaml"], sweep(models=["tiny-xxxs", "tiny-xxxs"]), 2, "duplicate", ()),
    ("models-number", ["plan", "s.yaml"], sweep(models=[5]), 2, "models[0]", ()),
    ("model-path-missing", ["plan", "s.yaml"], sweep(models=[{"path": "nope"}]), 2, "models[0].path", ()),
    ("model-path-is-file", ["plan", "s.yaml"], sweep(models=[{"path": "s.yaml"}]), 2, "models[0].path", ()),
    ("model-init-bogus", ["plan", "s.yaml"], sweep(models=[{"name": "tiny-xs", "init": "warm"}]), 2, "init", ()),
    ("init-bogus", ["plan", "s.yaml"], sweep(init="warm"), 2, "init", ()),
    ("mode-bogus", ["plan", "s.yaml"], sweep(mode="both"), 2, "mode", ()),
    # -- data
    ("data-list", ["plan", "s.yaml"], sweep(data=[1, 2]), 2, "data", ()),
    ("source-placeholder", ["plan", "s.yaml"], sweep(data__source="synthetic"), 2, "data.source", ()),
    ("pairs-zero", ["plan", "s.yaml"], sweep(data__pairs=0), 2, "data.pairs", ()),
    ("pairs-negative", ["plan", "s.yaml"], sweep(data__pairs=-5), 2, "data.pairs", ()),
    ("pairs-fraction", ["plan", "s.yaml"], sweep(data__pairs=2.5), 2, "data.pairs", ()),
    ("pairs-string", ["plan", "s.yaml"], sweep(data__pairs="many"), 2, "data.pairs", ()),
    (
        "pairs-inf",
        ["plan", "s.yaml"],
        raw(yaml.safe_dump(SWEEP).replace("pairs: 256", "pairs: .inf")),
        2,
        "data.pairs",
        (),
    ),
    ("tokens-per-pair-zero", ["plan", "s.yaml"], sweep(data__tokens_per_pair=0), 2, "data.tokens_per_pair", ()),
    (
        "tokens-per-pair-nan",
        ["plan", "s.yaml"],
        raw(yaml.safe_dump(SWEEP).replace("tokens_per_pair: 125", "tokens_per_pair: .nan")),
        2,
        "tokens_per_pair",
        (),
    ),
    (
        "stats-file-missing",
        ["plan", "s.yaml"],
        sweep(data__tokens_per_pair=_DEL, data__stats_file="nope.json"),
        2,
        "data.stats_file",
        (),
    ),
    (
        "stats-file-folder",
        ["plan", "s.yaml"],
        sweep(data__tokens_per_pair=_DEL, data__stats_file="data"),
        2,
        "data.stats_file",
        (),
    ),
    (
        "stats-file-garbage",
        ["plan", "s.yaml"],
        both(sweep(data__tokens_per_pair=_DEL, data__stats_file="st.json"), write("st.json", "{oops")),
        2,
        "data.stats_file",
        (),
    ),
    (
        "stats-file-list",
        ["plan", "s.yaml"],
        both(sweep(data__tokens_per_pair=_DEL, data__stats_file="st.json"), write("st.json", "[1, 2]")),
        2,
        "data.stats_file",
        (),
    ),
    (
        "stats-file-binary",
        ["plan", "s.yaml"],
        both(sweep(data__tokens_per_pair=_DEL, data__stats_file="st.json"), write("st.json", b"\xff\xfe\x00")),
        2,
        "data.stats_file",
        (),
    ),
    (
        "stats-file-number",
        ["plan", "s.yaml"],
        sweep(data__tokens_per_pair=_DEL, data__stats_file=5),
        2,
        "data.stats_file",
        (),
    ),
    (
        "stats-file-bad-value",
        ["plan", "s.yaml"],
        both(
            sweep(data__tokens_per_pair=_DEL, data__stats_file="st.json"), write("st.json", '{"tokens_per_pair": "x"}')
        ),
        2,
        "tokens_per_pair",
        (),
    ),
    ("max-prompt-tokens-zero", ["plan", "s.yaml"], sweep(data__max_prompt_tokens=0), 2, "max_prompt_tokens", ()),
    # -- milestones
    ("start-log2-negative", ["plan", "s.yaml"], sweep(milestones__start_log2=-1), 2, "start_log2", ()),
    ("start-log2-beyond", ["plan", "s.yaml"], sweep(milestones__start_log2=40), 2, "start_log2", ()),
    ("start-log2-huge", ["plan", "s.yaml"], sweep(milestones__start_log2=10**9), 2, "start_log2", ()),
    (
        "stop-below-start",
        ["plan", "s.yaml"],
        sweep(milestones__start_log2=7, milestones__stop_log2=6),
        2,
        "stop_log2",
        (),
    ),
    ("milestone-pairs-empty", ["plan", "s.yaml"], sweep(milestones__pairs=[]), 2, "milestones.pairs", ()),
    ("milestone-pairs-zero", ["plan", "s.yaml"], sweep(milestones__pairs=[0, 64]), 2, "milestones.pairs", ()),
    ("milestone-pairs-beyond", ["plan", "s.yaml"], sweep(milestones__pairs=[64, 10**6]), 2, "milestones.pairs", ()),
    ("milestone-below-batch", ["plan", "s.yaml"], sweep(milestones__pairs=[16, 64]), 2, "milestones.pairs", ()),
    # -- train
    ("lr-zero", ["plan", "s.yaml"], sweep(train__lr=0), 2, "train.lr", ()),
    ("lr-negative", ["plan", "s.yaml"], sweep(train__lr=-1e-3), 2, "train.lr", ()),
    ("lr-string", ["plan", "s.yaml"], sweep(train__lr="fast"), 2, "train.lr", ()),
    ("lr-bool", ["plan", "s.yaml"], sweep(train__lr=True), 2, "train.lr", ()),
    ("warmup-frac-above-1", ["plan", "s.yaml"], sweep(train__warmup_frac=1.5), 2, "train.warmup_frac", ()),
    ("warmup-frac-negative", ["plan", "s.yaml"], sweep(train__warmup_frac=-0.1), 2, "train.warmup_frac", ()),
    ("min-lr-frac-above-1", ["plan", "s.yaml"], sweep(train__min_lr_frac=2.0), 2, "train.min_lr_frac", ()),
    ("beta-above-1", ["plan", "s.yaml"], sweep(train__betas=[1.5, 0.999]), 2, "train.betas", ()),
    ("beta-one", ["plan", "s.yaml"], sweep(train__betas=[0.9, 1.0]), 2, "train.betas", ()),
    ("betas-one-item", ["plan", "s.yaml"], sweep(train__betas=[0.9]), 2, "train.betas", ()),
    ("weight-decay-negative", ["plan", "s.yaml"], sweep(train__weight_decay=-0.1), 2, "weight_decay", ()),
    ("eps-zero", ["plan", "s.yaml"], sweep(train__eps=0), 2, "train.eps", ()),
    ("epochs-zero", ["plan", "s.yaml"], sweep(train__epochs=0), 2, "train.epochs", ()),
    ("ctx-len-zero", ["plan", "s.yaml"], sweep(train__ctx_len=0), 2, "train.ctx_len", ()),
    ("global-batch-zero", ["plan", "s.yaml"], sweep(train__global_batch_pairs=0), 2, "global_batch_pairs", ()),
    ("micro-above-global", ["plan", "s.yaml"], sweep(train__micro_batch_pairs=64), 2, "micro_batch_pairs", ()),
    ("micro-string", ["plan", "s.yaml"], sweep(train__micro_batch_pairs="big"), 2, "micro_batch_pairs", ()),
    ("grad-clip-zero", ["plan", "s.yaml"], sweep(train__grad_clip=0), 2, "grad_clip", ()),
    ("zero-stage-4", ["plan", "s.yaml"], sweep(train__zero_stage=4), 2, "zero_stage", ()),
    ("precision-fp16", ["plan", "s.yaml"], sweep(train__precision="fp16"), 2, "precision", ()),
    ("collation-bogus", ["plan", "s.yaml"], sweep(train__collation="zip"), 2, "collation", ()),
    ("schedule-cosine-milestones", ["plan", "s.yaml"], sweep(train__schedule="cosine"), 2, "train.schedule", ()),
    ("keep-checkpoints-zero", ["plan", "s.yaml"], sweep(train__keep_checkpoints=0), 2, "keep_checkpoints", ()),
    ("checkpoint-every-zero", ["plan", "s.yaml"], sweep(train__checkpoint_every_steps=0), 2, "checkpoint_every", ()),
    ("warmup-steps-negative", ["plan", "s.yaml"], sweep(train__warmup_steps=-1), 2, "warmup_steps", ()),
    ("lr-width-power-negative", ["plan", "s.yaml"], sweep(train__lr_width_power=-1), 2, "lr_width_power", ()),
    ("max-skipped-negative", ["plan", "s.yaml"], sweep(train__max_skipped_batches=-1), 2, "max_skipped", ()),
    ("train-scalar", ["plan", "s.yaml"], sweep(train=5), 2, "train", ()),
    # -- seeds
    ("seed-negative", ["plan", "s.yaml"], sweep(seeds=[-1]), 2, "seeds[0]", ()),
    ("seed-too-big", ["plan", "s.yaml"], sweep(seeds=[2**32]), 2, "seeds[0]", ()),
    ("seed-fraction", ["plan", "s.yaml"], sweep(seeds=[0.5]), 2, "seeds[0]", ()),
    ("seed-string", ["plan", "s.yaml"], sweep(seeds=["zero"]), 2, "seeds[0]", ()),
    ("seeds-empty", ["plan", "s.yaml"], sweep(seeds=[]), 2, "seeds", ()),
    ("seeds-duplicate", ["plan", "s.yaml"], sweep(seeds=[1, 1]), 2, "duplicate seeds", ()),
    ("seed-scalar-negative", ["plan", "s.yaml"], sweep(seeds=-3), 2, "seeds", ()),
    # -- eval
    ("eval-set-unknown", ["plan", "s.yaml"], sweep(eval__sets=["helpsteer3"]), 2, "helpsteer3", ()),
    ("eval-sets-empty", ["plan", "s.yaml"], sweep(eval__sets=[]), 2, "eval.sets", ()),
    (
        "eval-extra-category",
        ["plan", "s.yaml"],
        sweep(eval__extra={"mine": {"category": "funny", "path": "x.jsonl"}}),
        2,
        "eval.extra.mine.category",
        (),
    ),
    (
        "eval-extra-no-path",
        ["plan", "s.yaml"],
        sweep(eval__extra={"mine": {"category": "objective"}}),
        2,
        "eval.extra.mine.path",
        (),
    ),
    ("eval-max-pairs-zero", ["plan", "s.yaml"], sweep(eval__max_pairs_per_set=0), 2, "max_pairs_per_set", ()),
    ("eval-dir-number", ["plan", "s.yaml"], sweep(eval__dir=5), 2, "eval.dir", ()),
    # -- tracking
    ("tracking-backend-bogus", ["plan", "s.yaml"], sweep(tracking__backend="wandb"), 2, "tracking.backend", ()),
    ("tracking-flush-zero", ["plan", "s.yaml"], sweep(tracking__flush_every_s=0), 2, "flush_every_s", ()),
    # -- cluster
    ("cluster-file-missing", ["plan", "s.yaml"], sweep(cluster="slurm/nope.yaml"), 2, "cluster", ()),
    ("cluster-file-folder", ["plan", "s.yaml"], sweep(cluster="slurm"), 2, "cluster", ()),
    (
        "cluster-file-garbage",
        ["plan", "s.yaml"],
        both(sweep(cluster="slurm/p.yaml"), raw("a: [", "slurm/p.yaml")),
        2,
        "slurm/p.yaml",
        (),
    ),
    (
        "cluster-file-binary",
        ["plan", "s.yaml"],
        both(sweep(cluster="slurm/p.yaml"), raw(b"\xff\xfe\xfa", "slurm/p.yaml")),
        2,
        "slurm/p.yaml",
        (),
    ),
    (
        "cluster-file-list",
        ["plan", "s.yaml"],
        both(sweep(cluster="slurm/p.yaml"), raw("- 1\n", "slurm/p.yaml")),
        2,
        "slurm/p.yaml",
        (),
    ),
    ("cluster-flag-missing", ["plan", "s.yaml", "--cluster", "slurm/zz.yaml"], None, 2, "zz.yaml", ()),
    ("cluster-flag-folder", ["plan", "s.yaml", "--cluster", "slurm"], None, 2, "slurm", ()),
    ("cluster-gpus-zero", ["plan", "s.yaml"], sweep(cluster__gpus_per_node=0), 2, "cluster.gpus_per_node", ()),
    ("cluster-max-nodes-huge", ["plan", "s.yaml"], sweep(cluster__max_nodes=10**9), 2, "cluster.max_nodes", ()),
    ("cluster-mfu-above-1", ["plan", "s.yaml"], sweep(cluster__mfu=2.0), 2, "cluster.mfu", ()),
    ("cluster-executor-bogus", ["plan", "s.yaml"], sweep(cluster__executor="k8s"), 2, "cluster.executor", ()),
    ("cluster-gpu-bogus", ["plan", "s.yaml"], sweep(cluster__gpu_type="V100"), 2, "cluster.gpu_type", ()),
    ("cluster-margin-below-1", ["plan", "s.yaml"], sweep(cluster__time_margin=0.5), 2, "time_margin", ()),
    ("cluster-number", ["plan", "s.yaml"], sweep(cluster=5), 2, "cluster", ()),
    ("out-dir-number", ["plan", "s.yaml"], sweep(out_dir=5), 2, "out_dir", ()),
    # -- flags
    ("plan-format-bogus", ["plan", "s.yaml", "--format", "xml"], None, 2, "--format", ()),
    ("no-command", [], None, 2, "", ()),
    ("unknown-command", ["plot"], None, 2, "invalid choice", ()),
]

STATE_CASES: list[Case] = [
    # -- wps status: state files torn or wrong, a tracking server away, --watch on nothing launched
    ("status-interval-zero", ["status", "s.yaml", "--interval", "0"], None, 2, "--interval", ()),
    ("status-interval-nan", ["status", "s.yaml", "--interval", "nan"], None, 2, "--interval", ()),
    (
        "status-watch-never-launched",
        ["status", "s.yaml", "--watch", "--interval", "0.05"],
        None,
        1,
        "nothing launched",
        (),
    ),
    (
        "status-watch-partly-launched",
        ["status", "s.yaml", "--watch", "--interval", "0.05"],
        both(sweep(models=["tiny-xxxs", "tiny-xxs"]), launched(marker=FINISHED)),
        0,
        "1 cell(s) never launched",
        (),
    ),
    (
        "status-torn-launch-line",
        ["status", "s.yaml"],
        launched(lines=['{"cell_id": "CID", "ind']),
        1,
        "launches.jsonl",
        ("out/t/launches.jsonl",),
    ),
    (
        "status-garbage-launches",
        ["status", "s.yaml"],
        launched(lines=["not json at all\n"]),
        1,
        "launches.jsonl:2",
        ("out/t/launches.jsonl",),
    ),
    (
        "status-launch-record-list",
        ["status", "s.yaml"],
        launched(lines=["[1, 2]\n"]),
        1,
        "launches.jsonl:2",
        ("out/t/launches.jsonl",),
    ),
    (
        "status-launch-record-no-id",
        ["status", "s.yaml"],
        launched(lines=['{"job_id": 5}\n']),
        1,
        "launches.jsonl:2",
        ("out/t/launches.jsonl",),
    ),
    ("status-launches-binary", ["status", "s.yaml"], launched(lines=[b"\xff\xfe{\x00\n"]), 1, "launches.jsonl", ()),
    (
        "status-launches-folder",
        ["status", "s.yaml"],
        both(write("out/t/launches.jsonl", None)),
        1,
        "launches.jsonl",
        (),
    ),
    (
        "status-marker-truncated",
        ["status", "s.yaml"],
        launched(marker=FINISHED[:20]),
        1,
        "UNREADABLE",
        ("out/t/launches.jsonl",),
    ),
    ("status-marker-list", ["status", "s.yaml"], launched(marker="[1]"), 1, "UNREADABLE", ()),
    ("status-marker-folder", ["status", "s.yaml"], launched(marker_is_dir=True), 1, "UNREADABLE", ()),
    ("status-marker-binary", ["status", "s.yaml"], launched(marker=b"\xff\xfe\x00\x01"), 1, "UNREADABLE", ()),
    (
        "status-marker-bad-status",
        ["status", "s.yaml"],
        launched(marker='{"status": 5, "pairs_seen": "x"}'),
        1,
        "UNREADABLE",
        (),
    ),
    (
        "status-job-id-garbage",
        ["status", "s.yaml"],
        launched(lines=['{"cell_id": "CID", "job_id": "abc", "executor": "local"}\n']),
        0,
        "",
        (),
    ),
    (
        "status-failed-job-says-why",
        ["status", "s.yaml"],
        both(
            launched(),
            write(
                "out/t/jobs/999999999/999999999_0_log.err",
                "submitit ERROR (2026-12-07) - Submitted job triggered an exception\nTraceback (most "
                'recent call last):\n  File "x.py", line 1\nworldpm_scaling.data.io.PairsFileError: '
                "data/x.parquet: no such pairs file\n",
            ),
        ),
        0,
        "FAILED: worldpm_scaling.data.io.PairsFileError: data/x.parquet",
        (),
    ),
    (
        "status-tracking-unreachable",
        ["status", "s.yaml"],
        sweep(tracking__backend="mlflow", tracking__uri="http://127.0.0.1:9"),
        0,
        "not answering",
        (),
    ),
    # -- wps cancel
    (
        "cancel-torn-launch-line",
        ["cancel", "s.yaml"],
        launched(lines=['{"cell_id": "CID", "ind']),
        1,
        "launches.jsonl",
        ("out/t/launches.jsonl",),
    ),
    (
        "cancel-marker-truncated",
        ["cancel", "s.yaml"],
        launched(marker=FINISHED[:20]),
        1,
        "status.json",
        ("out/t/launches.jsonl",),
    ),
    ("cancel-marker-list", ["cancel", "s.yaml"], launched(marker="[1]"), 1, "status.json", ()),
    ("cancel-cell-out-of-range", ["cancel", "s.yaml", "--cell", "99"], None, 2, "99", ()),
    ("cancel-cell-bogus", ["cancel", "s.yaml", "--cell", "zz"], None, 2, "zz", ()),
    ("cancel-cell-negative", ["cancel", "s.yaml", "--cell", "-1"], None, 2, "-1", ()),
    (
        "cancel-job-id-garbage",
        ["cancel", "s.yaml"],
        launched(lines=['{"cell_id": "CID", "job_id": "abc", "executor": "local"}\n']),
        0,
        "cancelled 0",
        (),
    ),
]

LAUNCH_CASES: list[Case] = [
    # -- the pre-flight check: every input a job needs, before anything queues
    ("check-ready", ["check", "s.yaml"], None, 0, "", ()),
    ("check-source-missing", ["check", "s.yaml"], remove("data/train.parquet"), 2, "data/train.parquet", ()),
    ("check-source-folder-empty", ["check", "s.yaml"], sweep(data__source="data/evals_none"), 2, "data.source", ()),
    ("check-source-corrupt", ["check", "s.yaml"], write("data/train.parquet", b"PAR1garbage"), 2, "train.parquet", ()),
    (
        "check-source-too-few-pairs",
        ["check", "s.yaml"],
        sweep(data__pairs=4096, milestones__start_log2=6),
        2,
        "4,096",
        (),
    ),
    ("check-tokenizer-missing", ["check", "s.yaml"], remove("data/tokenizer.json"), 2, "data/tokenizer.json", ()),
    ("check-tokenizer-corrupt", ["check", "s.yaml"], write("data/tokenizer.json", '{"version": '), 2, "tokenizer", ()),
    ("check-evals-missing", ["check", "s.yaml"], remove("data/evals"), 2, "data/evals", ()),
    ("check-one-eval-missing", ["check", "s.yaml"], remove("data/evals/helpsteer2.jsonl"), 2, "helpsteer2", ()),
    (
        "check-eval-corrupt",
        ["check", "s.yaml"],
        write("data/evals/offsetbias.jsonl", "{not json\n"),
        2,
        "offsetbias",
        (),
    ),
    ("check-out-dir-is-file", ["check", "s.yaml"], write("out", "a file"), 2, "out", ("out",)),
    (
        "check-tracking-unreachable",
        ["check", "s.yaml"],
        sweep(tracking__backend="mlflow", tracking__uri="http://127.0.0.1:9"),
        2,
        "127.0.0.1:9",
        (),
    ),
    (
        "check-tracking-database-away",
        ["check", "s.yaml"],
        sweep(tracking__backend="mlflow", tracking__uri="postgresql://u@127.0.0.1:9/m"),
        2,
        "127.0.0.1:9",
        (),
    ),
    (
        "check-tracking-bad-scheme",
        ["check", "s.yaml"],
        sweep(tracking__backend="mlflow", tracking__uri="bogus://x"),
        2,
        "bogus",
        (),
    ),
    (
        "check-marker-unreadable",
        ["check", "s.yaml"],
        launched(marker=FINISHED[:20]),
        2,
        "status.json",
        ("out/t/launches.jsonl",),
    ),
    (
        "check-tokenizer-hint-base",
        ["check", "s.yaml"],
        both(
            sweep(
                models=["qwen2.5-0.5b"],
                init="pretrained",
                cluster__models_dir="models",
                cluster__mem_gb_per_task=64,
                data__tokenizer="checkpoints/Qwen2.5-0.5B",
            ),
            lambda ws: (
                (ws / "models/Qwen2.5-0.5B").mkdir(parents=True)
                or shutil.copy(ws / "data/tokenizer.json", ws / "models/Qwen2.5-0.5B/tokenizer.json")
            ),
        ),
        2,
        "models/Qwen2.5-0.5B holds one",
        (),
    ),
    (
        "check-base-missing",
        ["check", "s.yaml"],
        sweep(models=["qwen2.5-0.5b"], init="pretrained", cluster__models_dir="models", cluster__mem_gb_per_task=64),
        2,
        "Qwen2.5-0.5B",
        (),
    ),
    ("dry-run-ready", ["launch", "s.yaml", "--dry-run"], None, 0, "1 cells would be submitted", ()),
    (
        "dry-run-source-missing",
        ["launch", "s.yaml", "--dry-run"],
        remove("data/train.parquet"),
        2,
        "data/train.parquet",
        (),
    ),
    ("dry-run-evals-missing", ["launch", "s.yaml", "--dry-run"], remove("data/evals"), 2, "data/evals", ()),
    (
        "dry-run-tokenizer-missing",
        ["launch", "s.yaml", "--dry-run"],
        remove("data/tokenizer.json"),
        2,
        "tokenizer.json",
        (),
    ),
    ("launch-source-missing", ["launch", "s.yaml"], remove("data/train.parquet"), 2, "data/train.parquet", ()),
    ("launch-evals-missing", ["launch", "s.yaml", "--executor", "local"], remove("data/evals"), 2, "data/evals", ()),
    (
        "launch-marker-unreadable",
        ["launch", "s.yaml"],
        launched(marker=FINISHED[:20]),
        2,
        "status.json",
        ("out/t/launches.jsonl",),
    ),
    (
        "launch-torn-launches",
        ["launch", "s.yaml", "--dry-run"],
        launched(lines=['{"cell_id": "CID", "ind']),
        0,
        "launches.jsonl",
        ("out/t/launches.jsonl",),
    ),
    ("launch-executor-bogus", ["launch", "s.yaml", "--executor", "k8s"], None, 2, "--executor", ()),
    ("launch-sweep-missing", ["launch", "nope.yaml", "--dry-run"], None, 2, "nope.yaml", ()),
    ("launch-bad-seed", ["launch", "s.yaml", "--dry-run"], sweep(seeds=[-2]), 2, "seeds[0]", ()),
    ("launch-bad-warmup", ["launch", "s.yaml", "--dry-run"], sweep(train__warmup_frac=1.5), 2, "warmup_frac", ()),
    ("train-bad-seed", ["train", "s.yaml", "--cell", "0"], sweep(seeds=[-2]), 2, "seeds[0]", ()),
    ("train-bad-warmup", ["train", "s.yaml", "--cell", "0"], sweep(train__warmup_frac=1.5), 2, "warmup_frac", ()),
]

DATA_CASES: list[Case] = [
    (
        "synth-out-is-file",
        ["data", "synth", "--out", "f.txt", "--pairs", "50"],
        write("f.txt", "keep"),
        2,
        "f.txt",
        ("f.txt",),
    ),
    ("synth-exists", ["data", "synth", "--out", "data", "--pairs", "50"], None, 2, "--force", ("data/train.parquet",)),
    ("synth-pairs-zero", ["data", "synth", "--out", "x", "--pairs", "0"], None, 2, "--pairs", ()),
    ("synth-pairs-text", ["data", "synth", "--out", "x", "--pairs", "many"], None, 2, "--pairs", ()),
    ("se-missing", ["data", "stackexchange", "nope.xml", "--out", "se"], None, 2, "nope.xml", ()),
    (
        "se-empty-file",
        ["data", "stackexchange", "Posts.xml", "--out", "se"],
        write("Posts.xml", ""),
        2,
        "Posts.xml",
        (),
    ),
    (
        "se-binary",
        ["data", "stackexchange", "Posts.xml", "--out", "se"],
        write("Posts.xml", b"\x00\xff" * 50),
        2,
        "Posts.xml",
        (),
    ),
    (
        "se-truncated-xml",
        ["data", "stackexchange", "Posts.xml", "--out", "se"],
        write("Posts.xml", '<?xml version="1.0"?>\n<posts>\n  <row Id="1" PostTypeId="1" Sco'),
        2,
        "Posts.xml",
        (),
    ),
    (
        "se-not-posts",
        ["data", "stackexchange", "Posts.xml", "--out", "se"],
        write("Posts.xml", "<html></html>"),
        2,
        "Posts.xml",
        (),
    ),
    ("se-empty-folder", ["data", "stackexchange", "dump", "--out", "se"], write("dump", None), 2, "dump", ()),
    (
        "se-out-is-file",
        ["data", "stackexchange", "data/Posts.xml", "--out", "f.txt"],
        write("f.txt", "keep"),
        2,
        "f.txt",
        ("f.txt",),
    ),
    (
        "se-test-frac-bad",
        ["data", "stackexchange", "data/Posts.xml", "--out", "se", "--test-frac", "1.5"],
        None,
        2,
        "--test-frac",
        (),
    ),
    ("evals-dir-missing", ["data", "evals", "--dir", "nope"], None, 1, "missing", ()),
    ("evals-dir-is-file", ["data", "evals", "--dir", "s.yaml"], None, 1, "missing", ()),
    (
        "evals-corrupt",
        ["data", "evals", "--dir", "data/evals"],
        write("data/evals/helpsteer2.jsonl", "{x\n"),
        2,
        "helpsteer2",
        (),
    ),
    ("evals-sweep-bad", ["data", "evals", "s.yaml"], sweep(seeds=[-1]), 2, "seeds[0]", ()),
    (
        "evals-import-missing",
        ["data", "evals", "import", "helpsteer2", "nope.jsonl", "--out", "ev"],
        None,
        2,
        "nope.jsonl",
        (),
    ),
    (
        "evals-import-garbage",
        ["data", "evals", "import", "helpsteer2", "g.jsonl", "--out", "ev"],
        write("g.jsonl", "garbage\n"),
        2,
        "g.jsonl",
        (),
    ),
    ("evals-import-bogus-set", ["data", "evals", "import", "nope", "g.jsonl"], None, 2, "nope", ()),
    ("tokenize-source-missing", ["data", "tokenize", "s.yaml"], remove("data/train.parquet"), 2, "train.parquet", ()),
    ("tokenize-tokenizer-missing", ["data", "tokenize", "s.yaml"], remove("data/tokenizer.json"), 2, "tokenizer", ()),
    (
        "tokenize-source-corrupt",
        ["data", "tokenize", "s.yaml"],
        write("data/train.parquet", b"PAR1xx"),
        2,
        "train.parquet",
        (),
    ),
]

ANALYZE_CASES: list[Case] = [
    (
        "analyze-unreachable",
        ["analyze", "t", "--out", "rep", "--tracking-uri", "http://127.0.0.1:9"],
        None,
        2,
        "127.0.0.1:9",
        (),
    ),
    (
        "analyze-yaml-unreachable",
        ["analyze", "s.yaml", "--out", "rep"],
        sweep(tracking__backend="mlflow", tracking__uri="http://127.0.0.1:9"),
        2,
        "127.0.0.1:9",
        (),
    ),
    (
        "analyze-database-away",
        ["analyze", "t", "--out", "rep", "--tracking-uri", "postgresql://u@127.0.0.1:9/m"],
        None,
        2,
        "127.0.0.1:9",
        (),
    ),
    ("analyze-bad-scheme", ["analyze", "t", "--out", "rep", "--tracking-uri", "bogus://x"], None, 2, "bogus", ()),
    (
        "analyze-sqlite-missing",
        ["analyze", "t", "--out", "rep", "--tracking-uri", "sqlite:///nope/m.db"],
        None,
        2,
        "nope/m.db",
        (),
    ),
    (
        "analyze-sqlite-garbage",
        ["analyze", "t", "--out", "rep", "--tracking-uri", "sqlite:///g.db"],
        write("g.db", "not a database"),
        2,
        "g.db",
        ("g.db",),
    ),
    ("analyze-from-missing", ["analyze", "t", "--out", "rep", "--from", "nope.csv"], None, 2, "nope.csv", ()),
    ("analyze-from-folder", ["analyze", "t", "--out", "rep", "--from", "data"], None, 2, "data", ()),
    (
        "analyze-from-garbage",
        ["analyze", "t", "--out", "rep", "--from", "g.parquet"],
        write("g.parquet", "xx"),
        2,
        "g.parquet",
        (),
    ),
    ("analyze-from-empty-csv", ["analyze", "t", "--out", "rep", "--from", "e.csv"], write("e.csv", ""), 2, "e.csv", ()),
    (
        "analyze-from-wrong-columns",
        ["analyze", "t", "--out", "rep", "--from", "w.csv"],
        write("w.csv", "a,b\n1,2\n"),
        2,
        "w.csv",
        (),
    ),
    (
        "analyze-out-is-file",
        ["analyze", "t", "--out", "f.txt", "--from", "w.csv"],
        both(write("f.txt", "keep"), write("w.csv", "a\n1\n")),
        2,
        "f.txt",
        ("f.txt",),
    ),
    ("analyze-bootstrap-negative", ["analyze", "t", "--out", "rep", "--bootstrap", "-1"], None, 2, "--bootstrap", ()),
    ("analyze-yaml-bad", ["analyze", "s.yaml", "--out", "rep"], sweep(train__warmup_frac=3), 2, "warmup_frac", ()),
    ("analyze-yaml-missing", ["analyze", "nope.yaml", "--out", "rep"], None, 2, "nope.yaml", ()),
    ("analyze-no-store", ["analyze", "zz", "--out", "rep", "--tracking-uri", "sqlite:///m.db"], None, 2, "m.db", ()),
]

OTHER_CASES: list[Case] = [  # the other subcommands' refusals, kept as they are (their code is not issue 31's)
    ("export-no-cell", ["export", "s.yaml", "--cell", "7", "--out", "exp"], None, 2, "--cell", ()),
    ("export-not-trained", ["export", "s.yaml", "--cell", "0", "--out", "exp"], None, 2, "checkpoint", ()),
    ("export-sweep-bad", ["export", "s.yaml", "--cell", "0", "--out", "exp"], sweep(seeds=[-1]), 2, "seeds[0]", ()),
    ("score-no-model", ["score", "nope", "data/evals/helpsteer2.jsonl"], None, 2, "nope", ()),
    ("score-model-is-file", ["score", "s.yaml", "data/evals/helpsteer2.jsonl"], None, 2, "s.yaml", ()),
    ("sync-no-dir", ["sync", "nope", "--uri", "sqlite:///m.db"], None, 2, "nope", ()),
    ("sync-dir-is-file", ["sync", "s.yaml", "--uri", "sqlite:///m.db"], None, 2, "s.yaml", ()),
    ("sync-bad-scheme", ["sync", "data", "--uri", "bogus://x"], None, 2, "bogus", ()),
    ("fit-no-file", ["fit", "nope.csv", "--x", "N", "--y", "L"], None, 2, "nope.csv", ()),
    ("fit-no-column", ["fit", "w.csv", "--x", "N", "--y", "L"], write("w.csv", "a,b\n1,2\n"), 2, "'L'", ()),
    ("fit-binary", ["fit", "w.csv", "--x", "N", "--y", "L"], write("w.csv", b"\x00\xff\xfe" * 9), 2, "w.csv", ()),
    (
        "fit-level-bad",
        ["fit", "w.csv", "--x", "a", "--y", "b", "--level", "2"],
        write("w.csv", "a,b\n1,2\n"),
        2,
        "--level",
        (),
    ),
    (
        "predict-no-file",
        ["predict", "nope.csv", "--x", "N,D", "--loss", "L", "--at", "N=1e9,D=1e10"],
        None,
        2,
        "nope.csv",
        (),
    ),
    ("hf-no-dataset", ["data", "hf", "nope", "--out", "hfo"], None, 2, "nope", ()),
    (
        "hf-out-is-file",
        ["data", "hf", "data/evals/helpsteer2.jsonl", "--out", "s.yaml"],
        None,
        2,
        "s.yaml",
        ("s.yaml",),
    ),
]

ALL = PLAN_CASES + STATE_CASES + LAUNCH_CASES + DATA_CASES + ANALYZE_CASES + OTHER_CASES


def _snapshot(ws: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {n: (ws / n).read_bytes() for n in names}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ALL, ids=[c[0] for c in ALL])
def test_bad_input(ws, capsys, case):
    _id, argv, setup, want_rc, fragment, survive = case
    if setup is not None:
        setup(ws)
    before = _snapshot(ws, survive)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors exit 2 with usage
        rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out and "(a bug:" not in err, err[-1500:]
    assert rc == want_rc, f"exit {rc}, wanted {want_rc}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}"
    if want_rc == 2 and argv:
        assert err.strip(), "a refusal must say why on stderr"
    assert fragment in err + out, f"{fragment!r} not in\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}"
    assert _snapshot(ws, survive) == before, "a file that must survive was changed"


def test_the_table_is_large():
    assert len(ALL) >= 150 and len({c[0] for c in ALL}) == len(ALL)


def test_a_sacct_that_hangs_is_asked_once_not_once_per_cell(monkeypatch, capsys):
    """A dead slurmdbd: every sacct call waits its 10 s timeout; a 24-cell sweep's status took minutes."""
    import subprocess

    from worldpm_scaling.launch import status

    calls = []

    def hang(cmd, **kw):
        calls.append(cmd)
        raise subprocess.TimeoutExpired(cmd, kw.get("timeout", 10))

    monkeypatch.setattr(status, "_SACCT_AWAY", [])
    monkeypatch.setattr(status.subprocess, "run", hang)
    assert [status.slurm_state(str(j)) for j in range(24)] == [None] * 24
    assert len(calls) == 1 and "sacct did not answer" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_the_paper_grid_dry_run_without_its_inputs_names_each_one(tmp_path, monkeypatch, capsys):
    """Issue 31's acceptance line: on a box without the data, `wps launch sweeps/worldpm.yaml --cluster
    slurm/h100.yaml --dry-run` prints the readiness table naming each missing input and exits non-zero
    (it used to approve the grid, which then failed 9 s after it started)."""
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WPS_MODELS_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rc = main(["launch", str(repo / "sweeps/worldpm.yaml"), "--cluster", str(repo / "slurm/h100.yaml"), "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 2 and "#SBATCH" in out, err
    for item in (
        "data.source",
        "data.tokenizer",
        "eval sets",
        "base qwen2.5-1.5b",
        "base qwen2.5-7b",
        "base qwen2.5-72b",
        "tracking.uri",
    ):
        assert item in err, (item, err)
    table = out[out.index("pre-flight check") :]
    assert "data/stackexchange/train.parquet" in table and max(len(line) for line in table.splitlines()) <= 100


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    """main()'s last resort: a failure no layer named is `error: unexpected …` with exit 1 (not a
    traceback); `--debug` (or WPS_DEBUG=1) lets the exception through for the traceback."""
    import worldpm_scaling.cli.plan as plan_cli

    def boom(args):
        raise RuntimeError("something nobody named")

    monkeypatch.setattr(plan_cli, "run", boom)
    monkeypatch.delenv("WPS_DEBUG", raising=False)
    assert main(["plan", "x.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected RuntimeError" in err and "something nobody named" in err
    assert "(a bug" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        main(["--debug", "plan", "x.yaml"])
    monkeypatch.setenv("WPS_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["plan", "x.yaml"])
