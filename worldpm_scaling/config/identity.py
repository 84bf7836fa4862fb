"""Run identity: the content hash that names a cell (its id), from the fields that decide its result.
Cell ids are on disk and in MLflow: any change here renames every cell (tests/golden pins them)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..models import ModelShape
from .convert import to_plain


def model_identity(model: ModelShape) -> dict:
    """The model's part of a cell id: its shape and init, and where its weights come from — the base's
    name, not the folder it sits in on one cluster (a cell keeps its id when moved)."""
    d = to_plain(model)
    if model.base is not None and model.init == "pretrained":
        d.pop("path", None)
    if model.base is None and model.init in (None, "random"):
        d.pop("init", None)  # random init from a shape: the id it had before bases existed
        d.pop("base", None)
    return d


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def cell_id_of(identity: dict) -> str:
    """Short content hash: the same identity always gives the same id."""
    return cell_id_from_fragments({k: canonical_json(v) for k, v in identity.items()})


def cell_id_from_fragments(fragments: dict[str, str]) -> str:
    """`cell_id_of` from already-serialised values (the planner serialises shared parts once).

    Byte-identical to hashing `canonical_json(identity)`: keys sorted, no whitespace.
    """
    blob = "{" + ",".join(f"{json.dumps(k)}:{fragments[k]}" for k in sorted(fragments)) + "}"
    return hashlib.sha256(blob.encode()).hexdigest()[:10]
