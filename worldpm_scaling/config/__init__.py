"""Typed specs: what a sweep YAML may say, checked before anything runs.

Every spec is a frozen, kw-only dataclass whose field docstrings are the documentation. Loading goes
through one generic converter that rejects unknown keys (suggesting the closest valid name), checks
types, ranges and choices, and reports errors as ``FILE:LINE: field.path: message`` so a researcher
can fix a 200-line sweep file without guessing.

One job per module: errors.py (SpecError), schema.py (the spec dataclasses), identity.py (cell ids),
convert.py (mapping ⇄ dataclass), yaml_lines.py (YAML with line numbers), load.py (loading policy).
The names below are re-exported: import them from `worldpm_scaling.config`.
"""

from .convert import build, to_plain
from .errors import SpecError
from .identity import canonical_json, cell_id_from_fragments, cell_id_of, model_identity
from .load import load_cluster, load_sweep, validate_sweep
from .schema import (
    MAX_LOG2,
    MAX_NODES,
    SEED_MAX,
    ClusterSpec,
    Collation,
    DataSpec,
    EvalSetSpec,
    EvalSpec,
    MilestoneSpec,
    Mode,
    Resources,
    RunSpec,
    SweepSpec,
    TrackingSpec,
    TrainSpec,
    resolve_milestones,
)
from .yaml_lines import MAX_YAML_NODES, read_yaml

__all__ = [
    "build",
    "to_plain",
    "SpecError",
    "canonical_json",
    "cell_id_from_fragments",
    "cell_id_of",
    "model_identity",
    "load_cluster",
    "load_sweep",
    "validate_sweep",
    "MAX_LOG2",
    "MAX_NODES",
    "SEED_MAX",
    "ClusterSpec",
    "Collation",
    "DataSpec",
    "EvalSetSpec",
    "EvalSpec",
    "MilestoneSpec",
    "Mode",
    "Resources",
    "RunSpec",
    "SweepSpec",
    "TrackingSpec",
    "TrainSpec",
    "resolve_milestones",
    "MAX_YAML_NODES",
    "read_yaml",
]
