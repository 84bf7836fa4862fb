"""End to end on a real `mlflow server`: `wps train` of a tiny cell logs system metrics, its real
pairs and eval files as dataset inputs, and the source tags; `wps export --register NAME` puts the
exported folder on that run and registers it as a model version linked to the run."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.fixtures.mlflow_server import unique_name
from tests.fixtures.qwen_tokenizer import sweep_dict, tiny_qwen2_checkpoint
from worldpm_scaling.cli import main
from worldpm_scaling.track import query

pytestmark = [pytest.mark.integration]

SETS = ("rmbench_chat", "offsetbias")


def test_train_then_export_register(mlflow_server, tmp_path, monkeypatch):
    from worldpm_scaling.data.synth import SynthConfig, write

    for k in ("WPS_COMMAND", "WPS_COMMAND_PID", "WPS_SWEEP_FILE"):
        monkeypatch.delenv(k, raising=False)
    write(SynthConfig(pairs=120, seed=4, eval_pairs_per_set=8, questions_xml=5, vocab_size=600), tmp_path / "synth")
    vocab = json.loads((tmp_path / "synth" / "tokenizer.json").read_text())["model"]["vocab"]
    ck = tiny_qwen2_checkpoint(tmp_path / "Qwen2-tiny", tmp_path / "synth" / "tokenizer.json", vocab=len(vocab) + 8)
    name = unique_name("regcli")
    d = sweep_dict(name, ck, tmp_path / "synth", tmp_path / "runs", sets=SETS, ctx_len=512)
    d["tracking"] = {"backend": "mlflow", "uri": mlflow_server.url, "system_metrics_interval_s": 0.5}
    sweep = tmp_path / "cell.yaml"
    sweep.write_text(yaml.safe_dump(d))
    assert main(["train", str(sweep), "--cell", "0"]) == 0
    cell = next(iter(query.find_cell_runs(mlflow_server.url, name).values()))
    client = MlflowClient(mlflow_server.url)
    r = client.get_run(cell.run_id)
    assert "system/cpu_utilization_percentage" in r.data.metrics and cell.last_step == 8
    inputs = {(i.dataset.name, i.dataset.digest) for i in r.inputs.dataset_inputs}
    train = tmp_path / "synth" / "train.parquet"
    assert ("synth/train.parquet", hashlib.sha256(train.read_bytes()).hexdigest()[:10]) in inputs
    assert {n for n, _ in inputs} == {"synth/train.parquet", *SETS}
    assert r.data.tags["mlflow.source.name"] == f"wps train {sweep} --cell 0"
    parent = client.get_run(cell.parent_run_id)
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "sweep")] == ["sweep/cell.yaml"]

    model = unique_name("rm")
    out = tmp_path / "exported"
    assert main(["export", str(sweep), "--cell", "0", "--out", str(out), "--register", model]) == 0
    mv = client.get_model_version(model, "1")
    assert mv.run_id == cell.run_id and mv.tags["cell_id"] == cell.cell_id
    outs = client.get_run(cell.run_id).outputs.model_outputs
    assert [o.model_id for o in outs] == [mv.source.removeprefix("models:/")]
    files = {a.path for a in client.list_logged_model_artifacts(outs[0].model_id)}
    assert "config.json" in files and any(f.endswith(".safetensors") for f in files)
    # a second export of the same cell is version 2 of the same model
    assert main(["export", str(sweep), "--cell", "0", "--out", str(out), "--force", "--register", model]) == 0
    assert client.get_model_version(model, "2").run_id == cell.run_id
