"""Run by the vLLM interpreter for `wps score --backend vllm` (imports vLLM only, not worldpm_scaling):
loads an exported folder natively — `LLM(model=DIR, runner="pooling")`, no trust_remote_code: vLLM's own
Qwen2ForRewardModel — then reads batches of token-id lists from stdin, one JSON list a line, and answers
each with `WPS-SCORE {"rewards": [...]}`: vLLM's per-token rewards (token_classify) read at the last
token, the reward token the folder's chat template ends each conversation with.

    python vllm_worker.py DIR [float32|bfloat16]
"""

import json
import sys


def say(obj) -> None:
    print("WPS-SCORE " + json.dumps(obj), flush=True)


def main() -> int:
    folder, dtype = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "float32")
    try:
        import vllm
        from vllm import LLM

        llm = LLM(model=folder, runner="pooling", dtype=dtype, gpu_memory_utilization=0.1, enforce_eager=True, seed=0)
    except Exception as e:  # noqa: BLE001 — reported to the parent as the reason
        say({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    say({"ready": True, "vllm": vllm.__version__})
    for line in sys.stdin:
        batch = json.loads(line)
        try:
            outs = llm.encode(
                [{"prompt_token_ids": ids} for ids in batch], pooling_task="token_classify", use_tqdm=False
            )
            say({"rewards": [float(o.outputs.data[-1].reshape(-1)[0]) for o in outs]})
        except Exception as e:  # noqa: BLE001 — any vLLM failure goes back to the parent as the reason
            say({"error": f"{type(e).__name__}: {e}"})
            return 1
    return 0


if __name__ == "__main__":  # vLLM spawns processes: the guard keeps them from re-running this
    sys.exit(main())
