"""report.json (everything the report says, as plain data) and the output folder's write check."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AnalysisInputError
from .report_result import Report


def check_out_dir(out: Path) -> None:
    """A named error for an output folder that cannot be created or written, before any work."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".wps-write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise AnalysisInputError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def to_json(rep: Report) -> dict:
    """Everything the report says, as plain data (report.json)."""
    return _clean(
        {
            "sweep": rep.sweep,
            "mode": rep.mode,
            "level": rep.level,
            "models": {m: rep.n_of[m] for m in rep.models},
            "seeds": rep.seeds,
            "left_out": rep.left_out,
            "curve_notes": rep.curve_notes,
            "fits": [
                {
                    "category": c,
                    "model": m,
                    **f.to_dict(),
                    "trend": rep.trends[(c, m)].to_dict() if (c, m) in rep.trends else None,
                }
                for (c, m), f in rep.fits.items()
            ],
            "compute_fits": {
                c: {
                    **f.to_dict(),
                    "covers_zero": bool(f.ci.get("alpha") and f.ci["alpha"].contains(0.0)),
                    "envelope_points": int(rep.frontiers[c].x.size) if c in rep.frontiers else None,
                }
                for c, f in rep.compute_fits.items()
            },
            "joint_fits": {
                c: {
                    **j.to_dict(),
                    "identified": rep.joint_identified(c),
                    "not_identified": rep.joint_caveats.get(c, ""),
                }
                | ({} if rep.joint_identified(c) else {"frontier": None})
                for c, j in rep.joint_fits.items()
            },
            "isoflop": {c: f.to_dict() for c, f in rep.isoflop.items()},
            "isoflop_notes": rep.isoflop_notes,
            "spikes": {m: len(v) for m, v in rep.spikes.items()},
            "emergences": {m: len(v) for m, v in rep.emergences.items()},
            "break_evidence": [
                {
                    "category": b.category,
                    "model": b.model,
                    "run": b.run,
                    "break_pairs": b.break_pairs,
                    "window_pairs": [b.lo, b.hi],
                    "spikes": [s.pairs for s in b.spikes],
                    "emergence_flags": len(b.emergences),
                    "max_z": b.max_z,
                    "loss_before": b.loss_before,
                    "loss_after": b.loss_after,
                }
                for b in rep.break_evidence
            ],
            "predictions": {c: sp.to_dict() for c, sp in rep.predictions.items()},
            "backtests": {c: [b.to_dict() for b in bs] for c, bs in rep.backtests.items()},
            "notes": rep.notes,
            "headline": rep.headline(),
        }
    )


def write_json(rep: Report, path: Path) -> Path:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_json(rep), indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path
