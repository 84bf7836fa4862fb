"""Loading policy: a sweep file and its cluster profile read, converted and cross-checked
(validate_sweep) before anything runs."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from pathlib import Path

from ..names import EVAL_SETS
from .convert import _build, _Ctx, build
from .errors import SpecError
from .schema import ClusterSpec, SweepSpec
from .yaml_lines import read_yaml


def load_cluster(file: str | Path) -> ClusterSpec:
    """Load a cluster profile (slurm/*.yaml)."""
    data, lines = read_yaml(file)
    return build(ClusterSpec, data or {}, file=file, lines=lines)


def load_sweep(file: str | Path, *, cluster: str | Path | None = None) -> SweepSpec:
    """Load and validate a sweep YAML; `cluster` overrides the file's cluster profile."""
    file = Path(file)
    data, lines = read_yaml(file)
    if not isinstance(data, dict):
        raise SpecError("expected a mapping at the top level", file=file)
    data = dict(data)
    ctx = _Ctx(str(file), lines)
    if cluster is not None:
        data["cluster"] = str(cluster)
    prof = data.get("cluster")
    if isinstance(prof, str):
        candidates = [Path(prof), file.parent / prof, file.parent.parent / prof]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ctx.error(
                "cluster", f"profile file {prof!r} not found (looked in: {', '.join(str(c) for c in candidates)})"
            )
        data["cluster"] = load_cluster(found)
    data_block = data.get("data")
    if isinstance(data_block, dict) and data_block.get("tokens_per_pair") is None and data_block.get("stats_file"):
        if not isinstance(data_block["stats_file"], str):
            raise ctx.error("data.stats_file", f"expected a file path, got {data_block['stats_file']!r}")
        sf = Path(data_block["stats_file"])
        sf = sf if sf.is_absolute() or sf.is_file() else file.parent / sf
        try:
            stats = json.loads(Path(sf).read_text())
            if not isinstance(stats, dict):
                raise ValueError(f"expected a JSON object, got {type(stats).__name__}")
            data["data"] = {**data_block, "tokens_per_pair": float(stats["tokens_per_pair"])}
        except (OSError, ValueError, KeyError, TypeError) as e:
            why = (
                e.strerror
                if isinstance(e, OSError) and e.strerror
                else ("no key 'tokens_per_pair'" if isinstance(e, KeyError) else str(e))
            )
            raise ctx.error("data.stats_file", f"cannot read tokens_per_pair from {sf}: {why}") from None
    ev = data.get("eval")
    if isinstance(ev, dict) and isinstance(ev.get("extra"), dict) and "sets" not in ev:
        data["eval"] = {**ev, "sets": list(EVAL_SETS) + [n for n in ev["extra"] if n not in EVAL_SETS]}
    spec: SweepSpec = _build(SweepSpec, data, "", ctx)
    env_dir = os.environ.get("WPS_MODELS_DIR")
    if env_dir:  # the user's own models directory wins over the (shared) profile's
        spec = dataclasses.replace(spec, cluster=dataclasses.replace(spec.cluster, models_dir=env_dir))
    validate_sweep(spec, ctx)
    if spec.data.source == "synthetic":  # the old placeholder default: no data layer reads it
        raise ctx.error(
            "data.source",
            "name the training pairs file (Parquet or JSONL); for the synthetic "
            "forum run `wps data synth --out data/demo` and set data.source: data/demo/train.parquet",
        )
    return spec


def validate_sweep(spec: SweepSpec, ctx: _Ctx | None = None) -> None:
    """Cross-field checks the types cannot express."""
    ctx = ctx or _Ctx(None, {})
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.name):
        raise ctx.error("name", f"{spec.name!r}: use letters, digits, '.', '_', '-'")
    if not spec.models:
        raise ctx.error("models", "at least one model is required")
    names = [m.name for m in spec.models]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ctx.error("models", f"duplicate model names: {', '.join(sorted(dup))}")
    if spec.data.tokens_per_pair is None:
        raise ctx.error("data.tokens_per_pair", "give tokens_per_pair or a stats_file that has it")
    ms = spec.milestones
    if ms.pairs is not None:
        if not ms.pairs:
            raise ctx.error("milestones.pairs", "must not be empty")
        for i, p in enumerate(ms.pairs):
            if p <= 0:
                raise ctx.error(f"milestones.pairs[{i}]", f"must be > 0, got {p}")
            if p > spec.data.pairs:
                raise ctx.error(
                    f"milestones.pairs[{i}]", f"{p} pairs is beyond the data budget data.pairs={spec.data.pairs}"
                )
    else:
        if 2**ms.start_log2 > spec.data.pairs:
            raise ctx.error(
                "milestones.start_log2",
                f"2^{ms.start_log2} = {2**ms.start_log2} pairs is beyond the data budget data.pairs={spec.data.pairs}",
            )
        if ms.stop_log2 is not None:
            if 2**ms.stop_log2 > spec.data.pairs:
                raise ctx.error(
                    "milestones.stop_log2",
                    f"2^{ms.stop_log2} = {2**ms.stop_log2} pairs is beyond the data budget "
                    f"data.pairs={spec.data.pairs}",
                )
            if ms.stop_log2 < ms.start_log2:
                raise ctx.error("milestones.stop_log2", "must be ≥ start_log2")
    if spec.mode == "milestones" and spec.train.schedule != "constant":
        raise ctx.error(
            "train.schedule",
            f"{spec.train.schedule!r} decays towards one budget; milestone mode needs "
            "'constant' (use mode: grid for decaying schedules)",
        )
    first = min(spec.milestone_pairs())
    if first < spec.train.global_batch_pairs:
        field_ = "milestones.pairs" if ms.pairs is not None else "milestones.start_log2"
        raise ctx.error(
            field_,
            f"first milestone {first} pairs is less than one optimizer step "
            f"(train.global_batch_pairs={spec.train.global_batch_pairs})",
        )
    if isinstance(spec.train.micro_batch_pairs, int) and spec.train.micro_batch_pairs > spec.train.global_batch_pairs:
        raise ctx.error("train.micro_batch_pairs", "must be ≤ train.global_batch_pairs")
    known = set(EVAL_SETS) | set(spec.eval.extra)
    for name in spec.eval.extra:
        if name not in spec.eval.sets:
            raise ctx.error(
                f"eval.extra.{name}",
                f"registered but not in eval.sets, so it would be neither listed "
                f"nor scored: add {name!r} to eval.sets (or leave eval.sets out: the 12 WorldPM sets "
                "plus every extra set)",
            )
    for i, s in enumerate(spec.eval.sets):
        if s not in known:
            close = difflib.get_close_matches(s, sorted(known), n=1)
            raise ctx.error(
                f"eval.sets[{i}]",
                f"unknown eval set {s!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + f" (valid: {', '.join(sorted(known))})",
            )
    if not spec.seeds:
        raise ctx.error("seeds", "at least one seed is required (one cell per model and seed)")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise ctx.error("seeds", "duplicate seeds")
    if not spec.eval.sets:
        raise ctx.error(
            "eval.sets",
            "at least one eval set is required: a milestone is a point of an eval curve "
            "(leave eval.sets out for the 12 WorldPM sets)",
        )
