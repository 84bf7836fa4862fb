"""`wps predict`: what a larger model will reach, from a ladder of smaller runs (analysis/predict.py)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from .inputs import check_store, column, frame_from_file, read_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict a larger model's loss and accuracy from a ladder of smaller runs, with intervals",
        description="Two steps, as OLMo's model ladder (Bhagia et al. 2024, arXiv 2412.04403): (1) task loss "
        "L(N, D) = E + A/N^α + B/D^β fitted to the ladder's runs (log-space Huber, a grid of starts); "
        "(2) accuracy from loss, acc = b + a·σ(k·(L0 − L)), fitted to every row (intermediate "
        "checkpoints too). Chained, they predict the target. The 90% intervals are prediction "
        "intervals for one run of the target: whole runs are resampled (within each size when every "
        "size has 2 or more; with one run per size each point's residual is redrawn instead), both "
        "steps refitted, and a run-to-run draw added (calibration: "
        "bench/results/predict_coverage.txt). A design that cannot identify step 1 (fewer than 3 "
        "distinct N or D) prints no number; --form auto then falls back to L = A·N^-α·D^-β (2 sizes "
        "suffice) and says so. Exponents are always fitted.\n\n"
        "TABLE mode: any CSV/Parquet with N, D and loss columns. With --run, step 1 uses each run's "
        "final row (its largest D) and step 2 every row; without it every row is a step-1 point.\n"
        "SWEEP mode (a sweep YAML or name, as `wps analyze`): predict the largest size (or --target) "
        "from the smaller ones for each eval category and set, at each of its milestones, with the "
        "actual values when it has run; a --target that was never trained (a catalogue model such "
        "as qwen2.5-72b) is predicted at the sweep's milestones.",
        epilog="examples:\n"
        "  wps predict ladder.csv --x N,D --loss loss --acc acc --run run --at N=7e9,D=1.4e11\n"
        "  wps predict ladder.csv --x N,D --loss loss --at N=7e9,D=1.4e11 --json\n"
        "  wps predict sweeps/demo.yaml --from out/demo/runs.parquet          # the largest size\n"
        "  wps predict demo --target qwen2.5-72b --tracking-uri sqlite:///mlflow.db\n"
        '--json (TABLE): {"loss": {"pred", "lo", "hi"}, "acc": {…} or null, "step1": {…}, '
        '"step2": {…}, "notes": […], "distance": {N, D, compute}}; loss is null when step 1 is '
        "not identified. Exit 2 with a named error on bad input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="TABLE|SWEEP", help="CSV/Parquet table (with --x), or a sweep YAML or name")
    p.add_argument("--x", default=None, help="TABLE: the 'N,D' columns (parameters, training tokens)")
    p.add_argument("--loss", default=None, help="TABLE: the task-loss column")
    p.add_argument("--acc", default=None, help="TABLE: the accuracy column (values in [0, 1]): adds step 2")
    p.add_argument(
        "--run",
        default=None,
        help="TABLE: the run column (step 1 uses each run's final row; the bootstrap resamples whole runs)",
    )
    p.add_argument("--at", default=None, metavar="N=<n>,D=<d>", help="TABLE: the target, e.g. N=7e9,D=1.4e11")
    p.add_argument(
        "--target",
        default=None,
        metavar="MODEL",
        help="SWEEP: the size to predict (default: the "
        "largest); a catalogue model the sweep never trained is predicted at its milestones",
    )
    p.add_argument(
        "--from",
        dest="from_file",
        default=None,
        metavar="FILE",
        help="SWEEP: read a tidy CSV/Parquet (wps analyze's runs.parquet) instead of MLflow",
    )
    p.add_argument("--tracking-uri", default=None, help="SWEEP: MLflow URI (default as `wps analyze`)")
    p.add_argument(
        "--form",
        choices=("auto", "chinchilla", "loglinear"),
        default="auto",
        help="step-1 form (default auto: chinchilla when the design identifies it, else loglinear)",
    )
    p.add_argument(
        "--fit",
        choices=("huber", "ls"),
        default="huber",
        help="step-1 loss: Huber in log space with its threshold at 1.345 robust σ of the residuals "
        "(default) or plain least squares",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (default 1000; 0 = no intervals)")
    p.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_predict)


def _bad(msg: str):
    from ..analysis.errors import AnalysisInputError

    return AnalysisInputError(msg)


def parse_at(text: str) -> tuple[float, float]:
    """'N=7e9,D=1.4e11' → (7e9, 1.4e11), with a named error for anything else."""
    vals: dict[str, float] = {}
    for part in (text or "").split(","):
        k, sep, text_v = part.partition("=")
        k = k.strip()
        if not sep or k not in ("N", "D"):
            raise _bad(f"--at takes N=<n>,D=<d> (e.g. N=7e9,D=1.4e11), got {text!r}")
        try:
            vals[k] = float(text_v)
        except ValueError:
            raise _bad(f"--at: {k}={text_v.strip()!r} is not a number") from None
    if set(vals) != {"N", "D"}:
        raise _bad(f"--at needs both N and D, got {text!r}")
    for k, v in vals.items():
        if not math.isfinite(v) or v <= 0:
            raise _bad(f"--at: target {k} must be positive, got {v:g}")
    return vals["N"], vals["D"]


def run_predict(args: argparse.Namespace) -> int:
    if not 0 < args.level < 1:
        raise _bad(f"--level must be between 0 and 1 (exclusive), got {args.level:g}")
    if args.bootstrap < 0:
        raise _bad(f"--bootstrap must be >= 0 (0 = no intervals), got {args.bootstrap}")
    table_opts = [o for o in ("x", "loss", "acc", "run", "at") if getattr(args, o) is not None]
    if table_opts:
        if args.target or args.from_file:
            raise _bad("--target/--from are for a sweep; --x/--loss/--at for a table: not both")
        return _run_table(args)
    return _run_sweep(args)


def _run_table(args: argparse.Namespace) -> int:
    from ..analysis.predict import make_ladder, predict

    for o in ("x", "loss", "at"):
        if getattr(args, o) is None:
            raise _bad(f"a table needs --x N,D, --loss COL and --at N=<n>,D=<d> (missing --{o})")
    xs = [c.strip() for c in args.x.split(",")]
    if len(xs) != 2:
        raise _bad(f"--x takes two columns 'N,D', got {xs}")
    N_t, D_t = parse_at(args.at)
    df = read_table(args.source)
    cols = {k: column(df, c, args.source) for k, c in (("N", xs[0]), ("D", xs[1]), ("loss", args.loss))}
    acc = column(df, args.acc, args.source) if args.acc else None
    if args.run is not None and args.run not in df.columns:
        raise _bad(f"{args.source}: no column {args.run!r} (columns: {', '.join(map(str, df.columns))})")
    run = df[args.run].astype(str).to_numpy() if args.run else None
    lad = make_ladder(
        cols["N"],
        cols["D"],
        cols["loss"],
        acc=acc,
        run=run,
        names={"N": xs[0], "D": xs[1], "loss": args.loss, "acc": args.acc or "acc", "run": args.run or "run"},
    )
    p = predict(
        lad,
        N_t,
        D_t,
        form=args.form,
        bootstrap=args.bootstrap,
        level=args.level,
        seed=args.seed,
        delta=None if args.fit == "ls" else "auto",
    )
    d = p.to_dict(0)
    if args.json:
        json.dump(_finite(d), sys.stdout)
        print()
        return 0
    print(
        f"prediction at N={N_t:.4g}, D={D_t:.4g} from {p.step1.runs} runs ({p.step1.points} step-1 points"
        + (f", {p.step2.rows} step-2 rows" if p.step2 else "")
        + f"; {args.level:.0%} prediction intervals, "
        f"{p.bootstrap} bootstrap replicates over runs)"
    )
    for line in describe(p, 0):
        print("  " + line)
    return 0


def describe(p, i: int) -> list[str]:
    """The prediction at target i, its two steps and its notes, as text lines."""
    out = []
    if p.loss is None:
        out.append("loss: not identified (" + "; ".join(p.step1.not_identified) + "): no prediction")
    else:
        iv = lambda b: f"  [{b.lo:.4g}, {b.hi:.4g}]" if math.isfinite(b.lo) else "  (no interval: --bootstrap 0)"
        out.append(f"loss: {p.loss[i].pred:.4g}{iv(p.loss[i])}")
        if p.acc is not None:
            out.append(f"acc:  {p.acc[i].pred:.4g}{iv(p.acc[i])}")
        s1 = p.step1
        form = "L = E + A/N^α + B/D^β" if s1.form == "chinchilla" else "L = A·N^-α·D^-β"
        out.append(f"step 1 ({form}, {s1.points} points, log residual sd {s1.residual_sd:.3g}):")
        for k, v in s1.params.items():
            ci = s1.ci.get(k)
            out.append(f"  {k:<6} = {v:.5g}" + (f"   [{ci.lo:.5g}, {ci.hi:.5g}]" if ci else ""))
        if p.step2 is not None:
            out.append(
                f"step 2 (acc = b + a·σ(k·(L0 − L)), {p.step2.rows} rows, residual sd {p.step2.residual_sd:.3g}):"
            )
            for k, v in p.step2.params.items():
                ci = p.step2.ci.get(k)
                out.append(f"  {k:<6} = {v:.5g}" + (f"   [{ci.lo:.5g}, {ci.hi:.5g}]" if ci else ""))
    dist = p.distance
    out.append(
        f"distance: {dist['N']:.3g}x the ladder's largest N, {dist['D']:.3g}x its largest D, "
        f"{dist['compute']:.3g}x its largest compute"
    )
    out += [f"note: {n}" for n in p.notes]
    return out


def _finite(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def resolve_target(target: str, n_of: dict[str, float], sweep: str) -> float:
    """N of a size of the sweep, else of a catalogue model (a target never trained), else a named error."""
    from .. import models as catalogue

    if target in n_of:
        return float(n_of[target])
    try:
        return float(catalogue.get(target).params_non_embedding)
    except Exception as e:  # noqa: BLE001 — an unknown model name is bad input
        raise _bad(
            f"--target {target!r}: not a size of sweep {sweep!r} ({', '.join(sorted(n_of))}) nor a "
            f"catalogue model ({e})"
        ) from None


def sweep_milestones(spec) -> list[float] | None:
    """The milestones (pairs) of a sweep's plan: where a never-trained target is predicted."""
    from ..plan import plan

    return sorted({float(m) for r in plan(spec).runs for m in r.milestones}) or None


def _run_sweep(args: argparse.Namespace) -> int:
    from ..analysis import load
    from ..analysis.predict import predict_sweep_metric
    from ..analysis.report import is_grid, sweep_metric_names

    sweep, uri, experiment, cells = args.source, args.tracking_uri, None, None
    milestones = None
    if sweep.endswith((".yaml", ".yml")):
        from ..config import load_sweep
        from ..plan import plan

        spec = load_sweep(sweep)
        sweep, experiment = spec.name, spec.tracking.experiment
        uri = uri or spec.tracking.uri
        cells = {r.cell_id for r in plan(spec).runs}
        milestones = sweep_milestones(spec)
    if args.from_file:
        df = frame_from_file(args.from_file)
    else:
        uri = load.default_uri(uri)
        check_store(uri)  # a named error in seconds when the server is away
        df = load.from_mlflow(sweep, tracking_uri=uri, experiment=experiment, cells=cells)
    if "status" in df.columns:
        df = df[df["status"] == "FINISHED"]
    if df.empty:
        raise _bad(f"sweep {sweep!r}: no FINISHED runs to predict from")
    n_of = df.groupby("model")["N"].first().to_dict()
    target = args.target or max(n_of, key=lambda m: n_of[m])
    target_N = resolve_target(target, n_of, sweep)
    grid = is_grid(df)
    results = []
    for name in sweep_metric_names(df):
        sp = predict_sweep_metric(
            df,
            name,
            target,
            target_N,
            n_of=n_of,
            grid=grid,
            bootstrap=args.bootstrap,
            level=args.level,
            seed=args.seed,
            form=args.form,
            pairs=milestones,
        )
        if sp is not None:
            results.append(sp)
    if not results:
        raise _bad(f"sweep {sweep!r}: fewer than 2 runs smaller than {target} (N={target_N:.3g}) in any eval metric")
    if args.json:
        json.dump(_finite([r.to_dict() for r in results]), sys.stdout)
        print()
        return 0
    from ..analysis.report import prediction_lines

    for line in prediction_lines(results, level=args.level):
        print(line)
    return 0
