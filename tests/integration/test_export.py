"""WorldPM-format reward models out (`wps export`) and back in (fine-tuning an exported folder).

The exported folder is scored in a fresh Python process that imports nothing of worldpm_scaling, by the
QwenLM/WorldPM README's own usage code (AutoModel/AutoTokenizer with trust_remote_code,
apply_chat_template(..., tokenize=False, add_generation_prompt=False), model(input_ids)[0]); its scores
must equal the project's rewards (1e-5, fp32), for a plain checkpoint and for the ZeRO-3 partitions of a
2-rank DeepSpeed run, and its BT losses on the eval sets must equal the ones the trainer logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_ranks
from tests.fixtures.qwen_tokenizer import sweep_dict, trained_path_cell
from worldpm_scaling import names
from worldpm_scaling.cli import main
from worldpm_scaling.config import load_sweep
from worldpm_scaling.data import read_pairs
from worldpm_scaling.data.tokenizer import prompt_text, reply_text
from worldpm_scaling.plan import plan, select
from worldpm_scaling.train.export import project_rewards

pytestmark = [pytest.mark.integration]

SETS = ("rmbench_chat", "offsetbias")

# The README's usage, verbatim but for the model name and the printing (QwenLM/WorldPM, "Usage Example
# with Hugging Face").
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

    messages = json.load(open(sys.argv[2]))
    score = [get_score(model, tokenizer=tokenizer, conversation=message) for message in messages]
    print(json.dumps({
        "scores": score,
        "texts": [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=False) for m in messages],
        "loaded_ours": sorted(m for m in sys.modules if m.startswith("worldpm_scaling")),
        "model_class": type(model).__name__}))
""")

RANK_WORKER = textwrap.dedent("""
    import sys
    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.launch.job import CellJob
    from worldpm_scaling.plan import plan, select

    run = select(plan(load_sweep(sys.argv[1])), "0")
    print(CellJob(run.to_json())())
""")

CONVERSATIONS = [
    [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Tips for better sleep?"},
        {"role": "assistant", "content": "Keep a fixed bedtime, and a cool, dark room."},
    ],
    [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Tips for better sleep?"},
        {"role": "assistant", "content": "just try sleeping earlier lol"},
    ],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],  # no system turn
    [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7."},
        {"role": "user", "content": "Another one?"},
        {"role": "assistant", "content": "11, and 13 too."},
    ],  # multi-turn
    [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Write **bold** text"},
        {"role": "assistant", "content": "# Title\n\n- **bold** item\n- `code`"},
    ],
]


def spooled(out: Path) -> dict[str, list[tuple[int, float]]]:
    (f,) = list(out.rglob("cell-*.jsonl"))
    series = defaultdict(list)
    for line in f.read_text().splitlines():
        p = json.loads(line)
        series[p["k"]].append((p["s"], p["v"]))
    return series


def eval_conversations(synth: Path) -> tuple[list[list[dict]], dict[str, int]]:
    """Each eval pair as two conversations (chosen, rejected), in the trainer's order (first 8 of a set)."""
    convs, counts = [], {}
    for s in SETS:
        rows = read_pairs(synth / "evals" / f"{s}.jsonl").iloc[:8].to_dict("records")
        counts[s] = len(rows)
        for r in rows:
            for reply in (r["chosen"], r["rejected"]):
                convs.append(
                    [
                        {"role": "system", "content": ""},
                        {"role": "user", "content": r["prompt"]},
                        {"role": "assistant", "content": reply},
                    ]
                )
    return convs, counts


def score_fresh(folder: Path, convs: list[list[dict]], tmp: Path) -> dict:
    """The README's usage in a fresh interpreter: no PYTHONPATH, its own HF module cache, offline."""
    script, msgs = tmp / "readme_usage.py", tmp / "messages.json"
    script.write_text(README_USAGE)
    msgs.write_text(json.dumps(convs))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OMP_NUM_THREADS": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    r = subprocess.run(
        [sys.executable, str(script), str(folder), str(msgs)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def bt_losses(scores: list[float], counts: dict[str, int]) -> dict[str, float]:
    out, i = {}, 0
    for s, n in counts.items():
        c = np.array(scores[i : i + 2 * n : 2])
        j = np.array(scores[i + 1 : i + 2 * n : 2])
        out[s] = float(np.mean(np.logaddexp(0.0, -(c - j))))
        i += 2 * n
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A path: model trained 8 steps by `wps train` (killed after 5, resumed), checkpoints every 2nd step."""
    cell = trained_path_cell(tmp_path_factory)
    assert cell["resumed_rc"] == 0, cell["killed_log"]
    return cell["tmp"], cell["base"], cell["sweep"]


def test_export_scores_like_the_project_in_a_fresh_process(trained):
    tmp, _, sweep = trained
    out = tmp / "rm-fp32"
    assert (
        main(["export", str(sweep), "--cell", "0", "--out", str(out), "--dtype", "fp32", "--max-shard-size", "100KB"])
        == 0
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForRewardModel"] and cfg["model_type"] == "qwen2"
    assert cfg["auto_map"]["AutoModel"] == "modeling_worldpm.Qwen2ForRewardModel"
    assert cfg["reward_head"] == "mlp" and cfg["reward_token"] == "<|endoftext|>" and cfg["dtype"] == "float32"
    assert (out / "modeling_worldpm.py").is_file()
    shards = set(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].values())
    assert len(shards) >= 2 and all((out / s).is_file() for s in shards)
    assert json.loads((out / "wps_export.json").read_text())["step"] == 8

    evals, counts = eval_conversations(tmp / "synth")
    got = score_fresh(out, CONVERSATIONS + evals, tmp)
    assert got["loaded_ours"] == [] and got["model_class"] == "Qwen2ForRewardModel"
    # the exported chat template renders exactly the training format, reward token included
    for conv, text in zip(CONVERSATIONS, got["texts"]):
        assert text == prompt_text(conv[:-1]) + reply_text(conv[-1]["content"])
    run = select(plan(load_sweep(sweep)), "0")
    ours = project_rewards(run, CONVERSATIONS)
    assert np.abs(np.array(got["scores"][:5]) - np.array(ours)).max() < 1e-5
    assert np.std(ours) > 1e-3  # the five are told apart: a constant would not pass for a reward model
    # and the eval losses the trainer logged at its last milestone are the exported model's
    logged = spooled(tmp / "runs")
    for s, loss in bt_losses(got["scores"][5:], counts).items():
        step, value = logged[names.eval_loss(s)][-1]
        assert step == 8 and loss == pytest.approx(value, abs=1e-5), s


def test_export_refuses_to_overwrite_and_names_bad_steps(trained, capsys):
    tmp, _, sweep = trained
    out = tmp / "rm-bf16"
    assert main(["export", str(sweep), "--cell", "0", "--step", "4", "--out", str(out)]) == 0
    meta = json.loads((out / "wps_export.json").read_text())
    assert meta["step"] == 4 and meta["dtype"] == "bf16"
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    capsys.readouterr()
    assert main(["export", str(sweep), "--cell", "0", "--out", str(out)]) == 2
    assert "not empty (pass --force" in capsys.readouterr().err
    assert main(["export", str(sweep), "--cell", "0", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "wps_export.json").read_text())["step"] == 8
    assert main(["export", str(sweep), "--cell", "0", "--step", "3", "--out", str(tmp / "x")]) == 2
    assert "--step 3: no checkpoint of that step" in capsys.readouterr().err
    assert not (tmp / "x").exists()


def test_exported_model_fine_tunes_from_its_rewards(trained):
    """A sweep whose model is the exported folder starts from the exported rewards (head included) and
    trains 2 epochs."""
    from worldpm_scaling.track import InMemoryTracker
    from worldpm_scaling.train import Trainer

    tmp, _, sweep = trained
    rm = tmp / "rm-ft"
    assert main(["export", str(sweep), "--cell", "0", "--out", str(rm), "--dtype", "fp32"]) == 0
    ft = tmp / "ft.yaml"
    spec = sweep_dict(
        "ft", rm, tmp / "synth", tmp / "ft-runs", sets=SETS, ctx_len=512, pairs=32, milestones=(32,), epochs=2, lr=1e-3
    )
    ft.write_text(yaml.safe_dump(spec))
    run = select(plan(load_sweep(ft)), "0")
    trainer = Trainer(run, InMemoryTracker().start_cell("ft", run.cell_id, name="ft"))
    trainer._build()
    first = trainer.evaluate()
    logged = spooled(tmp / "runs")
    for s in SETS:  # the first evaluation of the fine-tuning run is the exported (= source cell's last) one
        assert first[names.eval_loss(s)] == pytest.approx(logged[names.eval_loss(s)][-1][1], abs=1e-5)
    assert main(["train", str(ft), "--cell", "0"]) == 0
    m = spooled(tmp / "ft-runs")
    assert m[names.TRAIN_PAIRS_SEEN][-1] == (8, 64.0)  # 2 epochs of 32 pairs, 8 pairs a step
    assert [s for s, _ in m[names.eval_loss(SETS[0])]] == [4]  # its milestone (32 pairs) falls in epoch 1


def test_zero3_two_rank_checkpoint_exports_like_the_run_scored(trained):
    tmp, ck, _ = trained
    sweep = tmp / "z3.yaml"
    spec = sweep_dict(
        "z3",
        ck,
        tmp / "synth",
        tmp / "z3-runs",
        sets=SETS,
        ctx_len=512,
        pairs=32,
        milestones=(32,),
        zero_stage=3,
        micro_batch_pairs=4,
        checkpoint_every_steps=4,
    )
    sweep.write_text(yaml.safe_dump(spec))
    worker = tmp / "rank_worker.py"  # a rank of a 2-task job, as the launcher's job entry runs it
    worker.write_text(RANK_WORKER)
    ranks = run_ranks([sys.executable, str(worker), str(sweep)], world=2, cwd=tmp)
    assert [rc for rc, _ in ranks] == [0, 0], ranks[0][1][-3000:] + ranks[1][1][-3000:]
    (ds,) = list((tmp / "z3-runs").rglob("step_00000004.ds"))
    assert len(list((ds / "state").glob("zero_pp_rank_*_model_states.pt"))) == 2  # partitioned over 2 ranks
    out = tmp / "rm-z3"
    assert main(["export", str(sweep), "--cell", "0", "--out", str(out), "--dtype", "fp32"]) == 0
    evals, counts = eval_conversations(tmp / "synth")
    got = score_fresh(out, CONVERSATIONS + evals, tmp)
    ours = project_rewards(select(plan(load_sweep(sweep)), "0"), CONVERSATIONS)
    assert np.abs(np.array(got["scores"][:5]) - np.array(ours)).max() < 1e-5
    logged = spooled(tmp / "z3-runs")  # what the 2-rank DeepSpeed engine itself scored at its milestone
    for s, loss in bt_losses(got["scores"][5:], counts).items():
        assert loss == pytest.approx(logged[names.eval_loss(s)][-1][1], abs=1e-5), s


def test_wps_score_reproduces_the_logged_eval_loss_and_accuracy(trained, tmp_path, capsys):
    """`wps score` on the cell's eval files gives the eval loss and accuracy the trainer logged at the
    exported step (1e-5): the folder's chat template and reward token score what training scored."""
    import re

    tmp, _, sweep = trained
    out = tmp_path / "rm"
    assert main(["export", str(sweep), "--cell", "0", "--out", str(out), "--dtype", "fp32"]) == 0
    logged = spooled(tmp / "runs")
    for s in SETS:  # the sweep scores the first 8 pairs of each set; the synthetic sets hold exactly 8
        src = tmp / "synth" / "evals" / f"{s}.jsonl"
        assert len(src.read_text().splitlines()) == 8
        capsys.readouterr()
        assert main(["score", str(out), str(src), "--batch", "3", "--no-progress"]) == 0
        m = re.search(r"bt_loss (\S+)\s+accuracy (\S+)", capsys.readouterr().out)
        step, loss = logged[names.eval_loss(s)][-1]
        assert step == 8 and float(m.group(1)) == pytest.approx(loss, abs=1e-5), s
        assert float(m.group(2)) == pytest.approx(logged[names.eval_acc(s)][-1][1], abs=1e-5), s
