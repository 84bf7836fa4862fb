"""Sweeps with `seeds:` — several runs of one (model, budget) — are repeats, not a grid: eval curves are
the mean over the seeds, and grad-norm spikes are detected on each run's own series (two runs
interleaved by step are neither one run's noise nor its spikes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.analysis_synth import sweep_frame
from worldpm_scaling import names
from worldpm_scaling.analysis.load import from_file
from worldpm_scaling.analysis.report import analyze, curve, is_grid


def seeded(spikes=(700, 300)) -> pd.DataFrame:
    """sweep_frame drawn once per seed (other noise, the spike of the largest size at its own step)."""
    parts = []
    for seed, at in enumerate(spikes):
        d = sweep_frame(seed, spike_at=at)
        d["cell"] = d["cell"] + f"-s{seed}"
        d["seed"] = seed
        parts.append(d)
    return pd.concat(parts, ignore_index=True)


def test_seeds_are_averaged_not_a_grid(tmp_path):
    df = seeded()
    assert not is_grid(df)
    rep = analyze(df, tmp_path, bootstrap=50, figures=False)
    assert rep.mode == "milestones"
    assert rep.seeds == {m: [0, 1] for m in ("tiny-xs", "tiny-s", "tiny-m")}
    key = names.eval_loss("objective")
    x, y = curve(df, key, "tiny-m")
    assert len(x) == 9  # every milestone, once
    per_seed = df[(df.metric == key) & (df.model == "tiny-m")].pivot_table(
        index="pairs", columns="seed", values="value"
    )
    assert np.allclose(y, per_seed.mean(axis=1).to_numpy())
    assert rep.fits[("objective", "tiny-m")].n == 9
    assert rep.trends[("adversarial", "tiny-xs")].kind == "power-law"
    assert rep.trends[("subjective", "tiny-m")].kind == "flat"
    assert "curves averaged over 2 seeds" in rep.headline().splitlines()[0]
    md = (tmp_path / "report.md").read_text()
    assert "each point is the mean over the runs' seeds (seeds 0, 1)" in md
    assert rep.json_path is not None and '"seeds"' in rep.json_path.read_text()


def test_spikes_are_found_per_run_and_labelled_with_the_seed(tmp_path):
    rep = analyze(seeded(), tmp_path, bootstrap=20, figures=True)
    assert set(rep.spikes) == {f"{m} seed {s}" for m in ("tiny-xs", "tiny-s", "tiny-m") for s in (0, 1)}
    assert [s.step for s in rep.spikes["tiny-m seed 0"]] == [701]  # sweep_frame's steps count from 1
    assert [s.step for s in rep.spikes["tiny-m seed 1"]] == [301]
    assert [len(rep.emergences[f"tiny-m seed {s}"]) for s in (0, 1)] == [1, 1]
    assert not any(rep.spikes[f"tiny-xs seed {s}"] for s in (0, 1))
    head = rep.headline()
    assert "emergence flags (spike then loss drop): 2" in head and "tiny-m seed 1 at " in head
    assert (tmp_path / "figures" / "grad_norm.png").stat().st_size > 5000


def test_one_seed_keeps_the_model_as_label(tmp_path):
    rep = analyze(sweep_frame(0), tmp_path, bootstrap=20, figures=False)
    assert set(rep.spikes) == {"tiny-xs", "tiny-s", "tiny-m"} and rep.seeds_phrase() == ""
    assert "curves averaged" not in rep.headline()


def test_grid_with_seeds_is_a_grid_and_labels_each_run(tmp_path):
    """Two budgets × two seeds per model: a grid; one grad-norm series per cell, labelled by both."""
    parts = []
    for seed in (0, 1):
        for budget in (2.0**12, 2.0**14):
            d = sweep_frame(seed, spike_at=None)
            d = d[d.pairs <= budget].copy()
            d["cell"] = d["cell"] + f"-{int(budget)}-s{seed}"
            d["seed"] = seed
            parts.append(d)
    df = pd.concat(parts, ignore_index=True)
    assert is_grid(df)
    rep = analyze(df, tmp_path, bootstrap=20, figures=False)
    assert rep.mode == "grid"
    assert {"tiny-m 2^12 seed 0", "tiny-m 2^14 seed 1"} <= set(rep.spikes) and len(rep.spikes) == 12


def test_a_file_without_a_seed_column_is_one_seed(tmp_path):
    p = tmp_path / "t.csv"
    sweep_frame(0).to_csv(p, index=False)
    df = from_file(p)
    assert set(df["seed"]) == {0}
    assert not is_grid(df) and not is_grid(seeded())


def test_a_seed_mean_break_is_one_headline_line_and_one_report_line_per_seed(tmp_path):
    """The break is of the seed-mean curve: each seed is checked there (a seed whose own curve never broke
    included), the report lists every seed, and the headline says it once for all of them."""
    rep = analyze(seeded(), tmp_path, bootstrap=20, figures=False)
    evs = [b for b in rep.break_evidence if (b.category, b.model) == ("objective", "tiny-m")]
    assert [b.run for b in evs] == ["seed 0", "seed 1"]
    assert (
        evs[1]
        .sentence()
        .startswith(
            "objective/tiny-m emergent (break of the seed mean at 2048 pairs): seed 1 in "
            "[2048, 4096] pairs no grad-norm spike"
        )
    )
    head = [x for x in rep.headline().splitlines() if "objective/tiny-m emergent" in x]
    assert (
        len(head) == 1
        and "(break of the 2-seed mean at 2048 pairs): in [2048, 4096] pairs no grad-norm spike in "
        "any seed (max robust z "
        in head[0]
        and "training loss falls in 2 of 2 seeds (0.684 → 0.676)" in head[0]
    ), head
    md = (tmp_path / "report.md").read_text()
    assert "seed 0 in [2048, 4096]" in md and "seed 1 in [2048, 4096]" in md


def test_break_sentences_name_the_seeds_that_spiked():
    from worldpm_scaling.analysis.spikes import BreakEvidence, Emergence, Spike, break_sentences

    sp = Spike(index=300, step=300.0, pairs=4800.0, z=9.1, value=3.0)
    base = dict(category="objective", model="tiny-sm", break_pairs=4096.0, lo=4096.0, hi=8192.0, threshold=7.0)
    evs = [
        BreakEvidence(**base, spikes=(), emergences=(), max_z=3.2, loss_before=0.51, loss_after=0.19, run="seed 0"),
        BreakEvidence(
            **base,
            spikes=(sp,),
            emergences=(Emergence(spike=sp, drop=0.3, z=8.0),),
            max_z=9.1,
            loss_before=0.43,
            loss_after=0.44,
            run="seed 1",
        ),
    ]
    (line,) = break_sentences(evs)
    assert line == (
        "objective/tiny-sm emergent (break of the 2-seed mean at 4096 pairs): in [4096, 8192] pairs "
        "grad-norm spikes in 1 of 2 seeds (seed 1 at 4800 pairs), 1 with an emergence flag; "
        "training loss falls in 1 of 2 seeds (0.430–0.510 → 0.190–0.440)"
    )
    single = BreakEvidence(**base, spikes=(), emergences=(), max_z=3.2, loss_before=0.5, loss_after=0.2)
    assert break_sentences([single]) == [single.sentence()] and "break at 4096 pairs): in [4096" in single.sentence()
