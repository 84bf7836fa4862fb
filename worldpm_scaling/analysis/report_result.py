"""What `analyze` found for one sweep (the Report) and its headline, the summary `make demo` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import names
from .frontier import FrontierFit
from .isoflop import IsoflopFit, Profiles
from .joint import ChinchillaFit
from .powerlaw import PowerFit
from .predict import SweepPrediction
from .prediction_text import prediction_sentence
from .spikes import BreakEvidence, Emergence, Spike, break_sentences
from .trends import Trend


def ci_text(j: ChinchillaFit, k: str) -> str:
    """` [lo, hi]` of a joint fit's parameter, or '' without an interval."""
    return f" [{j.ci[k].lo:.3f}, {j.ci[k].hi:.3f}]" if k in j.ci else ""


@dataclass
class Report:
    sweep: str
    models: list[str]
    n_of: dict[str, float]
    level: float = 0.9
    mode: str = "milestones"
    fits: dict[tuple[str, str], PowerFit] = field(default_factory=dict)
    trends: dict[tuple[str, str], Trend] = field(default_factory=dict)
    compute_fits: dict[str, PowerFit] = field(default_factory=dict)
    frontiers: dict[str, FrontierFit] = field(default_factory=dict)
    joint_fits: dict[str, ChinchillaFit] = field(default_factory=dict)
    joint_caveats: dict[str, str] = field(default_factory=dict)
    isoflop: dict[str, IsoflopFit] = field(default_factory=dict)
    isoflop_notes: dict[str, str] = field(default_factory=dict)
    isoflop_profiles: dict[str, Profiles] = field(default_factory=dict)
    left_out: list[dict] = field(default_factory=list)
    """cells not fitted: {cell, model, status, reason}"""
    curve_notes: list[dict] = field(default_factory=list)
    """curves too short or incomplete: {category, model, points, reason}"""
    seeds: dict[str, list[int]] = field(default_factory=dict)
    """model → the seeds of its runs. Eval curves are the mean over them; spikes are per run."""
    spikes: dict[str, list[Spike]] = field(default_factory=dict)
    """run label (the model, or `model seed s` when it has several seeds) → its grad-norm spikes"""
    emergences: dict[str, list[Emergence]] = field(default_factory=dict)
    break_evidence: list[BreakEvidence] = field(default_factory=list)
    """Per emergent trend: did its run's grad norm spike, with a loss drop, where the eval curve broke?"""
    predictions: dict[str, SweepPrediction] = field(default_factory=dict)
    """eval category or set → the target size predicted from the smaller ones (analysis/predict.py)."""
    backtests: dict[str, list[SweepPrediction]] = field(default_factory=dict)
    """category → each size from the third up, predicted from the sizes below it."""
    notes: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    report_path: Path | None = None
    json_path: Path | None = None

    def seeds_phrase(self) -> str:
        """', curves averaged over 4 seeds' when some model has several seeds, else ''."""
        counts = sorted({len(v) for v in self.seeds.values()})
        if not counts or counts == [1]:
            return ""
        k = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        return f", curves averaged over {k} seeds"

    def joint_identified(self, cat: str) -> bool:
        return cat in self.joint_fits and not self.joint_caveats.get(cat)

    def headline(self) -> str:
        lines = [
            f"sweep {self.sweep}: fitted L = A·pairs^-α per category and model size "
            f"({self.level:.0%} bootstrap CI)" + self.seeds_phrase()
        ]
        for cat in names.CATEGORIES:
            parts = []
            for m in self.models:
                f, t = self.fits.get((cat, m)), self.trends.get((cat, m))
                if f is None:
                    continue
                ci = f.ci.get("alpha")
                parts.append(
                    f"{m} α={f.alpha:.3f}"
                    + (f" [{ci.lo:.3f}, {ci.hi:.3f}]" if ci else "")
                    + (f" {t.kind}" if t else f" (no class: {f.n} points)")
                )
            if parts:
                lines.append(f"  {cat:<11} " + "; ".join(parts))
        for cat, f in self.compute_fits.items():
            ci = f.ci.get("alpha")
            lines.append(
                f"  {cat:<11} vs compute (frontier): α={f.alpha:.3f}"
                + (f" [{ci.lo:.3f}, {ci.hi:.3f}]" if ci else "")
                + (" — interval covers 0: no scaling with compute" if ci and ci.contains(0.0) else "")
            )
        for cat, j in self.joint_fits.items():
            a, b = j.frontier_exponents
            if self.joint_caveats.get(cat):
                lines.append(f"  {cat:<11} joint L(N,D): not identified ({self.joint_caveats[cat]}); no frontier")
            else:
                lines.append(
                    f"  {cat:<11} joint L(N,D): α={j.alpha:.3f}{ci_text(j, 'alpha')} β={j.beta:.3f}{ci_text(j, 'beta')} → "
                    f"N_opt ∝ C^{a:.2f}, D_opt ∝ C^{b:.2f}"
                )
        for cat, iso in self.isoflop.items():
            lines.append(
                f"  {cat:<11} IsoFLOP: N_opt ∝ C^{iso.a:.2f}"
                + (f" [{iso.ci['a'].lo:.2f}, {iso.ci['a'].hi:.2f}]" if "a" in iso.ci else "")
                + f", D_opt ∝ C^{iso.b:.2f}"
                + (f" [{iso.ci['b'].lo:.2f}, {iso.ci['b'].hi:.2f}]" if "b" in iso.ci else "")
                + f" ({sum(b.used for b in iso.budgets)} of {len(iso.budgets)} budgets)"
            )
        for cat, why in self.isoflop_notes.items():
            lines.append(f"  {cat:<11} IsoFLOP: no fit ({why})")
        if self.left_out:
            lines.append(
                f"  left out: {len(self.left_out)} cell(s) not fitted: "
                + "; ".join(f"{c['model']} {c['cell']} {c['status']}" for c in self.left_out)
            )
        short = [c for c in self.curve_notes if c.get("kind") != "no-class"]
        if short:
            lines.append(
                f"  incomplete curves: {len(short)} ("
                + "; ".join(f"{c['category']}/{c['model']}: {c['points']} points" for c in short)
                + "); see the report"
            )
        n_sp = sum(len(v) for v in self.spikes.values())
        n_em = sum(len(v) for v in self.emergences.values())
        lines.append(
            f"  grad-norm spikes: {n_sp}; emergence flags (spike then loss drop): {n_em}"
            + "".join(
                f"; {m} at {e.spike.pairs:.0f} pairs"
                for m, es in self.emergences.items()
                for e in es
                if e.spike.pairs is not None
            )
        )
        lines += [f"  {x}" for x in break_sentences(self.break_evidence)]  # report.md has one line per seed
        for cat in names.CATEGORIES:
            sp = self.predictions.get(cat)
            if sp is not None:
                lines.append(f"  {cat:<11} " + prediction_sentence(sp))
        return "\n".join(lines)
