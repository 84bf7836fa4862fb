"""The synthetic forum's answer signal: the old one-table recipe stays reproducible, and the
in-prompt k-hop chains (answer_hops ≥ 1) plant exactly the composition they claim."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from worldpm_scaling.data.synth import SynthConfig, SynthConfigError, generate
from worldpm_scaling.names import EVAL_SETS

# sha256 of generate(SynthConfig(pairs=200, eval_pairs_per_set=8)) before the answer_hops option
# existed (commit 7927051): the demo's recipe must give the same data for the same seed.
HOPS0_DIGEST = "9ceef0558b5eef74efd2882e3e157892d611d500aa09572309d2824329c4b635"


def _digest(cfg: SynthConfig) -> str:
    train, evals, _ = generate(cfg)
    return hashlib.sha256(json.dumps([train, evals], sort_keys=True).encode()).hexdigest()


def test_the_one_table_recipe_is_unchanged_by_the_hops_option():
    assert _digest(SynthConfig(pairs=200, eval_pairs_per_set=8)) == HOPS0_DIGEST
    assert _digest(SynthConfig(pairs=200, eval_pairs_per_set=8, answer_hops=0, chain_names=4)) == HOPS0_DIGEST


def _follow(prompt: str, hops: int) -> tuple[str, str, dict[str, str]]:
    start = re.search(r"about (\w+)", prompt).group(1)
    facts = dict(re.findall(r"(\w+) to (\w+)", prompt.split(" notes: ", 1)[1]))
    node = start
    for _ in range(hops):
        node = facts[node]
    return start, node, facts


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_chain_pairs_prefer_the_end_of_the_queried_chain(hops):
    cfg = SynthConfig(pairs=300, eval_pairs_per_set=6, answer_hops=hops, chain_names=16)
    train, evals, world = generate(cfg)
    answer = [p for p in train if p["kind"] == "answer"]
    answer += [p for rows in evals.values() for p in rows if p["kind"] == "answer"]
    assert len(answer) > 50
    names = set(world.names)
    for p in answer:
        start, end, facts = _follow(p["prompt"], hops)
        assert len(facts) == 2 * hops and set(facts) | set(facts.values()) <= names
        heads = set(facts) - set(facts.values())
        assert len(heads) == 2 and start in heads  # two chains; the question is about one start
        (other,) = heads - {start}
        distractor = other
        for _ in range(hops):
            distractor = facts[distractor]
        words = lambda s: set(re.findall(r"\w+", s))
        assert end in words(p["chosen"]) and end not in words(p["rejected"]), p
        assert distractor in words(p["rejected"]) and distractor not in words(p["chosen"]), p
        assert p["chosen_score"] > p["rejected_score"]


def test_chain_names_are_bound_anew_per_pair():
    train, _, _ = generate(SynthConfig(pairs=400, eval_pairs_per_set=2, answer_hops=1, chain_names=16))
    ends = {}
    for p in train:
        if p["kind"] == "answer":
            start, end, _ = _follow(p["prompt"], 1)
            ends.setdefault(start, set()).add(end)
    assert max(len(v) for v in ends.values()) > 3  # no fixed table to memorise: the prompt decides


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"answer_hops": -1}, "answer_hops (--answer-hops)"),
        ({"answer_hops": 3, "chain_names": 7}, "chain_names (--chain-names)"),
    ],
)
def test_bad_hops_knobs_are_named(kw, field):
    with pytest.raises(SynthConfigError, match=re.escape(field)):
        SynthConfig(**kw)


def test_the_one_table_recipe_is_unchanged_by_the_parity_option():
    assert _digest(SynthConfig(pairs=200, eval_pairs_per_set=8, parity_flags=3, parity_k=3)) == HOPS0_DIGEST


def test_parity_pairs_prefer_the_verdict_of_the_secret_flags_and_no_flag_alone_predicts_it():
    cfg = SynthConfig(pairs=4000, eval_pairs_per_set=20, answer_form="parity", parity_flags=6, parity_k=2)
    train, evals, world = generate(cfg)
    odd_word, even_word = world.verdicts
    secret = world.flags[:2]
    answer = [p for p in train if p["kind"] == "answer"]
    answer += [p for rows in evals.values() for p in rows if p["kind"] == "answer"]
    assert len(answer) > 1000
    words = lambda s: set(re.findall(r"\w+", s))
    agree = {w: 0 for w in world.flags}
    for p in answer:
        raised = words(p["prompt"]) & set(world.flags)
        odd = len(raised & set(secret)) % 2 == 1
        right, wrong = (odd_word, even_word) if odd else (even_word, odd_word)
        assert right in words(p["chosen"]) and wrong not in words(p["chosen"]), p
        assert wrong in words(p["rejected"]) and right not in words(p["rejected"]), p
        for w in world.flags:
            agree[w] += (w in raised) == odd
    # each flag alone agrees with the verdict about half the time (k = 2: only the pair decides)
    assert all(abs(a / len(answer) - 0.5) < 0.05 for a in agree.values()), agree


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"parity_flags": 0}, "parity_flags (--parity-flags)"),
        ({"parity_flags": 4, "parity_k": 5}, "parity_k (--parity-k)"),
        ({"answer_form": "oracle"}, "answer_form (--answer-form)"),
    ],
)
def test_bad_parity_knobs_are_named(kw, field):
    with pytest.raises(SynthConfigError, match=re.escape(field)):
        SynthConfig(**kw)


def test_the_recipe_is_unchanged_by_the_vote_noise_option_at_zero():
    assert _digest(SynthConfig(pairs=200, eval_pairs_per_set=8, quality_flip=0.0)) == HOPS0_DIGEST


def _good_minus_bad(text: str, f) -> int:
    words = re.findall(r"\w+", text)
    return sum(w in f.good for w in words) - sum(w in f.bad for w in words)


def test_vote_noise_sends_that_share_of_training_quality_votes_to_the_worse_reply_and_leaves_evals_clean():
    train, evals, f = generate(SynthConfig(pairs=4000, eval_pairs_per_set=64, quality_flip=0.2))
    quality = [p for p in train if p["kind"] == "quality"]
    worse_won = [_good_minus_bad(p["chosen"], f) < _good_minus_bad(p["rejected"], f) for p in quality]
    assert abs(sum(worse_won) / len(quality) - 0.2) < 0.03, sum(worse_won) / len(quality)
    assert all(p["chosen_score"] > p["rejected_score"] for p in quality)  # the votes still name the winner
    assert all(p["chosen_markdown"] == p["chosen"].startswith("## ") for p in quality)
    adversarial = [p for name, rows in evals.items() if EVAL_SETS[name] == "adversarial" for p in rows]
    assert adversarial and all(_good_minus_bad(p["chosen"], f) > _good_minus_bad(p["rejected"], f) for p in adversarial)


def test_bad_vote_noise_is_named():
    with pytest.raises(SynthConfigError, match=re.escape("quality_flip (--quality-flip)")):
        SynthConfig(quality_flip=1.5)
