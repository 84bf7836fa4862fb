"""Scoring files with an exported reward model (`wps score`): the HF path or vLLM, same tokens.

The folder's own chat template renders each conversation (ending with the reward token the folder
records in config.json `reward_token`), and the reward is read at that token: by the folder's model
class on the HF backend (torch + transformers, the code `wps export` ships), or from vLLM's per-token
rewards (`runner="pooling"`, token_classify) on the vLLM backend, which runs in its own interpreter
(vLLM pins its own transformers; `vllm_worker.py` is the script it runs). Inputs are streamed in
batches (read by score_input.py); a malformed row is a ScoreError naming the file and line (or row),
and --out is written (by rename) only once every row is scored.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .exported import is_exported
from .score_input import ScoreError, count_rows, input_kind, iter_items

if TYPE_CHECKING:  # transformers loads when a folder is opened
    from transformers import PreTrainedTokenizerBase

# -- the model folder ----------------------------------------------------------------------------


@dataclass
class Folder:
    """An exported folder's tokenizer and what it says about the reward token."""

    path: Path
    tok: PreTrainedTokenizerBase
    reward_token: str
    reward_id: int
    config: dict = field(default_factory=dict)

    @classmethod
    def open(cls, path: str | Path) -> "Folder":
        from transformers import AutoTokenizer

        p = Path(path)
        if not is_exported(p):
            raise ScoreError(
                f"{p}: not a WorldPM-format reward model folder (no config.json naming "
                "Qwen2ForRewardModel); write one with `wps export SWEEP --cell ID --out DIR`"
            )
        cfg = json.loads((p / "config.json").read_text())
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        if not getattr(tok, "chat_template", None):
            raise ScoreError(f"{p}: the tokenizer has no chat_template")
        rt = cfg.get("reward_token") or "<|endoftext|>"  # the WorldPM release's (its README)
        rid = tok.convert_tokens_to_ids(rt)
        if rid is None or tok.convert_ids_to_tokens(rid) != rt:
            raise ScoreError(f"{p / 'config.json'}: reward_token {rt!r} is not a token of the folder's tokenizer")
        return cls(p, tok, rt, rid, cfg)

    def encode(self, conv: list[dict], where: str) -> tuple[list[int], int]:
        """Token ids of the conversation as the folder's template renders it, and how many of them are
        the reply's (for the length Phi). The last id must be the reward token."""
        text = self.tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)
        ids = self.tok.encode(text, add_special_tokens=False)
        if not ids or ids[-1] != self.reward_id:
            raise ScoreError(
                f"{where}: the chat template of {self.path} does not end the conversation with the "
                f"reward token {self.reward_token}"
            )
        head = self.tok.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)
        return ids, len(ids) - len(self.tok.encode(head, add_special_tokens=False))


# -- backends ------------------------------------------------------------------------------------


def _pipe(stream: IO[str] | None) -> IO[str]:
    """A pipe of the vLLM worker (Popen types each as optional; all three are opened with PIPE)."""
    if stream is None:
        raise RuntimeError("the vLLM worker was started without this pipe")
    return stream


class HFBackend:
    """The folder's model class (a copy of worldpm_modeling.py) in torch, batches right-padded."""

    name = "hf"

    def __init__(self, folder: Folder, dtype: str = "fp32"):
        import torch
        from transformers.utils import logging as hf_logging

        from .worldpm_modeling import Qwen2ForRewardModel

        hf_logging.disable_progress_bar()  # our own bar is the one that counts rows

        self.torch = torch
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        self.model = Qwen2ForRewardModel.from_pretrained(str(folder.path), dtype=self.dtype).eval()
        self.pad = folder.config.get("pad_token_id") or 0

    def score(self, batch: list[list[int]]) -> list[float]:
        torch = self.torch
        n = max(len(x) for x in batch)
        ids = torch.full((len(batch), n), self.pad, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        with torch.no_grad():
            return self.model(input_ids=ids, attention_mask=mask)[0].float().tolist()

    def close(self) -> None:
        pass


def vllm_python(explicit: str | None) -> str:
    """The interpreter with vLLM: --vllm-python, $WPS_VLLM_PYTHON, ./.venv-vllm or the checkout's
    .venv-vllm (made by `make vllm-venv`), else this one."""
    checkout = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"
    for c in (explicit, os.environ.get("WPS_VLLM_PYTHON"), ".venv-vllm/bin/python", str(checkout)):
        if c and Path(c).is_file():
            return c
        if c == explicit and c:
            raise ScoreError(f"--vllm-python {c}: no such interpreter")
    return sys.executable


class VLLMBackend:
    """vLLM's `LLM(model=DIR, runner="pooling")` in a worker process of the vLLM interpreter, fed
    token ids a batch at a time; its per-token rewards read at the reward token (the last)."""

    name = "vllm"

    def __init__(self, folder: Folder, dtype: str = "fp32", python: str | None = None):
        py = vllm_python(python)
        env = {**os.environ, "VLLM_LOGGING_STREAM": "ext://sys.stderr", "TOKENIZERS_PARALLELISM": "false"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self.proc = subprocess.Popen(
            [
                py,
                str(Path(__file__).with_name("vllm_worker.py")),
                str(folder.path),
                {"fp32": "float32", "bf16": "bfloat16"}[dtype],
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.reward_id = folder.reward_id
        ready = self._read()
        if ready is None or not ready.get("ready"):
            raise ScoreError(
                f"--backend vllm: vLLM could not load {folder.path} with {py}: "
                f"{ready.get('error') if ready else self._tail()}"
            )
        self.version = ready.get("vllm")

    def _tail(self) -> str:
        self.proc.wait(timeout=60)
        return (_pipe(self.proc.stderr).read() or "")[-2000:]

    def _read(self) -> dict | None:
        for line in _pipe(self.proc.stdout):
            if line.startswith("WPS-SCORE "):
                return json.loads(line[len("WPS-SCORE ") :])
        return None

    def score(self, batch: list[list[int]]) -> list[float]:
        stdin = _pipe(self.proc.stdin)
        stdin.write(json.dumps(batch) + "\n")
        stdin.flush()
        got = self._read()
        if got is None or "rewards" not in got:
            raise ScoreError(f"--backend vllm: the vLLM worker stopped: {got.get('error') if got else self._tail()}")
        return got["rewards"]

    def close(self) -> None:
        if self.proc.poll() is None:
            _pipe(self.proc.stdin).close()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- scoring a file ------------------------------------------------------------------------------


@dataclass
class ScoreSummary:
    kind: str
    rows: int = 0
    sequences: int = 0
    seconds: float = 0.0
    bt_loss: float | None = None
    accuracy: float | None = None
    phi_length: float | None = None
    phi_markdown: float | None = None
    rewards: list = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def score_file(
    model_dir: str | Path,
    input_path: str | Path,
    *,
    out: str | Path | None = None,
    backend: str = "hf",
    batch: int = 16,
    dtype: str = "fp32",
    vllm_python_path: str | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> ScoreSummary:
    """Score every row of `input_path` with the exported model at `model_dir`, `batch` rows per model call;
    rows (with their rewards) go to `out` (.jsonl or .parquet) by temp + rename once all are scored."""
    from ..style import has_markdown, style_phi

    if batch < 1:
        raise ScoreError(f"--batch must be ≥ 1, got {batch}")
    src = Path(input_path)
    kind = input_kind(src)
    dest = Path(out) if out else None
    if dest is not None:
        if dest.suffix not in (".jsonl", ".parquet"):
            raise ScoreError(f"--out {dest}: must end in .jsonl or .parquet")
        if dest.exists() and not force:
            raise ScoreError(f"--out {dest}: exists (pass --force to replace it)")
        if dest.resolve() == src.resolve():
            raise ScoreError(f"--out {dest}: is the input file")
    folder = Folder.open(model_dir)
    total = count_rows(src)
    be = HFBackend(folder, dtype) if backend == "hf" else VLLMBackend(folder, dtype, vllm_python_path)
    summary = ScoreSummary(kind=kind)
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no types (types-tqdm is no dependency)

    bar = tqdm(
        total=total,
        unit="pair" if kind == "pairs" else "conv",
        file=sys.stderr,
        disable=(not progress) if progress is not None else None,
        desc=f"scoring ({be.name})",
    )
    writer = _Writer(dest, kind) if dest is not None else None
    feats = []  # (reply tokens chosen, rejected, markdown chosen, rejected) per pair, for the style Phi
    t0 = time.perf_counter()
    try:
        chunk: list[tuple[dict, list[tuple[list[int], int]]]] = []
        for row, convs in _chain(iter_items(src, kind), None):
            if row is not None:
                where = f"{src}: row {summary.rows + len(chunk)}"
                chunk.append((row, [folder.encode(c, where) for c in convs]))
            if chunk and (len(chunk) == batch or row is None):
                rewards = be.score([ids for _, enc in chunk for ids, _ in enc])
                k = 0
                for r, enc in chunk:
                    got = rewards[k : k + len(enc)]
                    k += len(enc)
                    summary.rewards.append(got)
                    if kind == "pairs":
                        feats.append(
                            (
                                enc[0][1],
                                enc[1][1],
                                float(r.get("chosen_markdown", has_markdown(r["chosen"]))),
                                float(r.get("rejected_markdown", has_markdown(r["rejected"]))),
                            )
                        )
                    if writer:
                        writer.add(r, got)
                summary.sequences += k
                summary.rows += len(chunk)
                bar.update(len(chunk))
                chunk = []
        summary.seconds = time.perf_counter() - t0
        if writer:
            writer.commit()
    except BaseException:
        if writer:
            writer.abort()
        raise
    finally:
        bar.close()
        be.close()
    if kind == "pairs" and summary.rows:
        c = [r[0] for r in summary.rewards]
        j = [r[1] for r in summary.rewards]
        summary.bt_loss = sum(_softplus(b - a) for a, b in zip(c, j)) / len(c)
        summary.accuracy = sum(a > b for a, b in zip(c, j)) / len(c)
        prefers = [a > b for a, b in zip(c, j)]
        summary.phi_length = _finite(style_phi(prefers, [f[0] for f in feats], [f[1] for f in feats]))
        summary.phi_markdown = _finite(style_phi(prefers, [f[2] for f in feats], [f[3] for f in feats]))
    return summary


def _chain(it, end):
    yield from it
    yield end, None


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


class _Writer:
    """Rows with their rewards, streamed to a temp file beside `dest` and renamed onto it at the end."""

    def __init__(self, dest: Path, kind: str):
        self.dest, self.kind = dest, kind
        self.rows: list[dict] = []
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = dest.with_name(f".{dest.name}.tmp")
        self.f = open(self.tmp, "w") if dest.suffix == ".jsonl" else None

    def add(self, row: dict, rewards: list[float]) -> None:
        row = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
        row.update(
            {"chosen_reward": rewards[0], "rejected_reward": rewards[1]}
            if self.kind == "pairs"
            else {"reward": rewards[0]}
        )
        if self.f:
            self.f.write(json.dumps(row) + "\n")
        else:
            self.rows.append(row)

    def commit(self) -> None:
        if self.f:
            self.f.close()
        else:
            import pandas as pd

            pd.DataFrame(self.rows).to_parquet(self.tmp, index=False)
        self.tmp.replace(self.dest)

    def abort(self) -> None:
        if self.f:
            self.f.close()
        self.tmp.unlink(missing_ok=True)
