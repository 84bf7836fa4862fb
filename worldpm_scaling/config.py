"""Typed specs: what a sweep YAML may say, checked before anything runs.

Every spec is a frozen, kw-only dataclass whose field docstrings are the documentation. Loading goes
through one generic converter that rejects unknown keys (suggesting the closest valid name), checks
types, ranges and choices, and reports errors as ``FILE:LINE: field.path: message`` so a researcher
can fix a 200-line sweep file without guessing.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from . import models as catalogue
from .models import ModelShape
from .names import EVAL_SETS

# ---------------------------------------------------------------------------------------------
# errors


class SpecError(ValueError):
    """A bad sweep or profile: names the file, the field path and, when known, the line."""

    def __init__(self, message: str, *, file: str | Path | None = None, path: str = "", line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"


def _ge(v: float) -> dict:
    return {"min": v, "strict": False}


def _gt(v: float) -> dict:
    return {"min": v, "strict": True}


def _frac(*, below_one: bool = False) -> dict:
    """A fraction: in [0, 1] (or [0, 1) where 1 breaks the maths, e.g. an Adam beta)."""
    return {"min": 0.0, "strict": False, "max": 1.0, "max_strict": below_one}


SEED_MAX = 2**32 - 1
"""numpy's and torch's generators take seeds in [0, 2^32 - 1]: larger or negative seeds fail in the job."""

MAX_NODES = 100_000
"""Bound on cluster.max_nodes: the planner tries each node count up to it (10^9 spun for ever); no cluster is larger."""

MAX_LOG2 = 62
"""Milestone exponents stay below 2^63 pairs (an int64): larger ones cannot be counted, only hang the planner."""


# ---------------------------------------------------------------------------------------------
# specs

Mode = Literal["milestones", "grid"]
Collation = Literal["padded", "packed", "shared_prompt"]


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Where training pairs come from and how many a run may consume."""

    source: str = "synthetic"
    """A pairs file/folder (Parquet or JSONL), e.g. the `train.parquet` `wps data synth` or `wps data
    stackexchange` writes. A sweep YAML must name one: the placeholder `synthetic` is refused there
    (`wps data synth --out data/demo` makes the synthetic forum; then `source: data/demo/train.parquet`)."""
    pairs: int = field(default=15_000_000, metadata=_gt(0))
    """Pairs budget: the most pairs any cell of the sweep trains on (one epoch)."""
    tokens_per_pair: float | None = field(default=None, metadata=_gt(0))
    """Mean tokens a pair costs the forward pass (prompt + chosen + rejected, both sequences)."""
    stats_file: str | None = None
    """A JSON file with `tokens_per_pair` (written by the data layer's tokenized cache); used
    when `tokens_per_pair` is not given."""
    tokenizer: str | None = None
    """A local tokenizer directory or tokenizer.json; None = the demo BPE trained on the data."""
    max_prompt_tokens: int | None = field(default=None, metadata=_gt(0))
    """Truncate prompts to this many tokens (left side kept short so replies fit the context)."""


@dataclass(frozen=True, kw_only=True)
class MilestoneSpec:
    """The data axis: pairs at which a curve gets a point (the paper's x-axis is log2 pairs)."""

    start_log2: int = field(default=10, metadata={**_ge(0), "max": MAX_LOG2})
    """First milestone is 2**start_log2 pairs."""
    stop_log2: int | None = field(default=None, metadata={**_ge(0), "max": MAX_LOG2})
    """Last power of two; None = the largest that fits in the pairs budget."""
    include_budget: bool = True
    """Also evaluate at the budget itself when it is not a power of two."""
    pairs: tuple[int, ...] | None = None
    """Explicit milestones in pairs (overrides the powers of two)."""


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """Hyper-parameters; defaults are the paper's recipe (arXiv 2505.10527 §3.1.2, App. A.3; docs/paper_constants.md)."""

    optimizer: Literal["adamw", "adam"] = "adamw"
    """Adam with decoupled weight decay (`adamw`) or L2-coupled (`adam`). The paper: Adam, wd 0.1."""
    lr: float = field(default=3e-6, metadata=_gt(0))
    """Peak learning rate (arXiv 2505.10527, training setup: 3e-6)."""
    lr_width_ref: int | None = field(default=None, metadata=_gt(0))
    """When set, each cell's peak LR is `lr × (lr_width_ref / hidden) ** lr_width_power`, so one sweep can
    train randomly initialised models of several widths, each near its own stable LR (`lr` is the
    LR at width `lr_width_ref`). None = one LR for every size, as the paper (pretrained bases)."""
    lr_width_power: float = field(default=1.0, metadata=_ge(0))
    """Exponent of the width rule: 1 = μP's 1/width for Adam's hidden matrices; 0.5 = a gentler
    1/√width (measured better for the demo's 2–4-layer models: README, what the demo shows)."""
    weight_decay: float = field(default=0.1, metadata=_ge(0))
    """Weight decay (arXiv 2505.10527, training setup: 0.1)."""
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=_frac(below_one=True))
    """Adam betas (not stated in the paper: torch defaults)."""
    eps: float = field(default=1e-8, metadata=_gt(0))
    """Adam epsilon."""
    warmup_frac: float = field(default=0.1, metadata=_frac())
    """Fraction of the run's steps spent in linear warmup (paper: 10%, then constant)."""
    warmup_steps: int | None = field(default=None, metadata=_ge(0))
    """Absolute warmup steps; overrides `warmup_frac` when set."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """LR after warmup. Milestone mode requires `constant` (a decay ties points to one budget)."""
    min_lr_frac: float = field(default=0.0, metadata=_frac())
    """Final LR as a fraction of `lr` for decaying schedules."""
    epochs: int = field(default=1, metadata=_gt(0))
    """Passes over the pairs budget (paper: 1)."""
    ctx_len: int = field(default=2048, metadata=_gt(0))
    """Context length in tokens per sequence (paper: 2048)."""
    global_batch_pairs: int = field(default=10240, metadata=_gt(0))
    """Pairs per optimizer step across all ranks (the articles say 10240; not confirmed in the paper)."""
    micro_batch_pairs: Literal["auto"] | int = field(default=4, metadata=_gt(0))
    """Pairs per rank per forward/backward; accumulation fills the global batch. `auto`: the planner
    picks the largest power of two that fits its memory model on the cell's GPU (Resources carry it;
    docs/planner.md)."""
    grad_clip: float | None = field(default=1.0, metadata=_gt(0))
    """Clip the global grad norm to this (None = no clipping); `train/grad_norm` is logged before."""
    precision: Literal["bf16", "fp32"] = "bf16"
    """bf16 autocast where the device supports it, else fp32."""
    collation: Collation = "shared_prompt"
    """How pairs become rows: padded (baseline), packed (padding-free), shared_prompt (prompt once)."""
    pack_len: int | None = field(default=None, metadata=_gt(0))
    """Tokens per packed row; None = ctx_len."""
    head: Literal["mlp", "linear"] = "mlp"
    """Reward head on the last token: WorldPM's Linear(h,h)→ReLU→Linear(h,1), or one Linear(h,1)."""
    reward_token: Literal["endoftext", "im_end"] = "endoftext"
    """Where the reward is read: `endoftext` = an `<|endoftext|>` appended after the chat-templated
    conversation, as the released WorldPM models do (QwenLM/WorldPM README); `im_end` = the reply's
    own `<|im_end|>` (this project's earlier format). See docs/interop.md."""
    zero_stage: int = field(default=3, metadata={"min": 0, "strict": False, "max": 3})
    """DeepSpeed ZeRO stage on GPUs (0–3)."""
    offload: Literal["none", "optimizer", "optimizer+params"] = "none"
    """ZeRO offload to CPU memory."""
    activation_checkpointing: bool = True
    """Recompute layer activations in backward (trades ~33% compute for memory)."""
    checkpoint_every_steps: int | None = field(default=200, metadata=_gt(0))
    """Write a checkpoint every this many optimizer steps."""
    checkpoint_every_minutes: float | None = field(default=30.0, metadata=_gt(0))
    """…and at least this often in wall-clock (covers SIGTERM requeues and dead nodes)."""
    keep_checkpoints: int = field(default=2, metadata=_gt(0))
    """Checkpoints kept on disk (oldest deleted after a newer one is verified)."""
    nonfinite: Literal["stop", "skip"] = "stop"
    """On a NaN/Inf loss or grad norm: stop (keep the last good checkpoint) or skip the batch."""
    max_skipped_batches: int = field(default=0, metadata=_ge(0))
    """With `nonfinite: skip`, stop anyway after this many skipped batches."""


@dataclass(frozen=True, kw_only=True)
class EvalSetSpec:
    """A user-registered eval set."""

    category: Literal["adversarial", "objective", "subjective"]
    """Which of the paper's three categories the set counts towards."""
    path: str
    """Local prompt/chosen/rejected file (JSONL or Parquet)."""


@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    """Which test sets are scored at each milestone."""

    sets: tuple[str, ...] = tuple(EVAL_SETS)
    """Set names: the 12 WorldPM sets by default, plus any under `extra`. A sweep that lists `sets`
    itself must list its `extra` sets there too (else a named error)."""
    dir: str = "evals"
    """Folder holding the eval files (`<dir>/<set>.jsonl` or `.parquet`)."""
    extra: dict[str, EvalSetSpec] = field(default_factory=dict)
    """User sets: name → {category, path}."""
    max_pairs_per_set: int | None = field(default=None, metadata=_gt(0))
    """Score at most this many pairs of each set (None = all)."""
    plan_pairs_per_set: int = field(default=2000, metadata=_gt(0))
    """Assumed set size when the planner prices evaluation before the files are seen."""


@dataclass(frozen=True, kw_only=True)
class TrackingSpec:
    """Where metrics go."""

    backend: Literal["mlflow", "spool", "memory", "none"] = "mlflow"
    """`mlflow` (spools locally when the server is unreachable), `spool` only, `memory` (tests)."""
    uri: str | None = None
    """MLflow tracking URI; None = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the cwd."""
    experiment: str | None = None
    """MLflow experiment; None = the sweep name."""
    flush_every_s: float = field(default=5.0, metadata=_gt(0))
    """Background flush period for batched metric logging."""
    flush_every_points: int = field(default=1000, metadata=_gt(0))
    """…or sooner when this many points are buffered."""
    system_metrics: bool = True
    """Log MLflow's system metrics (CPU, memory, disk, network; GPU utilisation/memory where NVML
    and nvidia-ml-py exist) as `system/…` on each cell run, from rank 0; false turns it off."""
    system_metrics_interval_s: float = field(default=10.0, metadata=_gt(0))
    """Seconds between system-metric samples (each sample is one logged step of `system/…`)."""

    def __post_init__(self) -> None:
        # A URI with user:password@ would ride in every pickled job and log (docs/tracking_security.md).
        from .track.credentials import refuse_secret_in_uri

        refuse_secret_in_uri(self.uri, what="tracking.uri")


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """A cluster profile (slurm/*.yaml): where jobs run and what one GPU can do."""

    name: str = "local"
    """Profile name, shown in plans."""
    executor: Literal["slurm", "local", "debug"] = "local"
    """submitit executor: `slurm` (sbatch), `local` (subprocesses here), `debug` (in-process)."""
    gpu_type: Literal["cpu", "A100-40G", "A100-80G", "H100-80G", "H200"] = "cpu"
    """Accelerator on each node; `cpu` runs plain torch (or DeepSpeed on gloo)."""
    gpus_per_node: int = field(default=1, metadata=_gt(0))
    """GPUs per node (one task per GPU); for `cpu`, processes per node."""
    cpus_per_task: int = field(default=1, metadata=_gt(0))
    """CPU cores per task."""
    mem_gb_per_task: float | None = field(default=None, metadata=_gt(0))
    """Host memory per task in GB (None = cluster default); for `cpu`, also the device memory."""
    max_nodes: int = field(default=1, metadata={**_gt(0), "max": MAX_NODES})
    """Most nodes one cell may take (≤ 100,000: the planner tries every node count up to it)."""
    max_time_hours: float = field(default=24.0, metadata=_gt(0))
    """Partition time limit; longer cells run as several requeued segments."""
    time_margin: float = field(default=1.3, metadata={"min": 1.0, "strict": False})
    """Multiply the predicted wall-clock by this for the SLURM time limit."""
    mfu: float = field(default=0.35, metadata={"min": 0.0, "strict": True, "max": 1.0})
    """Assumed model FLOPs utilisation for wall-clock estimates."""
    cpu_gflops: float = field(default=50.0, metadata=_gt(0))
    """Peak GFLOP/s of one CPU task (only for gpu_type `cpu`)."""
    min_gpus_per_cell: int | None = field(default=None, metadata=_gt(0))
    """Give every cell at least this many GPUs (data parallel) even when fewer hold the model;
    rounded up to a count the cluster offers (1, 2, 4 … within a node, then whole nodes)."""
    target_hours: float | None = field(default=None, metadata=_gt(0))
    """Add GPUs (up to max_nodes) until a cell's predicted wall-clock is at most this."""
    partition: str | None = None
    """SLURM partition."""
    account: str | None = None
    """SLURM account."""
    qos: str | None = None
    """SLURM QOS."""
    constraint: str | None = None
    """SLURM node constraint (e.g. `h100`)."""
    array_parallelism: int = field(default=16, metadata=_gt(0))
    """Most cells of one sweep running at once (job-array `%` limit)."""
    setup: tuple[str, ...] = ()
    """Shell lines run before the job (module loads, venv activation)."""
    sbatch_extra: dict[str, str] = field(default_factory=dict)
    """Further sbatch options passed through verbatim (e.g. {mail_type: END})."""
    signal_delay_s: int = field(default=120, metadata=_gt(0))
    """Seconds before the time limit SLURM sends USR2 so the job can checkpoint and requeue; the planner
    warns when a cell's planned optimizer step + checkpoint save/verify does not fit in it."""
    models_dir: str | None = None
    """Folder holding the local base checkpoints (`<models_dir>/Qwen2.5-7B`, …); $WPS_MODELS_DIR
    overrides it. Needed by every cell that starts from a pretrained base (docs/pretrained_bases.md)."""
    inter_node_gb_per_s: float = field(default=25.0, metadata=_gt(0))
    """Collective bandwidth per GPU between nodes, GB/s (NCCL bus bandwidth, e.g. `all_reduce_perf`);
    prices ZeRO's communication for cells that span nodes (docs/planner.md)."""
    intra_node_gb_per_s: float = field(default=150.0, metadata=_gt(0))
    """Collective bandwidth per GPU inside one node, GB/s (NVLink; shared memory for CPU ranks)."""
    storage_gb_per_s: float = field(default=2.0, metadata=_gt(0))
    """Write (and read-back) bandwidth one job gets from the checkpoint filesystem, GB/s in all."""
    network_interface: str | None = None
    """Network interface the ranks of a multi-node cell talk over (e.g. `ib0`, `eth0`), exported to the
    job as GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME. None = let gloo/NCCL pick by resolving the node's
    hostname, which fails where it maps to a loopback address (Debian's `127.0.1.1 host` line): a job
    whose ranks span hosts then stops at start naming this field (docs/multinode.md)."""


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """One sweep: a model × data grid and everything a cell needs to run."""

    name: str
    """Sweep name: MLflow experiment, output folder, job names. Letters, digits, `-`, `_`, `.`."""
    description: str = ""
    """Free text shown in the plan and on the MLflow parent run."""
    models: tuple[ModelShape, ...]
    """Catalogue names (`qwen2.5-7b`, `tiny-s`), {name, init}, explicit shapes, or {name, path} of a local
    checkpoint."""
    init: Literal["pretrained", "random"] | None = None
    """How every model starts unless it says otherwise (`{name: qwen2.5-7b, init: random}`):
    `pretrained` = from its released base checkpoint under cluster.models_dir; `random` = random init,
    which a sweep must ask for. None = pretrained for shapes with a released base (the Qwen2.5
    catalogue), random for shapes that have none (tiny CPU shapes, explicit shapes)."""
    data: DataSpec = DataSpec()
    """Training data and budget."""
    mode: Mode = "milestones"
    """`milestones`: one constant-LR run per model, evaluated at each milestone; `grid`: one run per
    model × milestone with that many pairs."""
    milestones: MilestoneSpec = MilestoneSpec()
    """The data axis."""
    train: TrainSpec = TrainSpec()
    """Hyper-parameters."""
    eval: EvalSpec = EvalSpec()
    """Test sets."""
    tracking: TrackingSpec = TrackingSpec()
    """Metrics destination."""
    cluster: ClusterSpec = ClusterSpec()
    """Cluster profile: a path to slurm/*.yaml (relative to the sweep file or the cwd) or inline."""
    seeds: tuple[int, ...] = field(default=(0,), metadata={**_ge(0), "max": SEED_MAX})
    """One cell per seed (each in [0, 2^32 - 1], the range numpy's and torch's generators take)."""
    out_dir: str | None = None
    """Where cells write checkpoints and logs; None = out/<name>."""

    def milestone_pairs(self) -> tuple[int, ...]:
        return resolve_milestones(self.milestones, self.data.pairs)

    @property
    def output_dir(self) -> str:
        return self.out_dir or f"out/{self.name}"


def resolve_milestones(m: MilestoneSpec, budget: int) -> tuple[int, ...]:
    """Milestones in pairs, ascending, all within the budget."""
    if m.pairs is not None:
        return tuple(sorted(set(m.pairs)))
    stop = m.stop_log2 if m.stop_log2 is not None else int(math.floor(math.log2(budget)))
    points = [2**k for k in range(m.start_log2, stop + 1)]
    if m.include_budget and (not points or points[-1] != budget) and budget > (points[-1] if points else 0):
        points.append(budget)
    return tuple(points)


@dataclass(frozen=True, kw_only=True)
class Resources:
    """What one cell asks the scheduler for (derived by the planner)."""

    gpu_type: str
    nodes: int
    gpus_per_node: int
    """Tasks per node (one per GPU; CPU processes for gpu_type cpu)."""
    cpus_per_task: int
    mem_gb_per_task: float | None
    time_limit_minutes: int
    zero_stage: int
    grad_accum: int
    """Micro-steps per optimizer step so that ranks × micro × accum ≥ global batch."""
    micro_batch_pairs: int | None = None
    """Pairs per rank per micro-step chosen by the planner (None: the train spec's number)."""
    step_seconds: float | None = None
    """Planned wall-clock of one optimizer step (compute + ZeRO communication)."""
    checkpoint_seconds: float | None = None
    """Planned seconds to save and verify one checkpoint of this cell: what a collective that waits
    on a save (the process-group timeout) must allow."""
    network_interface: str | None = None
    """The profile's `network_interface`: what the job exports as GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME."""

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One cell: everything a job needs to train and evaluate one reward model.

    `cell_id` hashes the fields that decide the result (sweep, model, data, pairs, milestones, train,
    eval, seed); resources and tracking only decide where and how fast, so a cell keeps its id (and
    its checkpoints) when moved to another cluster or tracking server.
    """

    sweep: str
    cell_id: str
    index: int
    model: ModelShape
    data: DataSpec
    pairs: int
    """This run's pairs budget (the largest milestone it evaluates)."""
    milestones: tuple[int, ...]
    train: TrainSpec
    eval: EvalSpec
    seed: int
    tracking: TrackingSpec
    resources: Resources
    out_dir: str
    """This cell's folder (checkpoints, logs, spool)."""

    IDENTITY_FIELDS: typing.ClassVar[tuple[str, ...]] = (
        "sweep", "model", "data", "pairs", "milestones", "train", "eval", "seed")

    def to_dict(self) -> dict:
        return to_plain(self)

    @property
    def micro_batch_pairs(self) -> int:
        """Pairs per rank per micro-step: the planner's choice, else the train spec's number."""
        m: int | str | None = self.resources.micro_batch_pairs
        if m is None:
            m = self.train.micro_batch_pairs
        if not isinstance(m, int):
            raise ValueError(f"cell {self.cell_id}: train.micro_batch_pairs is {m!r} and the resources carry "
                             "none (plan the sweep to resolve it)")
        return m

    def identity(self) -> dict:
        """The fields that decide the training result; `cell_id` is their hash."""
        return {k: (model_identity(self.model) if k == "model" else to_plain(getattr(self, k)))
                for k in self.IDENTITY_FIELDS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return build(cls, d, file="<runspec>")

    def flat_params(self) -> dict[str, str]:
        """Flattened `a.b.c` → value strings, for MLflow params."""
        out: dict[str, str] = {}

        def walk(prefix: str, v: Any) -> None:
            if isinstance(v, dict):
                for k, x in v.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), x)
            else:
                out[prefix] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)

        walk("", self.to_dict())
        out["model.params_non_embedding"] = str(self.model.params_non_embedding)
        out["data.pairs"] = str(self.pairs)
        return out


def model_identity(model: ModelShape) -> dict:
    """The model's part of a cell id: its shape and init, and where its weights come from — the base's
    name, not the folder it sits in on one cluster (a cell keeps its id when moved)."""
    d = to_plain(model)
    if model.base is not None and model.init == "pretrained":
        d.pop("path", None)
    if model.base is None and model.init in (None, "random"):
        d.pop("init", None)  # random init from a shape: the id it had before bases existed
        d.pop("base", None)
    return d


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def cell_id_of(identity: dict) -> str:
    """Short content hash: the same identity always gives the same id."""
    return cell_id_from_fragments({k: canonical_json(v) for k, v in identity.items()})


def cell_id_from_fragments(fragments: dict[str, str]) -> str:
    """`cell_id_of` from already-serialised values (the planner serialises shared parts once).

    Byte-identical to hashing `canonical_json(identity)`: keys sorted, no whitespace.
    """
    blob = "{" + ",".join(f"{json.dumps(k)}:{fragments[k]}" for k in sorted(fragments)) + "}"
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------
# generic conversion


def to_plain(obj: Any) -> Any:
    """Dataclasses → dicts, tuples → lists, recursively (JSON-ready)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


class _Ctx:
    def __init__(self, file: str | None, lines: dict[str, int]):
        self.file = file
        self.lines = lines

    def error(self, path: str, message: str) -> SpecError:
        line = self.lines.get(path)
        if line is None:  # fall back to the nearest enclosing field that has a line
            p = path
            while line is None and p:
                p = p.rsplit(".", 1)[0] if "." in p else (p.rsplit("[", 1)[0] if "[" in p else "")
                line = self.lines.get(p)
        return SpecError(message, file=self.file, path=path, line=line)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, ctx: _Ctx, meta: dict | None = None) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is ModelShape:
        return _model(value, path, ctx)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ctx.error(path, f"must not be null (expected {_type_name(tp)})")
        last: SpecError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path, ctx, meta)
            except SpecError as e:
                last = e
        assert last is not None
        raise last
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ctx.error(path, f"{value!r} is not one of {', '.join(repr(c) for c in choices)}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a mapping, got {type(value).__name__}")
        return _build(tp, value, path, ctx)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            if args and args[-1] is Ellipsis and isinstance(value, (str, int, float)):
                value = [value]
            else:
                raise ctx.error(path, f"expected a list, got {type(value).__name__}")
        if args and args[-1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", ctx, meta) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ctx.error(path, f"expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{path}[{i}]", ctx, meta) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a mapping, got {type(value).__name__}")
        return {str(k): _convert(vt, v, _join(path, str(k)), ctx) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            raise ctx.error(path, f"expected an integer, got {value!r}")
        value = int(value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(path, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ctx.error(path, f"must be finite, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {value!r}")
        return value
    if meta and isinstance(value, (int, float)):
        lo, strict, hi = meta.get("min"), meta.get("strict", False), meta.get("max")
        hi_strict = meta.get("max_strict", False)
        if lo is not None and (value <= lo if strict else value < lo):
            raise ctx.error(path, f"must be {'>' if strict else '≥'} {lo}, got {value}")
        if hi is not None and (value >= hi if hi_strict else value > hi):
            raise ctx.error(path, f"must be {'<' if hi_strict else '≤'} {hi}, got {value}")
    return value


def _build(cls: type, data: dict, path: str, ctx: _Ctx) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ctx.error(_join(path, str(key)),
                            f"unknown key {key!r}{hint} (valid: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name), ctx, dict(f.metadata))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.error(_join(path, name), "missing required field")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, SpecError):
            raise
        raise ctx.error(path, str(e)) from None


def _model(value: Any, path: str, ctx: _Ctx) -> ModelShape:
    if isinstance(value, ModelShape):
        return value
    if isinstance(value, str):
        try:
            return catalogue.get(value)
        except catalogue.UnknownModel as e:
            raise ctx.error(path, str(e)) from None
    if not isinstance(value, dict):
        raise ctx.error(path, f"expected a catalogue name or a mapping, got {value!r}")
    if "path" in value and set(value) <= {"name", "path"}:
        try:
            return catalogue.shape_from_checkpoint(value["path"], value.get("name"))
        except (OSError, ValueError) as e:
            raise ctx.error(_join(path, "path"), str(e)) from None
    if "name" in value and set(value) <= {"name", "init"} and isinstance(value["name"], str):
        shape = _model(value["name"], _join(path, "name"), ctx)
        if "init" in value:
            init = _convert(typing.get_type_hints(ModelShape)["init"], value["init"], _join(path, "init"), ctx)
            shape = dataclasses.replace(shape, init=init)
        return shape
    return _build(ModelShape, value, path, ctx)


def build(cls: type, data: dict, *, file: str | Path | None = None, lines: dict[str, int] | None = None) -> Any:
    """Convert a plain mapping into the dataclass `cls`, with named errors."""
    ctx = _Ctx(str(file) if file else None, lines or {})
    if not isinstance(data, dict):
        raise ctx.error("", f"expected a mapping at the top level, got {type(data).__name__}")
    return _build(cls, data, "", ctx)


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


def _line_map(node: yaml.Node, path: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            p = _join(path, str(k.value))
            out[p] = k.start_mark.line + 1
            _line_map(v, p, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            p = f"{path}[{i}]"
            out[p] = v.start_mark.line + 1
            _line_map(v, p, out)
    return out


def _no_duplicate_keys(node, file: Path, path: str = "") -> None:
    """A key given twice in one mapping is a SpecError naming it (YAML itself keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = str(k.value)
            where = f"{path}.{key}" if path else key
            if key in seen:
                raise SpecError(f"key given twice (first at line {seen[key]}); keep one", file=file, path=where,
                                line=k.start_mark.line + 1)
            seen[key] = k.start_mark.line + 1
            _no_duplicate_keys(v, file, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _no_duplicate_keys(v, file, f"{path}[{i}]")


MAX_YAML_NODES = 100_000
"""Most nodes a spec document may expand to once its aliases are followed: a sweep is a few hundred;
ten lines of nested aliases (`b: [*a, *a, …]`, a "billion laughs") expand to 10^9, which every walk
over the document (line map, duplicate keys, conversion) would spin on for ever."""


def _check_aliases(root: yaml.Node, file: Path) -> None:
    """Refuse a document whose aliases form a cycle or expand past MAX_YAML_NODES (named by line).

    Each distinct node is visited once (sizes are memoised), so the check itself is linear in the text."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = ([c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode) else
                    node.value if isinstance(node, yaml.SequenceNode) else [])
            size[key] = 1 + sum(size[id(c)] for c in kids)
            if size[key] > MAX_YAML_NODES:
                raise SpecError(f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes here (an alias bomb?); "
                                "write the values out or use fewer nested aliases", file=file,
                                line=node.start_mark.line + 1)
            continue
        if key in size:
            continue
        if key in on_path:
            raise SpecError("a YAML alias refers to a node that contains it (a recursive alias); a spec "
                            "must be a tree", file=file, line=node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            stack.extend((c, False) for kv in node.value for c in kv if id(c) not in size)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((c, False) for c in node.value if id(c) not in size)


def read_yaml(file: str | Path) -> tuple[Any, dict[str, int]]:
    """Parse a YAML file; syntax errors become SpecError with the line; so do text that is not UTF-8,
    recursive aliases, alias bombs and nesting too deep to walk."""
    p = Path(file)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read: {e.strerror}", file=p) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); a sweep or profile "
                        "is a UTF-8 YAML file", file=p, line=line) from None
    if "\x00" in text:
        raise SpecError("holds NUL bytes: a binary file, not YAML", file=p) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_aliases(node, p)
        _no_duplicate_keys(node, p)
        data = yaml.safe_load(text)
        lines = _line_map(node) if node is not None else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(f"YAML syntax error: {problem}", file=p,
                        line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise SpecError("nested too deeply to read (a spec is a few levels deep)", file=p) from None
    return data, lines


def load_cluster(file: str | Path) -> ClusterSpec:
    """Load a cluster profile (slurm/*.yaml)."""
    data, lines = read_yaml(file)
    return build(ClusterSpec, data or {}, file=file, lines=lines)


def load_sweep(file: str | Path, *, cluster: str | Path | None = None) -> SweepSpec:
    """Load and validate a sweep YAML; `cluster` overrides the file's cluster profile."""
    file = Path(file)
    data, lines = read_yaml(file)
    if not isinstance(data, dict):
        raise SpecError("expected a mapping at the top level", file=file)
    data = dict(data)
    ctx = _Ctx(str(file), lines)
    if cluster is not None:
        data["cluster"] = str(cluster)
    prof = data.get("cluster")
    if isinstance(prof, str):
        candidates = [Path(prof), file.parent / prof, file.parent.parent / prof]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ctx.error("cluster", f"profile file {prof!r} not found (looked in: "
                            f"{', '.join(str(c) for c in candidates)})")
        data["cluster"] = load_cluster(found)
    data_block = data.get("data")
    if isinstance(data_block, dict) and data_block.get("tokens_per_pair") is None and data_block.get("stats_file"):
        if not isinstance(data_block["stats_file"], str):
            raise ctx.error("data.stats_file", f"expected a file path, got {data_block['stats_file']!r}")
        sf = Path(data_block["stats_file"])
        sf = sf if sf.is_absolute() or sf.is_file() else file.parent / sf
        try:
            stats = json.loads(Path(sf).read_text())
            if not isinstance(stats, dict):
                raise ValueError(f"expected a JSON object, got {type(stats).__name__}")
            data["data"] = {**data_block, "tokens_per_pair": float(stats["tokens_per_pair"])}
        except (OSError, ValueError, KeyError, TypeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else (
                "no key 'tokens_per_pair'" if isinstance(e, KeyError) else str(e))
            raise ctx.error("data.stats_file", f"cannot read tokens_per_pair from {sf}: {why}") from None
    ev = data.get("eval")
    if isinstance(ev, dict) and isinstance(ev.get("extra"), dict) and "sets" not in ev:
        data["eval"] = {**ev, "sets": list(EVAL_SETS) + [n for n in ev["extra"] if n not in EVAL_SETS]}
    spec: SweepSpec = _build(SweepSpec, data, "", ctx)
    env_dir = os.environ.get("WPS_MODELS_DIR")
    if env_dir:  # the user's own models directory wins over the (shared) profile's
        spec = dataclasses.replace(spec, cluster=dataclasses.replace(spec.cluster, models_dir=env_dir))
    validate_sweep(spec, ctx)
    if spec.data.source == "synthetic":  # the old placeholder default: no data layer reads it
        raise ctx.error("data.source", "name the training pairs file (Parquet or JSONL); for the synthetic "
                        "forum run `wps data synth --out data/demo` and set data.source: data/demo/train.parquet")
    return spec


def validate_sweep(spec: SweepSpec, ctx: _Ctx | None = None) -> None:
    """Cross-field checks the types cannot express."""
    ctx = ctx or _Ctx(None, {})
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.name):
        raise ctx.error("name", f"{spec.name!r}: use letters, digits, '.', '_', '-'")
    if not spec.models:
        raise ctx.error("models", "at least one model is required")
    names = [m.name for m in spec.models]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ctx.error("models", f"duplicate model names: {', '.join(sorted(dup))}")
    if spec.data.tokens_per_pair is None:
        raise ctx.error("data.tokens_per_pair", "give tokens_per_pair or a stats_file that has it")
    ms = spec.milestones
    if ms.pairs is not None:
        if not ms.pairs:
            raise ctx.error("milestones.pairs", "must not be empty")
        for i, p in enumerate(ms.pairs):
            if p <= 0:
                raise ctx.error(f"milestones.pairs[{i}]", f"must be > 0, got {p}")
            if p > spec.data.pairs:
                raise ctx.error(f"milestones.pairs[{i}]",
                                f"{p} pairs is beyond the data budget data.pairs={spec.data.pairs}")
    else:
        if 2**ms.start_log2 > spec.data.pairs:
            raise ctx.error("milestones.start_log2",
                            f"2^{ms.start_log2} = {2**ms.start_log2} pairs is beyond the data budget "
                            f"data.pairs={spec.data.pairs}")
        if ms.stop_log2 is not None:
            if 2**ms.stop_log2 > spec.data.pairs:
                raise ctx.error("milestones.stop_log2",
                                f"2^{ms.stop_log2} = {2**ms.stop_log2} pairs is beyond the data budget "
                                f"data.pairs={spec.data.pairs}")
            if ms.stop_log2 < ms.start_log2:
                raise ctx.error("milestones.stop_log2", "must be ≥ start_log2")
    if spec.mode == "milestones" and spec.train.schedule != "constant":
        raise ctx.error("train.schedule",
                        f"{spec.train.schedule!r} decays towards one budget; milestone mode needs "
                        "'constant' (use mode: grid for decaying schedules)")
    first = min(spec.milestone_pairs())
    if first < spec.train.global_batch_pairs:
        field_ = "milestones.pairs" if ms.pairs is not None else "milestones.start_log2"
        raise ctx.error(field_, f"first milestone {first} pairs is less than one optimizer step "
                        f"(train.global_batch_pairs={spec.train.global_batch_pairs})")
    if isinstance(spec.train.micro_batch_pairs, int) and spec.train.micro_batch_pairs > spec.train.global_batch_pairs:
        raise ctx.error("train.micro_batch_pairs", "must be ≤ train.global_batch_pairs")
    known = set(EVAL_SETS) | set(spec.eval.extra)
    for name in spec.eval.extra:
        if name not in spec.eval.sets:
            raise ctx.error(f"eval.extra.{name}", f"registered but not in eval.sets, so it would be neither listed "
                            f"nor scored: add {name!r} to eval.sets (or leave eval.sets out: the 12 WorldPM sets "
                            "plus every extra set)")
    for i, s in enumerate(spec.eval.sets):
        if s not in known:
            close = difflib.get_close_matches(s, sorted(known), n=1)
            raise ctx.error(f"eval.sets[{i}]", f"unknown eval set {s!r}"
                            + (f"; did you mean {close[0]!r}?" if close else "")
                            + f" (valid: {', '.join(sorted(known))})")
    if not spec.seeds:
        raise ctx.error("seeds", "at least one seed is required (one cell per model and seed)")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise ctx.error("seeds", "duplicate seeds")
    if not spec.eval.sets:
        raise ctx.error("eval.sets", "at least one eval set is required: a milestone is a point of an eval curve "
                        "(leave eval.sets out for the 12 WorldPM sets)")
