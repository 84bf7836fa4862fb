"""`wps score`: rewards for a file of pairs or conversations from an exported reward model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score a file of pairs or conversations with an exported reward model (HF or vLLM)",
        description="Score INPUT with the reward model folder MODEL_DIR (written by `wps export`). INPUT is a "
        "pairs file (.jsonl/.parquet with prompt, chosen, rejected: both rewards per row, then the "
        "Bradley-Terry loss, accuracy and style Phi of the file, as the trainer's evaluation reports "
        "them) or a conversations file (.jsonl: each line a list of {role, content} turns, or an "
        "object with 'messages', ending with the assistant reply: one reward each). Each conversation "
        "is rendered by the folder's chat template and the reward read at the folder's reward token "
        "(config.json reward_token). Rows stream through the model --batch at a time. Exit status: 0 "
        "scored, 2 bad input (a malformed row is named by file and line; --out is then not written).",
        epilog="examples:\n"
        "  wps score exported/demo-0 data/demo/evals/rmbench_chat.jsonl\n"
        "  wps score exported/demo-0 convs.jsonl --out convs.rewards.jsonl --batch 32 --dtype bf16\n"
        "  wps score exported/rm pairs.parquet --backend vllm   # vLLM from ./.venv-vllm (make vllm-venv)\n"
        "backends: hf = the folder's model class in torch (what the WorldPM README's code runs); vllm = "
        "vLLM's native Qwen2ForRewardModel (runner pooling) in its own interpreter: --vllm-python, "
        "$WPS_VLLM_PYTHON or ./.venv-vllm/bin/python.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="exported reward model folder (`wps export --out`)")
    p.add_argument("input", metavar="INPUT", help="pairs or conversations file (.jsonl or .parquet)")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write each row with its reward(s) here (.jsonl or .parquet); refused if it exists unless --force",
    )
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="scoring engine (default hf)")
    p.add_argument("--batch", type=int, default=16, help="rows per model call (default 16)")
    p.add_argument(
        "--dtype",
        choices=("fp32", "bf16"),
        default="fp32",
        help="compute dtype (default fp32: rewards equal to the trainer's to ~1e-6)",
    )
    p.add_argument("--vllm-python", default=None, metavar="PATH", help="interpreter with vLLM for --backend vllm")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.score import score_file

    s = score_file(
        args.model_dir,
        args.input,
        out=args.out,
        backend=args.backend,
        batch=args.batch,
        dtype=args.dtype,
        vllm_python_path=args.vllm_python,
        force=args.force,
        progress=False if args.no_progress else None,
    )
    unit = "pairs" if s.kind == "pairs" else "conversations"
    print(
        f"scored {s.rows} {unit} ({s.sequences} sequences) in {s.seconds:.1f} s: {s.rows_per_s:.1f} {unit}/s "
        f"[{args.backend}, {args.dtype}]"
    )
    if s.kind == "pairs":
        fmt = lambda v: "n/a" if v is None else f"{v:+.4f}"
        print(
            f"bt_loss {s.bt_loss:.6f}  accuracy {s.accuracy:.6f}  phi_length {fmt(s.phi_length)}  "
            f"phi_markdown {fmt(s.phi_markdown)}"
        )
    if args.out:
        print(f"wrote {args.out}")
    return 0
