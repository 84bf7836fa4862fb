"""Model catalogue: transformer shapes and the parameter counts computed from them.

The paper trains reward models on Qwen2.5 bases 1.5B, 7B and 72B (arXiv 2505.10527, abstract and the
experimental setup of §2); the whole family is listed so sweeps can interpolate. Shapes are the
`config.json` values of the released Qwen2.5 base checkpoints; tests check the counts computed here
against the totals the Qwen2.5 model cards publish. Tiny shapes train on a CPU for demos and tests.

Counts are of the *language model* (embedding, decoder layers, final norm, LM head when untied),
matching the published numbers. A reward model drops the LM head and adds a small scalar head; the
planner uses `params_non_embedding`, which is the same for both.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """A Qwen2-architecture decoder: the numbers that fix its size and compute."""

    name: str
    """Catalogue name (`qwen2.5-7b`, `tiny-s`, …) or a user-chosen label for an explicit shape."""
    hidden: int
    """Hidden size d."""
    layers: int
    """Number of decoder layers L."""
    heads: int
    """Attention (query) heads; head_dim = hidden / heads."""
    kv_heads: int
    """Key/value heads (grouped-query attention)."""
    intermediate: int
    """SwiGLU MLP inner size."""
    vocab: int
    """Vocabulary size of the embedding (and LM head)."""
    tie_embeddings: bool = False
    """Whether the LM head shares the embedding matrix (Qwen2.5 ≤ 3B do)."""
    max_positions: int = 32768
    """Largest position the rotary embedding is configured for."""
    rope_theta: float = 1_000_000.0
    """RoPE base (Qwen2.5 uses 1e6)."""
    path: str | None = None
    """A local checkpoint directory to start from (`from_pretrained`); None = random init."""
    base: str | None = None
    """Folder name of the released base checkpoint this shape is (`Qwen2.5-7B`), looked up under the
    cluster's models directory; None = no released base (tiny CPU shapes)."""
    init: Literal["pretrained", "random"] | None = None
    """`pretrained` (from `path`), `random`, or None = decided by the sweep (SweepSpec.init)."""

    def __post_init__(self) -> None:
        for f in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab", "max_positions"):
            if getattr(self, f) <= 0:
                raise ValueError(f"{f} must be positive, got {getattr(self, f)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be divisible by kv_heads ({self.kv_heads})")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @functools.cached_property  # a frozen shape's counts never change; the planner asks often
    def params_per_layer(self) -> int:
        """One decoder layer: q/k/v with bias, o without, SwiGLU MLP, two RMSNorms."""
        d, kv = self.hidden, self.kv_heads * self.head_dim
        attention = (d * d + d) + 2 * (d * kv + kv) + d * d
        mlp = 3 * d * self.intermediate
        norms = 2 * d
        return attention + mlp + norms

    @functools.cached_property  # a frozen shape's counts never change; the planner asks often
    def params_embedding(self) -> int:
        """Input embedding plus the LM head when it is a separate matrix."""
        emb = self.vocab * self.hidden
        return emb if self.tie_embeddings else 2 * emb

    @functools.cached_property  # a frozen shape's counts never change; the planner asks often
    def params_non_embedding(self) -> int:
        """N in C = 6·N·D: decoder layers and the final norm."""
        return self.layers * self.params_per_layer + self.hidden

    @functools.cached_property  # a frozen shape's counts never change; the planner asks often
    def params_total(self) -> int:
        return self.params_non_embedding + self.params_embedding

    @functools.cached_property  # a frozen shape's counts never change; the planner asks often
    def params_reward_model(self) -> int:
        """Parameters a reward model holds: embedding, decoder, and the WorldPM MLP head h→h→1."""
        head = self.hidden * self.hidden + self.hidden + self.hidden + 1
        return self.vocab * self.hidden + self.params_non_embedding + head

    def to_hf_config(self) -> dict:
        """Keyword arguments for `transformers.Qwen2Config` that build this shape."""
        return {
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "intermediate_size": self.intermediate,
            "vocab_size": self.vocab,
            "tie_word_embeddings": self.tie_embeddings,
            "max_position_embeddings": self.max_positions,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": 1e-6,
            "hidden_act": "silu",
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _qwen(name: str, hidden: int, layers: int, heads: int, kv: int, inter: int, vocab: int, tied: bool) -> ModelShape:
    base = "Qwen2.5-" + name.split("-", 1)[1].upper()  # the Hugging Face repo's folder name: Qwen2.5-7B
    return ModelShape(
        name=name,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv,
        intermediate=inter,
        vocab=vocab,
        tie_embeddings=tied,
        max_positions=131072,
        base=base,
    )


# Qwen2.5 base shapes: config.json of Qwen/Qwen2.5-{size} (hidden_size, num_hidden_layers,
# num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, tie_word_embeddings).
# The paper uses 1.5B, 7B and 72B (arXiv 2505.10527, abstract: "models ranging from 1.5B to 72B").
QWEN25: dict[str, ModelShape] = {
    s.name: s
    for s in (
        _qwen("qwen2.5-0.5b", 896, 24, 14, 2, 4864, 151936, True),
        _qwen("qwen2.5-1.5b", 1536, 28, 12, 2, 8960, 151936, True),
        _qwen("qwen2.5-3b", 2048, 36, 16, 2, 11008, 151936, True),
        _qwen("qwen2.5-7b", 3584, 28, 28, 4, 18944, 152064, False),
        _qwen("qwen2.5-14b", 5120, 48, 40, 8, 13824, 152064, False),
        _qwen("qwen2.5-32b", 5120, 64, 40, 8, 27648, 152064, False),
        _qwen("qwen2.5-72b", 8192, 80, 64, 8, 29568, 152064, False),
    )
}

# Published totals and non-embedding counts from the Qwen2.5 model cards ("Number of Parameters:
# X; Number of Parameters (Non-Embedding): Y"), in billions, for the tests.
QWEN25_PUBLISHED_B: dict[str, tuple[float, float]] = {
    "qwen2.5-0.5b": (0.49, 0.36),
    "qwen2.5-1.5b": (1.54, 1.31),
    "qwen2.5-3b": (3.09, 2.77),
    "qwen2.5-7b": (7.61, 6.53),
    "qwen2.5-14b": (14.7, 13.1),
    "qwen2.5-32b": (32.5, 31.0),
    "qwen2.5-72b": (72.7, 70.0),
}

# Tiny shapes for CPU demos and tests: same architecture, small vocabulary (the demo's BPE is
# trained here with `tokenizers`), tied embeddings. Roughly 1 M … 36 M parameters in all.
TINY: dict[str, ModelShape] = {
    s.name: s
    for s in (
        # The demo's smallest (width 24): below tiny-xxs, so both of the demo's smaller sizes sit under the
        # width at which the objective lookup starts to be learned within its budget (bench/results/
        # objective_onset.txt, lever 19).
        ModelShape(
            name="tiny-xxxs",
            hidden=24,
            layers=2,
            heads=2,
            kv_heads=1,
            intermediate=96,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        ModelShape(
            name="tiny-xxs",
            hidden=32,
            layers=2,
            heads=2,
            kv_heads=1,
            intermediate=128,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        ModelShape(
            name="tiny-xs",
            hidden=64,
            layers=2,
            heads=4,
            kv_heads=2,
            intermediate=256,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        ModelShape(
            name="tiny-s",
            hidden=128,
            layers=4,
            heads=4,
            kv_heads=2,
            intermediate=512,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        # tiny-s at the depth of tiny-xxs/xs: the demo's ladder grows width only (32 → 64 → 128, 2 layers),
        # as Qwen2.5-1.5B → 7B keeps 28 layers; with one LR its extra width, not depth, is what lets it
        # learn the objective lookup within the demo's budget (bench/results/objective_onset.txt, lever 7).
        ModelShape(
            name="tiny-s-2l",
            hidden=128,
            layers=2,
            heads=4,
            kv_heads=2,
            intermediate=512,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        # The demo's largest (width 96, 2 layers, head dim 16): with the demo's one LR and batch it learns the
        # objective lookup by 2^13 pairs in 7 of 8 seeds, where tiny-s-2l (width 128) does in 4 of 8
        # (bench/results/objective_onset.txt, levers 18-19).
        ModelShape(
            name="tiny-sm",
            hidden=96,
            layers=2,
            heads=6,
            kv_heads=2,
            intermediate=384,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        ModelShape(
            name="tiny-m",
            hidden=256,
            layers=6,
            heads=8,
            kv_heads=2,
            intermediate=1024,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        ModelShape(
            name="tiny-l",
            hidden=512,
            layers=8,
            heads=8,
            kv_heads=4,
            intermediate=2048,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        # Head dim 64 (128 / 2 heads), which vLLM's CPU and GPU attention both serve: the shape of the
        # serving tests (docs/interop.md, vLLM); the demo's shapes have head dim 12-16, which vLLM's CPU build refuses.
        ModelShape(
            name="tiny-serve",
            hidden=128,
            layers=2,
            heads=2,
            kv_heads=1,
            intermediate=512,
            vocab=8192,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
        # The trainer benchmark's model (hidden 128, 4 layers, vocab 32000), see bench/.
        ModelShape(
            name="bench-qwen2",
            hidden=128,
            layers=4,
            heads=4,
            kv_heads=2,
            intermediate=512,
            vocab=32000,
            tie_embeddings=True,
            max_positions=4096,
            rope_theta=10000.0,
        ),
    )
}

CATALOGUE: dict[str, ModelShape] = {**QWEN25, **TINY}


class UnknownModel(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown model {self.name!r}; valid: {', '.join(CATALOGUE)}"


def get(name: str) -> ModelShape:
    """The catalogue shape called `name` (case-insensitive)."""
    try:
        return CATALOGUE[name.lower()]
    except KeyError:
        raise UnknownModel(name) from None


class NotAQwen2Checkpoint(ValueError):
    """A `models: [{path: DIR}]` folder that is not a Qwen2-architecture HF checkpoint (no folder, no
    config.json, another `model_type`, no weights); names the folder or file and the field."""


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""What `save_pretrained` writes for the weights: one file, or an index over shards."""


def shape_from_checkpoint(path: str | Path, name: str | None = None) -> ModelShape:
    """Read a local HF checkpoint's config.json into a shape that starts from those weights.

    Any folder `save_pretrained` wrote for a Qwen2-architecture model (`model_type: qwen2`: Qwen2,
    Qwen2.5, and the WorldPM-format reward models `wps export` writes) is accepted; shape and
    parameter counts come from its config.json, never from the weights. See docs/interop.md."""
    p = Path(path)
    if not p.is_dir():
        raise NotAQwen2Checkpoint(f"{p}: no such checkpoint folder")
    cfg_file = p / "config.json"
    if not cfg_file.is_file():
        raise NotAQwen2Checkpoint(
            f"{cfg_file}: no config.json in the checkpoint folder (expected a folder written by save_pretrained)"
        )
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as e:
        raise NotAQwen2Checkpoint(f"{cfg_file}: not readable JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("model_type") != "qwen2":
        got = cfg.get("model_type") if isinstance(cfg, dict) else None
        arch = cfg.get("architectures") if isinstance(cfg, dict) else None
        raise NotAQwen2Checkpoint(
            f"{cfg_file}: model_type {got!r} (architectures {arch}) is not a Qwen2 "
            "model; only model_type 'qwen2' checkpoints (Qwen2, Qwen2.5) are supported"
        )
    if not any((p / f).is_file() for f in WEIGHT_FILES):
        raise NotAQwen2Checkpoint(f"{p}: no weights ({' / '.join(WEIGHT_FILES)})")
    try:
        return ModelShape(
            name=name or p.name,
            hidden=cfg["hidden_size"],
            layers=cfg["num_hidden_layers"],
            heads=cfg["num_attention_heads"],
            kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
            intermediate=cfg["intermediate_size"],
            vocab=cfg["vocab_size"],
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_positions=cfg.get("max_position_embeddings", 32768),
            rope_theta=float(cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
            path=str(p),
        )
    except KeyError as e:
        raise NotAQwen2Checkpoint(f"{cfg_file}: missing key {e.args[0]!r}") from None


SHAPE_FIELDS = ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab", "tie_embeddings")
"""What a base's config.json must agree on with the catalogue (they fix the parameter count)."""


def base_folder(shape: ModelShape, models_dir: str | Path | None) -> Path | None:
    """`<models_dir>/<base>` for a shape with a released base, None when either is unknown."""
    if shape.base is None or not models_dir:
        return None
    return Path(models_dir).expanduser() / shape.base


def check_base(shape: ModelShape) -> str | None:
    """Why `shape` cannot start from its checkpoint folder (`shape.path`), or None when it can.

    Reads the folder's config.json (through `shape_from_checkpoint`, which also wants a Qwen2
    model_type and a weights file) and compares the fields that fix the shape; it does not open the
    weights (a 72B base is ~145 GB)."""
    if shape.init != "pretrained":
        return None
    if not shape.path:
        return (
            f"{shape.name}: starts from the pretrained base {shape.base or '?'} but no models directory "
            f"is set (cluster.models_dir in the profile, or $WPS_MODELS_DIR)"
        )
    folder = Path(shape.path)
    if not folder.is_dir():
        return f"{shape.name}: base checkpoint folder {folder} does not exist"
    try:
        found = shape_from_checkpoint(folder, shape.name)
    except (OSError, ValueError) as e:
        return f"{shape.name}: {e}"
    diff = [
        f"{f} {getattr(found, f)} (catalogue {getattr(shape, f)})"
        for f in SHAPE_FIELDS
        if getattr(found, f) != getattr(shape, f)
    ]
    if diff:
        return f"{shape.name}: {folder / 'config.json'} disagrees with the catalogue shape: " + ", ".join(diff)
    return None


def missing_bases(runs) -> dict[str, str]:
    """Cell id → why its pretrained base cannot be loaded, for cells (anything with `cell_id` and
    `model`, e.g. a plan's RunSpecs); each distinct folder's config.json is read once."""
    why: dict[tuple, str | None] = {}
    out: dict[str, str] = {}
    for r in runs:
        key = (r.model.name, r.model.path, r.model.init)
        if key not in why:
            why[key] = check_base(r.model)
        reason = why[key]
        if reason:
            out[r.cell_id] = reason
    return out
