"""report.md: every table of the Report, its notes and figures, written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import names
from .joint import IDENT_MAX_RATIO
from .ladder import Band
from .prediction_text import band_text, prediction_sentence
from .report_result import Report, ci_text
from .selection import pairs_label
from .spikes import SPIKE_Z
from .trends import TREND_LEVEL

Phi = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
"""style feature → model → (pairs, Phi), from selection.style_phi."""


def _seed_list(seeds: dict[str, list[int]]) -> str:
    same = {tuple(v) for v in seeds.values()}
    if len(same) == 1:
        return "seeds " + ", ".join(map(str, next(iter(same))))
    return "; ".join(f"{m}: seeds {', '.join(map(str, v))}" for m, v in seeds.items())


def write_markdown(rep: Report, path: Path, phi: Phi, label_sources: dict[str, str] | None = None) -> Path:
    lv = f"{rep.level:.0%}"
    L = [
        f"# Scaling report: sweep `{rep.sweep}`",
        "",
        "All exponents are fitted to this sweep's runs (the paper itself fits none). "
        f"Intervals are {lv} bootstrap intervals over the curve's points; trend classes use the slope's "
        f"{TREND_LEVEL:.0%} t interval and a ΔBIC threshold calibrated in bench/results/trend_calibration.txt. "
        f"Mode: {rep.mode} ({'each cell' + chr(39) + 's last evaluation is one point' if rep.mode == 'grid' else 'one run per model, evaluated at each milestone'})"
        + (
            f"; each point is the mean over the runs' seeds ({_seed_list(rep.seeds)}), spikes are detected per run"
            if rep.seeds_phrase()
            else ""
        )
        + ".",
        "",
    ]
    if rep.left_out or rep.curve_notes:
        L += ["## Left out and incomplete", ""]
        if rep.left_out:
            L += ["| cell | model | status | reason |", "|---|---|---|---|"]
            L += [f"| {c['cell']} | {c['model']} | {c['status']} | {c['reason']} |" for c in rep.left_out]
            L.append("")
        if rep.curve_notes:
            L += ["| category | model | points | note |", "|---|---|---|---|"]
            L += [f"| {c['category']} | {c['model']} | {c['points']} | {c['reason']} |" for c in rep.curve_notes]
            L.append("")
    L += [
        "## Test loss vs training pairs (L = A·pairs^-α)",
        "",
        f"| category | model | N (non-emb) | points | α | {lv} CI | leave-largest-out error | trend | evidence |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cat in names.CATEGORIES:
        for m in rep.models:
            f = rep.fits.get((cat, m))
            if f is None:
                continue
            t = rep.trends.get((cat, m))
            ci = f.ci.get("alpha")
            ex = f"{f.extrapolation_rel_error:.1%}" if f.extrapolation_rel_error is not None else "–"
            L.append(
                f"| {cat} | {m} | {rep.n_of[m]:.3g} | {f.n} | {f.alpha:.4f} | "
                + (f"[{ci.lo:.4f}, {ci.hi:.4f}]" if ci else "–")
                + f" | {ex} | "
                + (f"**{t.kind}** | {t.evidence()} |" if t else "– | too few points |")
            )
    if rep.compute_fits:
        L += [
            "",
            "## Test loss vs training compute (frontier over model sizes)",
            "",
            "L = A·C^-α fitted to the lower envelope of the sizes' curves (a point stays when no other size "
            "passes below it at that compute). The interval redraws each curve from its own log-log line and the "
            "curves' pooled residual scale, rebuilding the envelope each time; an interval that covers 0 means "
            "no scaling with compute.",
            "",
            f"| category | α | {lv} CI | envelope points | scaling with compute |",
            "|---|---|---|---|---|",
        ]
        for cat, f in rep.compute_fits.items():
            ci = f.ci.get("alpha")
            verdict = "–" if not ci else ("no (interval covers 0)" if ci.contains(0.0) else "yes")
            L.append(
                f"| {cat} | {f.alpha:.4f} | "
                + (f"[{ci.lo:.4f}, {ci.hi:.4f}]" if ci else "–")
                + f" | {f.n} | {verdict} |"
            )
    if rep.joint_fits:
        L += [
            "",
            "## Joint fit L(N, D) = E + A/N^α + B/D^β (D in tokens) and the compute-optimal frontier",
            "",
            f"An exponent whose {lv} interval touches its bound or spans more than {IDENT_MAX_RATIO:g}× makes the "
            "fit *not identified*; so does a term that moves the loss by under 1%, or a compute-optimal loss "
            "that runs below every measured point. Such a fit gives no frontier.",
            "",
            f"| category | E | A | B | α ({lv} CI) | β ({lv} CI) | N_opt ∝ C^a | D_opt ∝ C^b | points | identified |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cat, j in rep.joint_fits.items():
            a, b = j.frontier_exponents
            ok = rep.joint_identified(cat)
            L.append(
                f"| {cat} | {j.E:.4g} | {j.A:.4g} | {j.B:.4g} | {j.alpha:.3f}{ci_text(j, 'alpha')} | "
                f"{j.beta:.3f}{ci_text(j, 'beta')} | "
                + (f"{a:.3f} | {b:.3f}" if ok else "– | –")
                + f" | {j.n} | "
                + ("yes" if ok else f"**not identified**: {rep.joint_caveats[cat]}")
                + " |"
            )
        L.append("")
        L.append(f"Model sizes: {len(rep.models)}.")
    if rep.isoflop or rep.isoflop_notes:
        L += [
            "",
            "## IsoFLOP profiles (Hoffmann et al. 2022, approach 2)",
            "",
            "Each size's final losses interpolated in log-log at shared compute budgets; per budget a parabola "
            "in log N gives N_opt. Budgets whose lowest loss is at (or next to) the edge of the sampled sizes "
            "are flagged and not used.",
            "",
        ]
        for cat, iso in rep.isoflop.items():
            cia = f" [{iso.ci['a'].lo:.3f}, {iso.ci['a'].hi:.3f}]" if "a" in iso.ci else ""
            cib = f" [{iso.ci['b'].lo:.3f}, {iso.ci['b'].hi:.3f}]" if "b" in iso.ci else ""
            L += [
                f"**{cat}**: N_opt ∝ C^{iso.a:.3f}{cia}, D_opt ∝ C^{iso.b:.3f}{cib} "
                f"({sum(b.used for b in iso.budgets)} of {len(iso.budgets)} budgets, {iso.points_used} points)",
                "",
                "| C (FLOPs) | N_opt | D_opt | points | used |",
                "|---|---|---|---|---|",
            ]
            L += [
                f"| {b.C:.3g} | {b.N_opt:.3g} | {b.D_opt:.3g} | {b.points} | {'yes' if b.used else 'no: ' + b.flag} |"
                for b in iso.budgets
            ]
            L.append("")
        for cat, why in rep.isoflop_notes.items():
            L.append(f"- {cat}: no IsoFLOP fit: {why}")
    L += prediction_markdown(rep)
    L += ["", "## Gradient spikes and emergence", ""]
    if not any(rep.spikes.values()):
        L.append(f"No grad-norm spikes (robust z > {SPIKE_Z:g} over a trailing median/MAD window) in any run.")
    for m, sp in rep.spikes.items():
        for s in sp:
            em = any(e.spike is s for e in rep.emergences.get(m, []))
            L.append(
                f"- {m}: spike at step {s.step:.0f} ({s.pairs:.0f} pairs), z = {s.z:.1f}"
                + (" — followed by a significant loss drop (emergence flag)" if em else "")
            )
    if rep.break_evidence:
        L += ["", "Where an eval curve broke (an *emergent* trend), the training curves there:", ""]
        L += [f"- {b.sentence()}" for b in rep.break_evidence]
    if phi:
        L += [
            "",
            "## Style: Phi between the model's preference and style indicators",
            "",
            "| feature | model | first milestone | last milestone |",
            "|---|---|---|---|",
        ]
        for feat, per in phi.items():
            for m, (x, y) in per.items():
                L.append(f"| {feat} | {m} | {y[0]:+.3f} ({x[0]:.0f} pairs) | {y[-1]:+.3f} ({x[-1]:.0f} pairs) |")
        if label_sources:
            L += ["", "Markdown labels, per eval set (docs/eval_sets.md):", ""]
            L += [f"- {s}: {src}" for s, src in label_sources.items()]
    if rep.figures:
        L += ["", "## Figures", ""] + [f"![{p.stem}](figures/{p.name})" for p in rep.figures if p.suffix == ".png"]
    if rep.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in rep.notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(L) + "\n")
    tmp.replace(path)
    return path


def _inside(b: Band, actual: float) -> str:
    return "–" if not math.isfinite(b.lo) else ("yes" if b.contains(actual) else "**no**")


def prediction_markdown(rep: Report) -> list[str]:
    if not rep.predictions:
        return []
    lv = f"{rep.level:.0%}"
    first = next(iter(rep.predictions.values()))
    L = [
        "",
        f"## Predicting {first.target} from the smaller sizes",
        "",
        "Two steps, as OLMo's model ladder (Bhagia et al. 2024, arXiv 2412.04403): loss L(N, D) fitted to the "
        "smaller sizes' runs (E + A/N^α + B/D^β when 3 or more sizes identify it, else A·N^-α·D^-β), then accuracy "
        f"from loss with a sigmoid fitted to every evaluation. {lv} prediction intervals for the target's runs "
        "(bootstrap over runs, both steps refitted, a run-to-run draw added; bench/results/predict_coverage.txt). "
        "*Predictable*: the target's actual loss at its last milestone lies inside the interval — the paper's "
        '"power law vs emergent" (arXiv 2505.10527 §3.2) as a test.',
        "",
    ]
    for cat in names.CATEGORIES:
        sp = rep.predictions.get(cat)
        if sp is None:
            continue
        p = sp.prediction
        L.append(f"**{cat}**: {prediction_sentence(sp)}")
        L.append("")
        if p.loss is not None:
            L += [
                f"| pairs | predicted loss ({lv}) | actual | error (pred − actual) | inside | predicted acc ({lv}) | actual acc |",
                "|---|---|---|---|---|---|---|",
            ]
            for i, x in enumerate(sp.pairs):
                act = sp.actual_loss[i] if sp.actual_loss is not None else math.nan
                acc = sp.actual_acc[i] if sp.actual_acc is not None else math.nan
                L.append(
                    f"| {pairs_label(float(x))} | {band_text(p.loss[i])} | "
                    + (
                        f"{act:.4g} | {(p.loss[i].pred - act) / act:+.1%} | {_inside(p.loss[i], act)}"
                        if math.isfinite(act)
                        else "– | – | –"
                    )
                    + f" | {band_text(p.acc[i]) if p.acc else '–'} | "
                    + (f"{acc:.4g}" if math.isfinite(acc) else "–")
                    + " |"
                )
            L.append("")
            s1 = p.step1
            L.append(
                f"Step 1 ({s1.form}, {s1.points} points of {s1.runs} runs): "
                + ", ".join(
                    f"{k} {v:.4g}" + (f" [{s1.ci[k].lo:.3g}, {s1.ci[k].hi:.3g}]" if k in s1.ci else "")
                    for k, v in s1.params.items()
                )
                + (
                    f". Step 2 ({p.step2.rows} rows): " + ", ".join(f"{k} {v:.4g}" for k, v in p.step2.params.items())
                    if p.step2
                    else ""
                )
                + "."
            )
        L += [f"- {n}" for n in p.notes]
        L.append("")
    sets = [(n, sp) for n, sp in rep.predictions.items() if n not in names.CATEGORIES]
    if sets:
        L += [
            "Per eval set, at the last milestone:",
            "",
            f"| set | category | predicted loss ({lv}) | actual | verdict |",
            "|---|---|---|---|---|",
        ]
        for n, sp in sets:
            p, last = sp.prediction, len(sp.pairs) - 1
            act = sp.actual_loss[last] if sp.actual_loss is not None else math.nan
            L.append(
                f"| {n} | {names.EVAL_SETS.get(n, '?')} | {band_text(p.loss[last]) if p.loss else '–'} | "
                + (f"{act:.4g}" if math.isfinite(act) else "–")
                + f" | {sp.verdict} |"
            )
        L.append("")
    if rep.backtests:
        L += [
            "Backtest: each size from the third up predicted from the sizes below it, at its last milestone:",
            "",
            f"| category | held-out size | from | predicted loss ({lv}) | actual | error | inside |",
            "|---|---|---|---|---|---|---|",
        ]
        for cat, bs in rep.backtests.items():
            for b in bs:
                p, last = b.prediction, len(b.pairs) - 1
                act = b.actual_loss[last] if b.actual_loss is not None else math.nan
                L.append(
                    f"| {cat} | {b.target} | {len(b.ladder)} sizes | {band_text(p.loss[last]) if p.loss else 'not identified'} | "
                    + (
                        f"{act:.4g} | {(p.loss[last].pred - act) / act:+.1%} | {_inside(p.loss[last], act)}"
                        if p.loss and math.isfinite(act)
                        else "– | – | –"
                    )
                    + " |"
                )
        L.append("")
    return L
