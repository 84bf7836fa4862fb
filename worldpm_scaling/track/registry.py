"""An exported reward model on its cell's run and in the MLflow Model Registry (`wps export --register`).

MLflow 3 keeps models as *logged models*: an entity of the experiment with its own artifact folder,
linked to the run that produced it (the run's output, which the runs table's Models column shows) and
promotable to a registered model version. The exported folder (a Hugging Face folder the WorldPM usage
code loads with `trust_remote_code=True`) is uploaded once, to the logged model; the version's source
is `models:/<model_id>`, so `mlflow.artifacts.download_artifacts("models:/NAME/VERSION")` or the
registry UI leads back to the exact files, the run, its cell and its metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .mlflow_store import ROLE_TAG, Store, TrackingError, filter_literal

MODEL_TYPE = "worldpm-reward-model"


class RegistryError(ValueError):
    """Bad input for registering a model: no such folder, experiment or cell run (names it)."""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    model_id: str
    source: str


def _cell_run(store: Store, experiment: str, cell_id: str, sweep: str | None):
    exp = store.experiment_id(experiment, create=False)
    if exp is None:
        raise RegistryError(f"no MLflow experiment {experiment!r} on {store.safe_uri} (has the sweep run?)")
    filt = f"tags.cell_id = {filter_literal(cell_id)} and tags.`{ROLE_TAG}` = 'cell'"
    if sweep:
        filt += f" and tags.sweep = {filter_literal(sweep)}"
    runs = store.find_runs(exp, filt)
    if not runs:
        raise RegistryError(f"no run of cell {cell_id!r} in experiment {experiment!r} on {store.safe_uri}")
    return exp, runs[0]


def register_exported_model(
    uri: str | None,
    experiment: str,
    cell_id: str,
    folder: str | os.PathLike,
    name: str,
    *,
    sweep: str | None = None,
    description: str | None = None,
) -> RegisteredVersion:
    """Upload `folder` as a logged model of cell `cell_id`'s run (its oldest, as the tracker attaches)
    in `experiment`, and register it as a new version of registered model `name` (created if needed)."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise RegistryError(f"{folder}: not an exported model folder (no config.json)")
    if not name or not name.strip():
        raise RegistryError("--register needs a model name")
    store = Store(uri)
    if store.is_http and not store.healthy(timeout_s=10):
        raise TrackingError(f"MLflow server {store.safe_uri} is not answering /health")
    exp, run = _cell_run(store, experiment, cell_id, sweep)
    client = store.client
    tags = {
        "cell_id": cell_id,
        "sweep": run.data.tags.get("sweep", sweep or ""),
        "source_folder": str(folder.resolve()),
    }
    params = {
        k: run.data.params[k]
        for k in ("model.name", "data.pairs", "model.params_non_embedding")
        if k in run.data.params
    }
    model = client.create_logged_model(
        exp,
        name=f"reward-model-{cell_id}",
        source_run_id=run.info.run_id,
        tags=tags,
        params=params,
        model_type=MODEL_TYPE,
    )
    try:
        client.log_model_artifacts(model.model_id, str(folder))
    except Exception:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    step = store.max_step(run.info.run_id) or 0
    client.log_outputs(run.info.run_id, [LoggedModelOutput(model_id=model.model_id, step=step)])
    try:
        client.create_registered_model(
            name, description="WorldPM-format Bradley-Terry reward models exported by `wps export`"
        )
    except Exception as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
            raise
    source = f"models:/{model.model_id}"
    mv = client.create_model_version(
        name,
        source=source,
        run_id=run.info.run_id,
        model_id=model.model_id,
        tags=tags,
        description=description or f"cell {cell_id}, step {step}",
    )
    return RegisteredVersion(
        name=name, version=int(mv.version), run_id=run.info.run_id, model_id=model.model_id, source=source
    )
