"""`wps export`: a trained cell out as a WorldPM-format Hugging Face reward model folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a cell's checkpoint as a WorldPM-format HF reward model folder",
        description="Plan SWEEP.yaml, pick one cell, and turn its checkpoint (the latest, or --step N; plain "
        "or DeepSpeed-sharded) into a folder laid out like the released WorldPM models: "
        "config.json (Qwen2 + the reward head, auto_map → modeling_worldpm.py in the folder), "
        "safetensors weights, and the tokenizer with a chat template that ends each conversation "
        "with the reward token. The QwenLM/WorldPM README's usage code scores it unchanged "
        "(AutoModel.from_pretrained(DIR, trust_remote_code=True)). An existing non-empty --out is "
        "replaced only with --force, and only when it is a previous export (it holds wps_export.json); the "
        "working directory, the cell's folder and the data's folders are refused. A warning names what "
        "vLLM (`vllm serve DIR --runner pooling`) could not serve: a head dim its CPU or GPU attention "
        "lacks, a linear head. Exit status: 0 written, 2 bad input.",
        epilog="examples:\n"
        "  wps export sweeps/demo.yaml --cell 0 --out exported/demo-0\n"
        "  wps export sweeps/demo.yaml --cell 3f9c2a --step 200 --dtype fp32 --out rm --force\n"
        "  wps export sweeps/demo.yaml --cell 0 --out exported/demo-0 --register demo-rm   # + MLflow registry\n"
        "then: a sweep model {path: exported/demo-0} fine-tunes it (its head included)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", help="sweep YAML")
    p.add_argument("--cell", required=True, help="cell index (0, 1, …) or cell id (prefix ok)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step to export (default: the latest)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16", help="weights dtype (default bf16)")
    p.add_argument("--max-shard-size", default="5GB", help="safetensors shard size (default 5GB)")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out when it is a previous export (holds wps_export.json); anything else is refused",
    )
    p.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="the sweep's output folder if not its out_dir (as `wps train --out`)",
    )
    p.add_argument(
        "--register",
        default=None,
        metavar="NAME",
        help="also log the folder to the cell's MLflow run (a logged model) and register it as a new "
        "version of registered model NAME (the runs table's Models column links it)",
    )
    p.add_argument(
        "--uri",
        default=None,
        help="tracking URI for --register (default: the sweep's tracking.uri, else $MLFLOW_TRACKING_URI, "
        "else sqlite:///mlflow.db)",
    )
    p.set_defaults(func=run)


def export(args: argparse.Namespace) -> Path:
    """Do the export the arguments ask for; returns the folder written."""
    import dataclasses

    from ..config import load_sweep
    from ..plan import plan, select
    from ..train.export import export_cell

    spec = load_sweep(args.sweep)
    if args.runs_dir:
        spec = dataclasses.replace(spec, out_dir=args.runs_dir)
    run_spec = select(plan(spec), args.cell)
    return export_cell(
        run_spec, args.out, step=args.step, dtype=args.dtype, force=args.force, max_shard_size=args.max_shard_size
    )


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..train.export import serving_warnings

    folder = export(args)
    print(f"exported {folder}")
    for w in serving_warnings(json.loads((folder / "config.json").read_text())):
        print(f"warning: vLLM cannot serve this shape: {w}", file=sys.stderr)
    if args.register:
        v = register_export(args, folder)
        print(f"registered {v.name} version {v.version} (run {v.run_id}, model {v.model_id})")
    return 0


def register_export(args: argparse.Namespace, folder: Path):
    """`--register NAME`: the exported folder onto the cell's run, as a version of model NAME."""
    import dataclasses

    from ..config import load_sweep
    from ..plan import plan, select
    from ..track.mlflow_store import TrackingError
    from ..track.registry import register_exported_model
    from . import CLIError

    spec = load_sweep(args.sweep)
    if args.runs_dir:
        spec = dataclasses.replace(spec, out_dir=args.runs_dir)
    run_spec = select(plan(spec), args.cell)
    try:
        return register_exported_model(
            args.uri or spec.tracking.uri,
            spec.tracking.experiment or spec.name,
            run_spec.cell_id,
            folder,
            args.register,
            sweep=spec.name,
        )
    except TrackingError as e:
        raise CLIError(f"--register: {e}") from e
