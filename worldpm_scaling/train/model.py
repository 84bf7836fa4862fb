"""The reward model: a Qwen2 decoder and a scalar head on the last token of each reply.

The head is WorldPM's released design, Linear(h, h) → ReLU → Linear(h, 1) (docs/paper_constants.md,
"Reward head"; arXiv 2505.10527 §2.1 describes a scalar head on the final token), or a single
Linear(h, 1). The loss is Bradley–Terry: −log σ(r_chosen − r_rejected) (arXiv 2505.10527, §2).
The chat format (data/chat.py: Qwen template, empty system prompt) is applied when pairs are
tokenized, so the last token of each reply is the reward token `train.reward_token` names:
`<|endoftext|>` by default (the released WorldPM models'), or `<|im_end|>`.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import ModelShape
from . import attention
from .collate import Batch
from .exported import load_exported_head

if TYPE_CHECKING:  # transformers loads when a model is built
    from transformers import PreTrainedModel

HEADS = ("mlp", "linear")


class RewardModel(nn.Module):
    def __init__(self, backbone: PreTrainedModel, hidden: int, head: str = "mlp"):
        super().__init__()
        self.backbone: PreTrainedModel = backbone
        self.hf_ds_config: object | None = None
        """transformers' HfDeepSpeedConfig under ZeRO-3, kept alive with the model (build_model)."""
        self.head: nn.Module
        if head == "mlp":
            self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        elif head == "linear":
            self.head = nn.Linear(hidden, 1)
        else:
            raise ValueError(f"train.head must be one of {HEADS}, got {head!r}")

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        reward_index: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        segments: list | None = None,
    ) -> torch.Tensor:
        """Rewards (float32) at `reward_index` = (row, position) pairs, shape (n, 2)."""
        kw = {"wps_segments": segments} if segments is not None else {}
        h = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, **kw
        ).last_hidden_state
        last = h[reward_index[:, 0], reward_index[:, 1]]
        return self.head(last).squeeze(-1).float()

    def rewards(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_chosen, r_rejected) for a collated batch."""
        r = self(b.input_ids, b.position_ids, b.reward_index, b.attention_mask, b.segments)
        return r[: b.pairs], r[b.pairs :]


def build_model(
    shape: ModelShape,
    *,
    head: str = "mlp",
    seed: int = 0,
    dtype=torch.float32,
    device: str | torch.device | None = None,
    zero3_config: dict | None = None,
) -> RewardModel:
    """Random init from the shape (seeded), or the base weights of a local checkpoint (`shape.path`).

    Built where it will train, in the training dtype: no rank ever holds the full fp32 model.
    - `zero3_config` (a ZeRO-3 DeepSpeed config): created already partitioned, one parameter at a
      time (`_build_zero3`): the backbone is laid out on the meta device, then each parameter is
      materialised on rank 0 (its seeded init, or its tensor read alone from the checkpoint's
      safetensors), broadcast and partitioned before the next one exists, so a rank's build peak is its
      partition plus about one parameter. The head is built under `deepspeed.zero.Init`. The returned
      model keeps a transformers `HfDeepSpeedConfig` (`model.hf_ds_config`) alive for as long as the
      model lives, so transformers treats it as a ZeRO-3 model. A checkpoint without safetensors
      weights is loaded by `from_pretrained` under `deepspeed.zero.Init` instead.
    - otherwise: built directly on `device` (e.g. cuda:LOCAL_RANK) in `dtype`.
    Random init is the same function of `seed` either way (`seeded_init` for the backbone, then the
    head from a reseed), so a ZeRO-3 run starts from the weights a single process would.
    """

    import transformers

    if shape.init == "pretrained" and not shape.path:  # never train a paper size from random init by accident
        raise ValueError(
            f"model {shape.name}: starts from the pretrained base {shape.base} but no folder is set "
            "(cluster.models_dir or $WPS_MODELS_DIR; docs/pretrained_bases.md)"
        )
    impl = attention.register()
    if zero3_config is not None and (not shape.path or _safetensors_files(shape.path) is not None):
        model = _build_zero3(shape, head=head, seed=seed, dtype=dtype, impl=impl, zero3_config=zero3_config)
    else:
        keep = None
        place: contextlib.AbstractContextManager[Any]
        if zero3_config is not None:  # a .bin checkpoint: transformers' own ZeRO-3 loading
            import deepspeed
            from transformers.integrations import HfDeepSpeedConfig

            keep = HfDeepSpeedConfig(zero3_config)  # must outlive construction (a weakref global in transformers)
            place = contextlib.nullcontext()
            head_ctx = deepspeed.zero.Init(config_dict_or_path=zero3_config)
        else:
            place = torch.device(device) if device is not None else contextlib.nullcontext()
            head_ctx = contextlib.nullcontext()
        torch.manual_seed(seed)
        if shape.path:
            kw = (
                {"device_map": {"": torch.device(device)}}
                if (zero3_config is None and device is not None and torch.device(device).type == "cuda")
                else {}
            )
            backbone = transformers.AutoModel.from_pretrained(
                shape.path, local_files_only=True, dtype=dtype, attn_implementation=impl, **kw
            )
        else:
            cfg = transformers.Qwen2Config(**shape.to_hf_config())
            with place:
                backbone = transformers.Qwen2Model._from_config(cfg, dtype=dtype, attn_implementation=impl)
            seeded_init(backbone, std=cfg.initializer_range, seed=seed, padding_idx=cfg.pad_token_id)
        torch.manual_seed(seed + 1)
        with place, head_ctx:
            model = RewardModel(backbone, shape.hidden, head)
        if zero3_config is None:
            model.head.to(dtype)
        model.hf_ds_config = keep
    if shape.path:  # an exported WorldPM-format folder brings its reward head too (train/export.py)
        load_exported_head(model, shape.path, head)
    return model


def _build_zero3(shape: ModelShape, *, head: str, seed: int, dtype, impl: str, zero3_config: dict) -> RewardModel:
    """The reward model created partitioned, parameter by parameter (see `build_model`). Rank 0 makes
    each value (the same draws, in the same order, as `seeded_init`, or the checkpoint's tensor cast to
    `dtype`); DeepSpeed's conversion broadcasts it from rank 0 and keeps only this rank's partition."""
    import deepspeed
    import transformers
    from deepspeed.accelerator import get_accelerator
    from transformers.integrations import HfDeepSpeedConfig

    if shape.path:
        cfg = transformers.AutoConfig.from_pretrained(shape.path, local_files_only=True)
        cls = transformers.AutoModel._model_mapping[type(cfg)]
    else:
        cfg = transformers.Qwen2Config(**shape.to_hf_config())
        cls = transformers.Qwen2Model
    cfg._attn_implementation = impl
    with torch.device("meta"):  # shapes only: no memory, no init
        backbone = cls(cfg)
    rotary = getattr(backbone, "rotary_emb", None)
    if rotary is not None:  # its buffers (inv_freq) are computed, not loaded: build them for real, where
        with torch.device(get_accelerator().current_device_name()):  # zero.Init would have (cuda:LOCAL_RANK)
            backbone.rotary_emb = type(rotary)(config=cfg)
    keep = HfDeepSpeedConfig(zero3_config)  # must outlive the model (a weakref global in transformers)
    torch.manual_seed(seed + 1)
    # dtype from the config's bf16 flag (an explicit dtype= is misread on a CPU accelerator by
    # DeepSpeed 0.19's operator precedence and becomes bf16)
    with deepspeed.zero.Init(config_dict_or_path=zero3_config):
        model = RewardModel(torch.nn.Identity(), shape.hidden, head)
    model.backbone = backbone  # (the attribute keeps its place: named_parameters still starts with it)
    anchor = next(model.head.parameters())  # a ZeRO-3 parameter: its conversion partitions the others
    writer = deepspeed.comm.get_rank() == 0
    trim, freed = _malloc_trim(), 0
    values = (
        _CheckpointReader(shape.path)
        if shape.path
        else _SeededValues(std=cfg.initializer_range, seed=seed, padding_idx=cfg.pad_token_id)
    )
    with torch.no_grad(), values:
        for mod_name, mod in backbone.named_modules():
            for p_name, p in list(mod.named_parameters(recurse=False)):
                name = f"{mod_name}.{p_name}" if mod_name else p_name
                size = tuple(p.shape)
                freed += p.numel() * p.element_size()
                value = values(name, size) if writer else None
                # the other ranks receive rank 0's value by broadcast into this buffer
                t = value.to(dtype) if value is not None else torch.empty(size, dtype=dtype)
                del value
                q = torch.nn.Parameter(t, requires_grad=p.requires_grad)
                del t
                setattr(mod, p_name, q)
                anchor.convert_to_zero_parameters([q])  # type: ignore[attr-defined]  # DeepSpeed adds it to ZeRO-3 parameters at runtime
                del q
                if freed >= 64 << 20:  # give the full-size transients back (every 64 MiB: trimming is slow)
                    trim()
                    freed = 0
    left = [n for n, t in [*backbone.named_parameters(), *backbone.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"model {shape.name}: tensors left unmaterialised after the ZeRO-3 build: {left[:5]}")
    model.hf_ds_config = keep
    return model


def _malloc_trim():
    """glibc's malloc_trim(0) (returns freed heap pages to the OS), or a no-op where there is none. Without
    it the freed full-size transients stay in the heap, fragmented between the kept partitions."""
    import ctypes
    import ctypes.util

    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: fn(0)


class _SeededValues:
    """`seeded_init`'s values, one parameter at a time, in named_parameters order."""

    def __init__(self, *, std: float, seed: int, padding_idx: int | None):
        self.std, self.padding_idx = std, padding_idx
        self.g = torch.Generator().manual_seed(seed)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, name: str, shape: tuple) -> torch.Tensor:
        return _seeded_value(name, shape, self.g, self.std, self.padding_idx)


def _seeded_value(name: str, shape: tuple, g: torch.Generator, std: float, padding_idx: int | None) -> torch.Tensor:
    if "norm" in name:
        return torch.ones(shape)
    if name.endswith(".bias"):
        return torch.zeros(shape)
    value = torch.randn(shape, generator=g)
    value.mul_(std)  # (in place: the same rounding as `randn * std`, without a second full tensor)
    if name.endswith("embed_tokens.weight") and padding_idx is not None:
        value[padding_idx] = 0
    return value


_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _safetensors_files(path: str | Path) -> list[Path] | None:
    """The safetensors weight files of a checkpoint folder (sharded or not), or None when it has none."""
    import json

    folder = Path(path)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    single = folder / "model.safetensors"
    return [single] if single.is_file() else None


class _CheckpointReader:
    """A checkpoint's tensors read one at a time with plain file reads (no mmap: a mapped file's touched
    pages would stay in this process's RSS until it is closed). `reader(name, shape)` is the backbone
    parameter `name` (stored as `name` or, from a *ForCausalLM / reward-model folder, `model.name`)."""

    def __init__(self, path: str | Path) -> None:
        import json
        import struct

        self.path = path
        files = _safetensors_files(path)
        if files is None:
            raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json")
        self.files = files
        self.where: dict[str, tuple[Path, dict[str, Any], int]] = {}  # tensor name → (file, header entry, data start)
        for f in self.files:
            if not f.is_file():
                raise FileNotFoundError(f"{f}: weights file missing")
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
            for k, v in header.items():
                if k != "__metadata__":
                    self.where[k] = (f, v, 8 + n)
        self.handles: dict[Path, io.BufferedReader] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fh in self.handles.values():
            fh.close()
        self.handles.clear()
        return False

    def __call__(self, name: str, shape: tuple) -> torch.Tensor:
        key = name if name in self.where else f"model.{name}"
        if key not in self.where:
            raise ValueError(f"{self.path}: no weight {name!r} in {', '.join(f.name for f in self.files)}")
        f, entry, base = self.where[key]
        if tuple(entry["shape"]) != shape or entry["dtype"] not in _ST_DTYPES:
            raise ValueError(f"{f}: weight {key!r} is {entry['dtype']} {entry['shape']}, the model needs {list(shape)}")
        start, end = entry["data_offsets"]
        fh = self.handles.get(f) or self.handles.setdefault(f, open(f, "rb"))
        raw = torch.empty(end - start, dtype=torch.uint8)
        fh.seek(base + start)
        if end > start and fh.readinto(raw.numpy().data) != end - start:
            raise ValueError(f"{f}: weight {key!r} is truncated")
        return raw.view(_ST_DTYPES[entry["dtype"]]).reshape(shape)


def seeded_init(backbone: nn.Module, *, std: float, seed: int, padding_idx: int | None = None) -> None:
    """Qwen2's init (weights N(0, std), biases 0, norms 1 — transformers' Qwen2 `_init_weights`) drawn
    parameter by parameter from one CPU generator seeded with `seed`, so the values depend on the
    seed only: not on the device, on how construction consumed the global RNG, or on whether the
    model is ZeRO-3 partitioned (`_build_zero3` draws the same values in the same order)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            p.copy_(_seeded_value(name, tuple(p.shape), g, std, padding_idx))


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley–Terry loss −log σ(r_c − r_r)."""
    return -F.logsigmoid(r_chosen - r_rejected)


def bt_metrics(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> dict[str, float]:
    """Mean BT loss, accuracy (r_c > r_r) and margin (r_c − r_r) of a set of pairs."""
    d = (r_chosen - r_rejected).detach().float()
    return {"loss": float(-F.logsigmoid(d).mean()), "acc": float((d > 0).float().mean()), "margin": float(d.mean())}
