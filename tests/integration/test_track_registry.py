"""An exported reward-model folder logged to its cell's run and registered as a model version, on a
real `mlflow server`: the version links the run, the run lists the model, the files come back."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.fixtures.mlflow_server import unique_name
from worldpm_scaling.track.mlflow_tracker import MlflowTracker
from worldpm_scaling.track.registry import RegistryError, register_exported_model

pytestmark = pytest.mark.integration


def _folder(tmp_path, tag: str):
    f = tmp_path / f"export-{tag}"
    f.mkdir()
    (f / "config.json").write_text('{"model_type": "qwen2", "auto_map": {"AutoModel": "modeling_worldpm.WorldPM"}}')
    (f / "model.safetensors").write_bytes(b"weights-" + tag.encode())
    return f


def test_register_links_version_run_and_files(mlflow_server, tmp_path):
    sweep = unique_name("reg")
    tr = MlflowTracker(mlflow_server.url, spool_dir=tmp_path / "spool")
    parent = tr.start_sweep(sweep)
    run = tr.start_cell(
        sweep,
        "c1",
        name="tiny-xs-64-s0",
        parent_run_id=parent.run_id,
        params={"model.name": "tiny-xs", "data.pairs": 64},
    )
    run.log_metrics({"train/loss": 0.5}, step=7)
    run.finish("FINISHED")
    name = unique_name("worldpm-rm")
    v1 = register_exported_model(mlflow_server.url, sweep, "c1", _folder(tmp_path, "a"), name)
    v2 = register_exported_model(mlflow_server.url, sweep, "c1", _folder(tmp_path, "b"), name)
    assert (v1.version, v2.version) == (1, 2) and v1.run_id == run.run_id
    client = MlflowClient(mlflow_server.url)
    mv = client.get_model_version(name, "1")
    assert mv.run_id == run.run_id and mv.source == f"models:/{v1.model_id}" and mv.tags["cell_id"] == "c1"
    outs = client.get_run(run.run_id).outputs.model_outputs
    assert {o.model_id for o in outs} == {v1.model_id, v2.model_id} and {o.step for o in outs} == {7}
    lm = client.get_logged_model(v1.model_id)
    from mlflow.entities import LoggedModelStatus

    assert lm.source_run_id == run.run_id and lm.status == LoggedModelStatus.READY
    assert lm.params["model.name"] == "tiny-xs"
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    got = mlflow.artifacts.download_artifacts(f"models:/{name}/2", dst_path=str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "model.safetensors").read_bytes() == b"weights-b", got


def test_register_names_what_is_wrong(mlflow_server, tmp_path):
    sweep = unique_name("regbad")
    tr = MlflowTracker(mlflow_server.url, spool_dir=tmp_path / "spool")
    tr.start_cell(sweep, "c1", name="c1", parent_run_id=tr.start_sweep(sweep).run_id).finish("FINISHED")
    with pytest.raises(RegistryError, match="no config.json"):
        register_exported_model(mlflow_server.url, sweep, "c1", tmp_path, "x")
    with pytest.raises(RegistryError, match="no run of cell 'zz'"):
        register_exported_model(mlflow_server.url, sweep, "zz", _folder(tmp_path, "z"), "x")
    with pytest.raises(RegistryError, match="no MLflow experiment 'nope-"):
        register_exported_model(mlflow_server.url, unique_name("nope"), "c1", tmp_path / "export-z", "x")
