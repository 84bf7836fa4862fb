"""Typed specs: what a sweep YAML may say. Every spec is a frozen, kw-only dataclass whose field
docstrings are the documentation; the field metadata (ranges, choices) is what the converter checks."""

from __future__ import annotations

import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..models import ModelShape
from ..names import EVAL_SETS
from .convert import build, to_plain
from .identity import model_identity


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
        from ..track.credentials import refuse_secret_in_uri

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
        "sweep",
        "model",
        "data",
        "pairs",
        "milestones",
        "train",
        "eval",
        "seed",
    )

    def to_dict(self) -> dict:
        return to_plain(self)

    @property
    def micro_batch_pairs(self) -> int:
        """Pairs per rank per micro-step: the planner's choice, else the train spec's number."""
        m: int | str | None = self.resources.micro_batch_pairs
        if m is None:
            m = self.train.micro_batch_pairs
        if not isinstance(m, int):
            raise ValueError(
                f"cell {self.cell_id}: train.micro_batch_pairs is {m!r} and the resources carry "
                "none (plan the sweep to resolve it)"
            )
        return m

    def identity(self) -> dict:
        """The fields that decide the training result; `cell_id` is their hash."""
        return {
            k: (model_identity(self.model) if k == "model" else to_plain(getattr(self, k)))
            for k in self.IDENTITY_FIELDS
        }

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
