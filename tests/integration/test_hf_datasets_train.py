"""A `datasets` folder in each schema `wps data hf` reads (made here with the `datasets` library) converts
into pairs that train a tiny cell with `wps train` — the converted folder is the sweep's data.source."""

from __future__ import annotations

import json
import random

import datasets
import pytest
import yaml

from worldpm_scaling.cli import main
from worldpm_scaling.data import train_bpe

pytestmark = [pytest.mark.integration]

WORDS = "alpha beta gamma delta sleep bed room cool dark list sort value python code tabs spaces".split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def datasets_in_each_schema(root, rng):
    """(name, folder, wps data hf arguments) for a pairs set, a chat-format pairs set, an H4 set, a ratings set."""
    n = 24
    plain = datasets.Dataset.from_dict(
        {
            "question": [sentence(rng, 6) for _ in range(n)],
            "good": [sentence(rng, 12) for _ in range(n)],
            "bad": [sentence(rng, 3) for _ in range(n)],
        }
    )
    plain.save_to_disk(str(root / "plain"))
    chat = datasets.Dataset.from_dict(
        {
            "chosen": [
                [
                    {"role": "user", "content": sentence(rng, 5)},
                    {"role": "assistant", "content": sentence(rng, 4)},
                    {"role": "user", "content": "and?"},
                    {"role": "assistant", "content": sentence(rng, 9)},
                ]
                for _ in range(n)
            ]
        }
    )
    chat = chat.map(lambda r: {"rejected": r["chosen"][:-1] + [{"role": "assistant", "content": "no"}]})
    datasets.DatasetDict({"train_prefs": chat}).save_to_disk(str(root / "chat"))
    h4 = datasets.Dataset.from_list(
        [
            {
                "qid": q,
                "question": f"<p>{sentence(rng, 8)}</p>",
                "date": "2020",
                "metadata": [],
                "answers": [
                    {
                        "answer_id": 100 * q + k,
                        "author": "u",
                        "author_id": k,
                        "author_profile": "",
                        "pm_score": rng.randint(-1, 6),
                        "selected": k == 0,
                        "text": f"<p>{sentence(rng, 10)}</p>",
                    }
                    for k in range(4)
                ],
            }
            for q in range(1, n)
        ]
    )
    h4.save_to_disk(str(root / "h4"))
    hs = datasets.Dataset.from_list(
        [
            {
                "prompt": f"p{i // 2} " + sentence(random.Random(i // 2), 5),
                "response": sentence(rng, 8),
                "helpfulness": (4 if i % 2 == 0 else 1),
                "correctness": 2,
                "coherence": 3,
                "complexity": 1,
                "verbosity": 2,
            }
            for i in range(2 * n)
        ]
    )
    hs.save_to_disk(str(root / "hs2"))
    return [
        ("plain", root / "plain", ["--map", "prompt=question,chosen=good,rejected=bad"]),
        ("chat", root / "chat", ["--split", "train_prefs"]),
        ("h4", root / "h4", ["--schema", "h4-stack-exchange"]),
        ("hs2", root / "hs2", ["--schema", "ratings", "--attribute", "helpfulness"]),
    ]


def test_each_schema_converts_and_trains_a_tiny_cell(tmp_path, monkeypatch):
    rng = random.Random(0)
    tok = tmp_path / "tokenizer.json"
    train_bpe([sentence(rng, 20) for _ in range(200)] + ["<p> </p>"], tok, vocab_size=300)
    for name, folder, args in datasets_in_each_schema(tmp_path, rng):
        out = tmp_path / "pairs" / name
        assert main(["data", "hf", str(folder), "--out", str(out), *args]) == 0, name
        n = json.loads((out / "summary.json").read_text())["pairs"]
        assert n >= 16, (name, n)
        sweep = {
            "name": f"hf-{name}",
            "models": ["tiny-xxs"],
            "init": "random",
            "mode": "milestones",
            "data": {"source": str(out), "tokenizer": str(tok), "pairs": 8, "tokens_per_pair": 100},
            "milestones": {"pairs": [8]},
            "train": {
                "global_batch_pairs": 8,
                "micro_batch_pairs": 8,
                "precision": "fp32",
                "ctx_len": 256,
                "lr": 1e-3,
                "warmup_frac": 0.0,
            },
            "eval": {
                "dir": str(out),
                "sets": ["held"],
                "extra": {"held": {"category": "subjective", "path": str(out / "train.parquet")}},
                "max_pairs_per_set": 8,
            },
            "tracking": {"backend": "spool"},
            "seeds": [0],
            "out_dir": str(tmp_path / "runs" / name),
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(sweep))
        assert main(["train", str(tmp_path / f"{name}.yaml"), "--cell", "0"]) == 0, name
        (spool,) = list((tmp_path / "runs" / name).rglob("cell-*.jsonl"))
        keys = {json.loads(x)["k"] for x in spool.read_text().splitlines()}
        assert "train/loss" in keys and "eval/held/loss" in keys, (name, sorted(keys)[:10])
