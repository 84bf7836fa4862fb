"""DeepSpeed configs: generated per ZeRO stage/offload from a RunSpec, validated offline by DeepSpeed's own
parser for the planned GPU count; the paper grid's 72B cell is pinned by a golden file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worldpm_scaling.config import load_sweep
from worldpm_scaling.plan import plan
from worldpm_scaling.train import DeepSpeedConfigError, deepspeed_config, validate_deepspeed_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "deepspeed_qwen2.5-72b.json"
VARIANTS = [
    (0, "none"),
    (1, "none"),
    (1, "optimizer"),
    (2, "none"),
    (2, "optimizer"),
    (3, "none"),
    (3, "optimizer"),
    (3, "optimizer+params"),
]


@pytest.fixture(scope="module")
def cell_72b():
    runs = [r for r in plan(load_sweep(REPO / "sweeps" / "worldpm.yaml")).runs if r.model.name == "qwen2.5-72b"]
    assert runs, "the paper grid has a 72B cell"
    return runs[0]


def configs(run):
    return {
        f"zero{s}" + ("" if o == "none" else f"_offload_{o}"): deepspeed_config(run, zero_stage=s, offload=o)
        for s, o in VARIANTS
    }


def test_72b_configs_match_the_golden_file(cell_72b):
    got = {
        "cell": {
            "model": cell_72b.model.name,
            "gpus": cell_72b.resources.gpus,
            "grad_accum": cell_72b.resources.grad_accum,
        },
        "configs": configs(cell_72b),
    }
    # regenerate after a deliberate change: python -m worldpm_scaling.train.deepspeed_config --golden
    assert got == json.loads(GOLDEN.read_text())


def test_batch_arithmetic_matches_the_plan(cell_72b):
    cfg = deepspeed_config(cell_72b)
    g = cell_72b.resources.gpus
    assert cfg["gradient_accumulation_steps"] == cell_72b.resources.grad_accum
    assert cfg["train_batch_size"] == cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * g
    assert cfg["train_batch_size"] >= cell_72b.train.global_batch_pairs
    assert cfg["bf16"]["enabled"] is True and cfg["zero_optimization"]["stage"] == cell_72b.train.zero_stage


def test_every_variant_passes_deepspeeds_own_parser_for_the_planned_gpus(cell_72b):
    for cfg in configs(cell_72b).values():
        validate_deepspeed_config(cfg, cell_72b.resources.gpus)


def test_validation_rejects_what_deepspeed_would_misread(cell_72b):
    cfg = deepspeed_config(cell_72b)
    g = cell_72b.resources.gpus
    with pytest.raises(DeepSpeedConfigError, match="unknown top-level.*zero_optimisation"):
        validate_deepspeed_config({**cfg, "zero_optimisation": {}}, g)
    with pytest.raises(DeepSpeedConfigError, match=f"{g + 1} ranks"):
        validate_deepspeed_config(cfg, g + 1)  # batch arithmetic no longer adds up
    with pytest.raises(DeepSpeedConfigError, match="zero_stage"):
        deepspeed_config(cell_72b, zero_stage=4)
    with pytest.raises(DeepSpeedConfigError, match="offload.*stage"):
        deepspeed_config(cell_72b, zero_stage=0, offload="optimizer")
    with pytest.raises(DeepSpeedConfigError, match="stage 3"):
        deepspeed_config(cell_72b, zero_stage=2, offload="optimizer+params")
