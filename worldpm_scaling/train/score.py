"""Scoring files with an exported reward model (`wps score`): the HF path or vLLM, same tokens.

The folder's own chat template renders each conversation (ending with the reward token the folder
records in config.json `reward_token`), and the reward is read at that token: by the folder's model
class on the HF backend (torch + transformers, the code `wps export` ships), or from vLLM's per-token
rewards (`runner="pooling"`, token_classify) on the vLLM backend, which runs in its own interpreter
(vLLM pins its own transformers; `vllm_worker.py` is the script it runs). Inputs are streamed in
batches; a malformed row is a ScoreError naming the file and line (or row), and --out is written (by
rename) only once every row is scored.
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
from typing import Iterator

from .exported import is_exported

CONVERSATION_KEYS = ("messages", "conversation")
"""Keys under which a conversations file's row may hold its turns (or the row is the list itself)."""


class ScoreError(ValueError):
    """Bad `wps score` input: not an exported folder, a malformed row (file:line), an output in the way."""


# -- reading the input -------------------------------------------------------------------------------


def _check_conversation(turns, where: str) -> list[dict]:
    if hasattr(turns, "tolist"):
        turns = turns.tolist()
    if not isinstance(turns, list) or not turns:
        raise ScoreError(f"{where}: a conversation must be a non-empty list of {{role, content}} turns")
    out = []
    for k, t in enumerate(turns):
        if not isinstance(t, dict) or not isinstance(t.get("role"), str) or not isinstance(t.get("content"), str):
            raise ScoreError(f"{where}: turn {k} must be an object with string 'role' and 'content'")
        if t["role"] not in ("system", "user", "assistant"):
            raise ScoreError(f"{where}: turn {k} has role {t['role']!r} (system, user or assistant)")
        out.append({"role": t["role"], "content": t["content"]})
    if out[-1]["role"] != "assistant":
        raise ScoreError(f"{where}: the last turn must be the assistant reply to score, got {out[-1]['role']!r}")
    return out


def _as_turns(prompt) -> list[dict]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": t["role"], "content": t["content"]} for t in prompt]


def _jsonl(path: Path) -> Iterator[tuple[str, object]]:
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield f"{path}:{i}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise ScoreError(f"{path}:{i}: bad JSON: {e.msg}") from None


def input_kind(path: Path) -> str:
    """`pairs` (prompt/chosen/rejected) or `conversations` (a list of turns per row)."""
    from ..data.pairs import REQUIRED

    if not path.is_file():
        raise ScoreError(f"{path}: no such input file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except Exception as e:  # noqa: BLE001 — any reader error means a bad file
            raise ScoreError(f"{path}: not a readable Parquet file ({e})") from None
        if all(c in names for c in REQUIRED):
            return "pairs"
        if any(c in names for c in CONVERSATION_KEYS):
            return "conversations"
        raise ScoreError(
            f"{path}: columns {names}: expected prompt/chosen/rejected (pairs) or messages (conversations)"
        )
    if path.suffix != ".jsonl":
        raise ScoreError(f"{path}: input must be .jsonl or .parquet")
    for where, row in _jsonl(path):
        if isinstance(row, dict) and all(c in row for c in REQUIRED):
            return "pairs"
        if isinstance(row, list) or (isinstance(row, dict) and any(c in row for c in CONVERSATION_KEYS)):
            return "conversations"
        raise ScoreError(
            f"{where}: a row must be a pair (prompt, chosen, rejected), a list of turns, or an object with 'messages'"
        )
    raise ScoreError(f"{path}: no rows")


def count_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def iter_items(path: Path, kind: str) -> Iterator[tuple[dict, list[list[dict]]]]:
    """(the row, the conversations to score: [chosen, rejected] for a pair, [itself] otherwise)."""
    if kind == "pairs":
        from ..data.io import PairsFileError, iter_pairs

        try:
            for r in iter_pairs(path):
                prompt = _as_turns(r["prompt"])
                yield (
                    r,
                    [
                        prompt + [{"role": "assistant", "content": r["chosen"]}],
                        prompt + [{"role": "assistant", "content": r["rejected"]}],
                    ],
                )
        except PairsFileError as e:
            raise ScoreError(str(e)) from None
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        f, n = pq.ParquetFile(path), 0
        for batch in f.iter_batches(batch_size=1024):
            for r in batch.to_pylist():
                key = next(k for k in CONVERSATION_KEYS if k in r)
                yield r, [_check_conversation(r[key], f"{path}: row {n}")]
                n += 1
        return
    for where, row in _jsonl(path):
        turns: object = None
        if isinstance(row, list):
            turns = row
        elif isinstance(row, dict):
            turns = next((row[k] for k in CONVERSATION_KEYS if k in row), None)
        if turns is None:
            raise ScoreError(f"{where}: a row must be a list of turns or an object with 'messages'")
        yield (row if isinstance(row, dict) else {"messages": row}), [_check_conversation(turns, where)]


# -- the model folder ----------------------------------------------------------------------------


@dataclass
class Folder:
    """An exported folder's tokenizer and what it says about the reward token."""

    path: Path
    tok: object
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
        text = self.tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False)  # type: ignore[attr-defined]
        ids = self.tok.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
        if not ids or ids[-1] != self.reward_id:
            raise ScoreError(
                f"{where}: the chat template of {self.path} does not end the conversation with the "
                f"reward token {self.reward_token}"
            )
        head = self.tok.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
        return ids, len(ids) - len(self.tok.encode(head, add_special_tokens=False))  # type: ignore[attr-defined]


# -- backends ------------------------------------------------------------------------------------


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
        return (self.proc.stderr.read() or "")[-2000:]  # type: ignore[union-attr]

    def _read(self) -> dict | None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith("WPS-SCORE "):
                return json.loads(line[len("WPS-SCORE ") :])
        return None

    def score(self, batch: list[list[int]]) -> list[float]:
        self.proc.stdin.write(json.dumps(batch) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        got = self._read()
        if got is None or "rewards" not in got:
            raise ScoreError(f"--backend vllm: the vLLM worker stopped: {got.get('error') if got else self._tail()}")
        return got["rewards"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
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
    from tqdm import tqdm  # type: ignore[import-untyped]

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
