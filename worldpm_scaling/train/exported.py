"""An exported WorldPM-format folder read back: whether a folder is one, its weights, and its reward
head put on a sweep's model (a `models: [{path: EXPORTED}]` sweep fine-tunes the reward model rather
than a fresh head). Apart from train/export.py, which writes such folders, so that building a model
(train/model.py) does not depend on the writer."""

from __future__ import annotations

import json
from pathlib import Path

import torch

MODEL_CLASS = "Qwen2ForRewardModel"


class ExportError(ValueError):
    """Bad export input: no such checkpoint/step, an output folder in the way, weights that are not a
    reward model's, an exported head that does not match the sweep's; names the file or option."""


def is_exported(path: str | Path) -> bool:
    """Whether `path` is a WorldPM-format reward model folder (its config names the reward class)."""
    f = Path(path) / "config.json"
    try:
        cfg = json.loads(f.read_text())
    except (OSError, ValueError):
        return False
    return MODEL_CLASS in (cfg.get("architectures") or [])


def read_exported_weights(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named `prefix`* of an exported folder (sharded or not), reading only the files that hold them."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({f for k, f in json.loads(index.read_text())["weight_map"].items() if k.startswith(prefix)})
    else:
        files = ["model.safetensors"]
    out = {}
    for f in files:
        if not (folder / f).is_file():
            raise ExportError(f"{folder / f}: weights file missing")
        with safe_open(str(folder / f), "pt") as st:  # only the prefixed tensors (a head: not the backbone)
            out.update({k: st.get_tensor(k) for k in st.keys() if k.startswith(prefix)})
    return out


def load_exported_head(model, path: str | Path, head: str) -> bool:
    """Put the head of the exported folder `path` on `model` (a RewardModel) when `path` is one;
    False (untouched) for a plain base checkpoint. A head of another kind than `train.head` is an
    ExportError naming both."""
    folder = Path(path)
    if not is_exported(folder):
        return False
    cfg = json.loads((folder / "config.json").read_text())
    kind = cfg.get("reward_head", "mlp")
    if kind != head:
        raise ExportError(f"{folder / 'config.json'}: reward_head {kind!r}, but the sweep's train.head is {head!r}")
    sd = {k[len("score.") :]: v for k, v in read_exported_weights(folder, "score.").items()}
    if not sd:
        raise ExportError(f"{folder}: no score.* (reward head) weights")
    params = list(model.head.parameters())
    if any(hasattr(q, "ds_id") for q in params):  # built partitioned under deepspeed.zero.Init (ZeRO-3)
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            _set_head(model, sd, folder)
    else:
        _set_head(model, sd, folder)
    return True


def _set_head(model, sd: dict[str, torch.Tensor], folder: Path) -> None:
    own = model.head.state_dict()
    if set(own) != set(sd) or any(own[k].shape != sd[k].shape for k in own):
        raise ExportError(
            f"{folder}: score.* weights {sorted((k, tuple(v.shape)) for k, v in sd.items())} do not "
            f"fit the sweep's head {sorted((k, tuple(v.shape)) for k, v in own.items())}"
        )
    with torch.no_grad():
        for name, q in model.head.named_parameters():
            q.copy_(sd[name].to(q.dtype))
