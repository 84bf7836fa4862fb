"""`wps data evals import`: each of the 12 WorldPM sets from its release fixture (pair count, a known
row's chosen/rejected, skipped rows named), malformed sources as named errors (exit 2, nothing
written), --force, and the real RM-Bench / RMB files (tests/fixtures/evals/README.md)."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import pytest

from tests.fixtures.eval_sources import SOURCES
from worldpm_scaling.cli import main
from worldpm_scaling.data import read_pairs
from worldpm_scaling.data.eval_import import IMPORTERS, EvalImportError, build, import_set
from worldpm_scaling.data.tokenizer import prompt_text
from worldpm_scaling.names import EVAL_SETS

pytestmark = pytest.mark.unit


# set → (pairs, prompts, skipped reasons → count); derived by hand from the fixtures
# (make_written.py's comments, the README's trims)
EXPECTED = {
    "rmbench_chat": (29 * 9, 29, {}),
    "rmbench_math": (3 * 9 - 3, 3, {"empty reply": 3}),
    "rmbench_humanevalpack": (10 * 9, 10, {}),
    "offsetbias": (80, None, {}),
    "rewardbench_llmbar": (
        16,
        16,
        {"subset 'mt-bench-hard' is not LLMBar": 1, "subset 'alpacaeval-easy' is not LLMBar": 1},
    ),
    "ppe_mbpp_plus": (
        4 + 8 + 3,
        3,
        {
            "conflict pair of equal correctness": 1,
            "model claude-3-haiku-20240307 excluded (WorldPM App. A.4)": 1,
            "all responses correct (no pair)": 1,
        },
    ),
    "ppe_human_preference": (16, 16, {"winner 'tie'": 1, "winner 'tie (bothbad)'": 1}),
    "helpsteer2": (13, 13, {"tie on helpfulness": 1, "prompt with a single response": 1}),
    "rmb_helpfulness": (42, 8, {}),  # RMB pairs several answers to one query: 42 pairs share 8 prompts
}
for _s in ("ppe_mmlu_pro", "ppe_gpqa", "ppe_ifeval"):  # the haiku row counts outside MBPP-Plus
    EXPECTED[_s] = (4 + 2 + 8 + 3, 3, {"conflict pair of equal correctness": 1, "all responses correct (no pair)": 1})


def test_every_set_has_an_importer_and_a_fixture():
    assert set(IMPORTERS) == set(EVAL_SETS) == set(SOURCES) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EVAL_SETS))
def test_import_counts_and_skips(name, tmp_path):
    s = import_set(name, SOURCES[name], tmp_path)
    pairs, prompts, skipped = EXPECTED[name]
    assert s.pairs == pairs
    if prompts is not None:
        assert s.prompts == prompts
    assert s.skipped == skipped
    df = read_pairs(tmp_path / f"{name}.jsonl")
    assert len(df) == pairs
    meta = json.loads((tmp_path / f"{name}.meta.json").read_text())
    assert meta["pairs"] == pairs and meta["skipped"] == skipped and meta["rule"] == IMPORTERS[name].rule
    assert meta["markdown_labels"] and meta["files"]
    assert {"group", "chosen_slot", "rejected_slot", "chosen_markdown", "rejected_markdown"} <= set(df.columns)


def _rows(name, **opts):
    res, _ = build(name, SOURCES[name], **opts)
    return res.pairs


def test_known_rows_chosen_and_rejected():
    # EvalBiasBench: label 1 = response1 better (the first 'length bias' record)
    ob = _rows("offsetbias")[0]
    assert ob["prompt"] == "Write a script for a 10-second conversation between two characters."
    assert ob["chosen"].startswith("Person A: Hi, how are you?") and ob["rejected"].startswith(
        "Person A: Hi, I'm John."
    )
    # RewardBench: LLMBar rows only, as given
    rb = {r["group"]: r for r in _rows("rewardbench_llmbar")}
    assert rb["llmbar-adver-neighbor/102"]["chosen"] == "Joyful."
    assert "llmbar-adver-neighbor/102" in rb and not any(g.startswith("mt-bench") for g in rb)
    # PPE best-of-K: the correct response of a conflict pair is chosen, whichever order the pair lists
    q4 = [r for r in _rows("ppe_mmlu_pro") if r["group"] == "q4/gpt-4o-mini-2024-07-18"]
    assert [(r["chosen_slot"], r["rejected_slot"]) for r in q4] == [(0, 2), (1, 3), (0, 5)]
    assert all("right." in r["chosen"] and "wrong." in r["rejected"] for r in _rows("ppe_gpqa"))
    q3 = [r for r in _rows("ppe_gpqa") if r["group"].startswith("q3/")]  # no conflict list: every pair
    assert sorted((r["chosen_slot"], r["rejected_slot"]) for r in q3) == [(c, j) for c in (1, 4) for j in (0, 2, 3, 5)]
    allp = _rows("ppe_gpqa", pairing="all")
    assert len(allp) == 3 * 3 + 1 * 5 + 2 * 4 + 2 * 4
    # PPE human preference: the winner's response
    hp = {r["group"]: r for r in _rows("ppe_human_preference")}
    assert hp["h2"]["chosen"].startswith("How about **Biscuit**") and hp["h2"]["rejected"] == "Dog."
    assert hp["h1"]["chosen"] == "The moon's gravity pulls the oceans." and "h3" not in hp
    # HelpSteer2: higher helpfulness chosen; the <extra_id_1> prompt becomes a 3-turn conversation
    hs = _rows("helpsteer2")
    motto = next(r for r in hs if r["prompt"] == "Write a one-line motto.")
    assert motto["chosen"] == "Build boldly, test often." and motto["rejected"] == "motto"
    multi = next(r for r in hs if isinstance(r["prompt"], list))
    assert [t["role"] for t in multi["prompt"]] == ["user", "assistant", "user"]
    assert multi["prompt"][2]["content"] == "And its population?" and multi["chosen"].startswith("Paris has **about")
    with pytest.raises(EvalImportError, match="no helpsteer2 pairs.*tie on correctness"):  # all rated 3
        build("helpsteer2", SOURCES["helpsteer2"], attribute="correctness")
    # RM-Bench math (hand-written): style (0, 0) of item 901 has an empty rejected reply → skipped
    rm = _rows("rmbench_math")
    assert not any(r["group"] == "901" and r["rejected_slot"] == 0 for r in rm)
    r = next(r for r in rm if r["group"] == "900" and (r["chosen_slot"], r["rejected_slot"]) == (0, 2))
    assert r["chosen"] == "56." and r["rejected"].endswith("**answer: 54**")
    assert (r["chosen_markdown"], r["rejected_markdown"]) == (False, True)
    orig = _rows("rmbench_math", pairing="original")
    assert len(orig) == 3 and all((r["chosen_slot"], r["rejected_slot"]) == (2, 2) for r in orig)


def test_ppe_mbpp_excludes_claude_3_haiku_only_there():
    assert not any("claude-3-haiku" in r["group"] for r in _rows("ppe_mbpp_plus"))
    assert sum("claude-3-haiku" in r["group"] for r in _rows("ppe_ifeval")) == 2


# -- the real releases ---------------------------------------------------------------------------


def test_real_rmbench_chat_every_prompt_own_lists_and_style_labels(tmp_path):
    items = json.loads(SOURCES["rmbench_chat"].read_text())
    import_set("rmbench_chat", SOURCES["rmbench_chat"], tmp_path)
    df = read_pairs(tmp_path / "rmbench_chat.jsonl")
    by_id = {str(it["id"]): it for it in items}
    assert set(df["group"]) == set(by_id)  # every prompt covered
    cells = defaultdict(set)
    for r in df.to_dict("records"):
        it = by_id[r["group"]]
        i, j = r["chosen_slot"], r["rejected_slot"]
        assert r["prompt"] == it["prompt"]
        assert r["chosen"] == it["chosen"][i] and r["rejected"] == it["rejected"][j]  # the prompt's own lists
        assert r["chosen_markdown"] == (i == 2) and r["rejected_markdown"] == (j == 2)  # style index, not a guess
        cells[r["group"]].add((i, j))
    assert all(c == {(i, j) for i in range(3) for j in range(3)} for c in cells.values())
    # the text detector would disagree with the true labels on some plain detailed replies
    from worldpm_scaling.style import has_markdown

    assert any(has_markdown(it["chosen"][1]) for it in items) or any(not has_markdown(it["chosen"][2]) for it in items)


def test_real_rmb_multi_turn_keeps_every_turn(tmp_path):
    import_set("rmb_helpfulness", SOURCES["rmb_helpfulness"], tmp_path)
    df = read_pairs(tmp_path / "rmb_helpfulness.jsonl")
    raw = {}
    for f in sorted(SOURCES["rmb_helpfulness"].rglob("*.json")):
        raw.update({it["pair_uid"]: it for it in json.loads(f.read_text())})
    assert set(df["group"]) == set(raw)
    assert len({json.dumps([(t["role"], t["content"]) for t in it["conversation_input"]]) for it in raw.values()}) == 8
    five = [r for r in df.to_dict("records") if isinstance(r["prompt"], list) and len(r["prompt"]) == 5]
    assert len(five) == 2
    r = five[0]
    src = raw[r["group"]]
    assert [(t["role"], t["content"]) for t in r["prompt"]] == [
        (t["role"], t["content"]) for t in src["conversation_input"]
    ]
    assert r["chosen"] == src["chosen"]["answer"] and r["rejected"] == src["reject"]["answer"]
    text = prompt_text(r["prompt"])
    turns = src["conversation_input"]
    expected = (
        "<|im_start|>system\n<|im_end|>\n"
        + "".join(f"<|im_start|>{t['role']}\n{t['content']}<|im_end|>\n" for t in turns)
        + "<|im_start|>assistant\n"
    )
    assert text == expected and text.count("<|im_start|>user\n") == 3
    singles = [r for r in df.to_dict("records") if isinstance(r["prompt"], str)]
    assert len(singles) == sum(len(it["conversation_input"]) == 1 for it in raw.values())


def test_parquet_output_keeps_conversations(tmp_path):
    import_set("rmb_helpfulness", SOURCES["rmb_helpfulness"], tmp_path, fmt="parquet")
    a = read_pairs(tmp_path / "rmb_helpfulness.parquet")
    b, _ = build("rmb_helpfulness", SOURCES["rmb_helpfulness"])
    assert [prompt_text(p) for p in a["prompt"]] == [prompt_text(r["prompt"]) for r in b.pairs]
    assert any(isinstance(p, list) and len(p) == 5 for p in a["prompt"])


# -- bad input ------------------------------------------------------------------------------------


def _write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("rmbench_chat", [{"id": 1, "chosen": ["a", "b", "c"], "rejected": ["d", "e", "f"]}], "missing field 'prompt'"),
        (
            "rmbench_chat",
            [{"id": 1, "prompt": "p", "chosen": "a", "rejected": ["d", "e", "f"]}],
            "field 'chosen' must be list, got str",
        ),
        (
            "rmbench_chat",
            [{"id": 1, "prompt": "p", "chosen": ["a", "b"], "rejected": ["d", "e", "f"]}],
            "field 'chosen' must hold 3 replies",
        ),
        ("rmbench_chat", [], "no records"),
        ("rmbench_chat", "", "empty file"),
        ("rmbench_chat", "{not json", "bad JSON"),
        (
            "offsetbias",
            [{"instruction": "i", "response1": "a", "response2": "b", "label": 3}],
            "'label' must be 1 or 2",
        ),
        (
            "offsetbias",
            [{"instruction": "i", "response1": "a", "response2": None, "label": 1}],
            "field 'response2' must be str, got null",
        ),
        (
            "rmb_helpfulness",
            [
                {
                    "pair_uid": "1",
                    "conversation_input": [{"role": "user", "content": "q"}],
                    "chosen": {"llm_name": "x"},
                    "reject": {"answer": "b"},
                }
            ],
            "'chosen'.answer must be str",
        ),
        (
            "rmb_helpfulness",
            [
                {
                    "pair_uid": "1",
                    "conversation_input": [{"role": "assistant", "content": "q"}],
                    "chosen": {"answer": "a"},
                    "reject": {"answer": "b"},
                }
            ],
            "last turn must be the user's",
        ),
    ],
)
def test_malformed_json_sources_are_named_errors(tmp_path, name, content, match):
    src = _write(tmp_path / "src.json", content)
    with pytest.raises(EvalImportError, match=match):
        import_set(name, src, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_malformed_parquet_and_jsonl_sources(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"question_id": ["q"], "prompt": ["p"], "scores": [[True, False]], "response_1": ["a"]}),
        tmp_path / "k.parquet",
    )
    with pytest.raises(EvalImportError, match=r"2 scores but response columns \['response_1'\]"):
        build("ppe_gpqa", tmp_path / "k.parquet")
    pq.write_table(
        pa.table(
            {"question_id": ["q"], "prompt": ["p"], "scores": [[True, False]], "response_1": ["a"], "response_2": ["b"]}
        ),
        tmp_path / "m.parquet",
    )
    with pytest.raises(EvalImportError, match="missing field 'model_name'"):  # needed to drop Claude-3-Haiku
        build("ppe_mbpp_plus", tmp_path / "m.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(EvalImportError, match="not a readable Parquet file"):
        build("rewardbench_llmbar", tmp_path / "bad.parquet")
    with gzip.open(tmp_path / "h.jsonl.gz", "wt") as f:
        f.write(json.dumps({"prompt": "p", "response": "r", "helpfulness": "high"}) + "\n")
    with pytest.raises(EvalImportError, match=r"h.jsonl.gz:1: field 'helpfulness' must be int, got str"):
        build("helpsteer2", tmp_path / "h.jsonl.gz")
    (tmp_path / "h.jsonl").write_text('{"prompt": "p", "response": "r", "helpfulness": 1}\n{oops\n')
    with pytest.raises(EvalImportError, match=r"h.jsonl:2: bad JSON"):
        build("helpsteer2", tmp_path / "h.jsonl")
    with pytest.raises(EvalImportError, match="expected a .parquet"):
        build("ppe_gpqa", _write(tmp_path / "x.csv", "a,b\n"))
    with pytest.raises(EvalImportError, match="no such file or folder"):
        build("ppe_gpqa", tmp_path / "nowhere.parquet")
    with pytest.raises(EvalImportError, match="option 'attribute' does not apply"):
        build("ppe_gpqa", SOURCES["ppe_gpqa"], attribute="helpfulness")
    with pytest.raises(EvalImportError, match="pairing must be one of"):
        build("rmbench_chat", SOURCES["rmbench_chat"], pairing="4x4")


def test_cli_import_exit_codes_and_force(tmp_path, capsys):
    out = tmp_path / "ev"
    assert (
        main(["data", "evals", "import", "rewardbench_llmbar", str(SOURCES["rewardbench_llmbar"]), "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert "16 pairs from 16 prompts" in text and "skipped 1: subset 'mt-bench-hard' is not LLMBar" in text
    before = (out / "rewardbench_llmbar.jsonl").read_text()
    (out / "rewardbench_llmbar.jsonl").write_text("mine\n")
    assert (
        main(["data", "evals", "import", "rewardbench_llmbar", str(SOURCES["rewardbench_llmbar"]), "--out", str(out)])
        == 2
    )
    assert "already exists (pass --force" in capsys.readouterr().err
    assert (out / "rewardbench_llmbar.jsonl").read_text() == "mine\n"  # not overwritten
    assert (
        main(
            [
                "data",
                "evals",
                "import",
                "rewardbench_llmbar",
                str(SOURCES["rewardbench_llmbar"]),
                "--out",
                str(out),
                "--force",
            ]
        )
        == 0
    )
    assert (out / "rewardbench_llmbar.jsonl").read_text() == before
    bad = _write(tmp_path / "b.json", [{"id": 1, "prompt": 5, "chosen": ["a"] * 3, "rejected": ["b"] * 3}])
    assert main(["data", "evals", "import", "rmbench_chat", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "b.json: item 0: field 'prompt' must be str, got int" in err
    assert not (out / "rmbench_chat.jsonl").exists()
    # the listing shows where each imported set came from
    assert main(["data", "evals", "--dir", str(out), "--format", "json"]) == 1
    rows = {r["set"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["rewardbench_llmbar"]["status"] == "found" and rows["rewardbench_llmbar"]["pairs"] == 16
    assert rows["rewardbench_llmbar"]["source"].startswith("allenai/reward-bench")
    assert rows["rmbench_chat"]["status"] == "missing"
    # a sweep's listing still takes its options after the YAML (the `import` word is the only sub-command)
    demo = Path(__file__).resolve().parents[2] / "sweeps" / "demo.yaml"
    assert main(["data", "evals", str(demo), "--format", "json"]) in (0, 1)
    assert len(json.loads(capsys.readouterr().out)) == 12
