"""`wps fit` and `wps analyze`."""

from __future__ import annotations

import argparse
import json
import sys

from .inputs import check_store, column, frame_from_file, read_table


def register(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fit",
        help="fit a power law, L(N, D) or IsoFLOP profiles to columns of a CSV, with bootstrap intervals",
        description="Fit L = E + A·x^-α (--form power) or L = E + A/N^α + B/D^β (--form chinchilla) to "
        "columns of a CSV (or Parquet) file: log-space Huber loss from a grid of starts, "
        "L-BFGS, bootstrap confidence intervals. The exponent is always fitted. A chinchilla fit "
        "whose exponent intervals touch a bound or span more than 3x is reported not identified, "
        "without a frontier. --form isoflop (Hoffmann et al. 2022, approach 2): rows sharing a "
        "budget form one profile; a parabola in log N gives each budget's N_opt (budgets whose "
        "minimum is at the edge of the sampled sizes are flagged, not used), then N_opt ∝ C^a and "
        "D_opt ∝ C^b with bootstrap intervals.",
        epilog="examples:\n"
        "  wps fit runs.csv --x compute --y 'test loss' --form power --fix-E 0\n"
        "  wps fit runs.csv --x N,D --y loss --form chinchilla --json\n"
        "  wps fit isoflop.csv --x C,N --y loss --form isoflop --json     # D_opt = C/(6 N_opt)\n"
        "  wps fit isoflop.csv --x C,N,D --y loss --form isoflop          # D_opt from a parabola in log D",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("file", help="CSV or Parquet file")
    f.add_argument(
        "--x",
        required=True,
        help="x column (power), 'N,D' columns (chinchilla) or 'BUDGET,N[,D]' (isoflop); names may contain spaces",
    )
    f.add_argument("--y", required=True, help="the loss column")
    f.add_argument("--form", choices=("power", "chinchilla", "isoflop"), default="power")
    f.add_argument(
        "--fix-E",
        type=float,
        default=None,
        metavar="E",
        help="power form only: fix the irreducible loss (0 = pure power law (C/C0)^-α)",
    )
    f.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000; 0 = none)")
    f.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (power/chinchilla: E, A, alpha[, B, "
        "beta], ci[, identified]; isoflop: a, b, a_ci, b_ci, budgets, points_used)",
    )
    f.set_defaults(func=run_fit)

    a = sub.add_parser(
        "analyze",
        help="fits, trend classes, spikes, style Phi, figures and report.md for a sweep",
        description="Load a sweep's runs from MLflow (or a tidy CSV/Parquet export), fit L = A·pairs^-α per "
        "eval category and model size with bootstrap intervals, fit the joint L(N, D) and its "
        "compute-optimal frontier, classify each curve as power-law / emergent / flat, flag grad-norm spikes and emergence, plot Phi of style, "
        "write figures (PDF, SVG, PNG) and report.md to --out, and log them to the sweep's "
        "parent run.",
        epilog="examples:\n"
        "  wps analyze sweeps/demo.yaml --out out/demo        # store and experiment from the sweep\n"
        "  wps analyze demo --out out/demo --include-unfinished   # also fit FAILED/KILLED/RUNNING cells\n"
        "  wps analyze demo --tracking-uri http://mlflow:5000 --out out/demo\n"
        "  wps analyze demo --from out/demo/runs.parquet --out out/x   # offline, nothing logged\n"
        "writes OUT/report.md, OUT/report.json, OUT/figures/*.{pdf,svg,png} and OUT/runs.parquet (the "
        "fetched runs). Only FINISHED cells are fitted by default; every cell left out and every curve "
        "too short or missing milestones is listed in the report with the reason.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument(
        "sweep",
        help="sweep name (the MLflow experiment: every cell run in it) or a sweep YAML "
        "(only the cells of its current plan: runs left by an edited earlier version are skipped)",
    )
    a.add_argument("--out", required=True, help="output folder for figures/ and report.md")
    a.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow URI (default: the sweep YAML's tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    a.add_argument(
        "--from", dest="from_file", default=None, metavar="FILE", help="read a tidy CSV/Parquet instead of MLflow"
    )
    a.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per fit (default 1000)")
    a.add_argument(
        "--include-unfinished",
        action="store_true",
        help="fit cells whose run is FAILED, KILLED or still RUNNING too (default: FINISHED only)",
    )
    a.add_argument("--no-log", action="store_true", help="do not log the report to the sweep's parent run")
    a.add_argument(
        "--target",
        default=None,
        metavar="MODEL",
        help="the size to predict from the smaller ones (default: the largest; a catalogue model the "
        "sweep never trained, e.g. qwen2.5-72b, is predicted at the sweep's milestones; `wps predict`)",
    )
    a.set_defaults(func=run_analyze)


def run_fit(args: argparse.Namespace) -> int:
    from ..analysis.errors import AnalysisInputError
    from ..analysis.fits import ChinchillaFit, PowerFit, fit_chinchilla, fit_power

    _check_level_bootstrap(args)
    df = read_table(args.file)
    xs = [c.strip() for c in args.x.split(",")]
    y = column(df, args.y, args.file)
    if args.form == "isoflop":
        return _run_isoflop(args, df, xs, y)
    fit: PowerFit | ChinchillaFit
    if args.form == "power":
        if len(xs) != 1:
            raise AnalysisInputError(f"--form power takes one --x column, got {xs}")
        fit = fit_power(
            column(df, xs[0], args.file),
            y,
            fix_E=args.fix_E,
            bootstrap=args.bootstrap,
            level=args.level,
            seed=args.seed,
            x_name=xs[0],
            y_name=args.y,
        )
        keys: tuple[str, ...] = ("E", "A", "alpha")
    else:
        if len(xs) != 2:
            raise AnalysisInputError(f"--form chinchilla takes two --x columns 'N,D', got {xs}")
        if args.fix_E is not None:
            raise AnalysisInputError("--fix-E applies to --form power only")
        fit = fit_chinchilla(
            column(df, xs[0], args.file),
            column(df, xs[1], args.file),
            y,
            bootstrap=min(args.bootstrap, 200),
            level=args.level,
            seed=args.seed,
            names=(xs[0], xs[1]),
            y_name=args.y,
        )
        keys = ("E", "A", "B", "alpha", "beta")
    d = fit.to_dict()
    if args.json:
        extra = {k: d[k] for k in ("identified", "not_identified", "frontier") if k in d}
        json.dump(
            {
                **{k: d[k] for k in keys},
                "ci": {k: d["ci"][k] for k in keys if k in d["ci"]},
                "n": d["n"],
                "level": d["level"],
                **extra,
            },
            sys.stdout,
        )
        print()
        return 0
    print(
        f"{args.form} fit of {args.y!r} on {', '.join(repr(x) for x in xs)} ({d['n']} points, "
        f"{args.level:.0%} bootstrap intervals)"
    )
    for k in keys:
        ci = d["ci"].get(k)
        print(f"  {k:<6} = {d[k]:.6g}" + (f"   [{ci[0]:.6g}, {ci[1]:.6g}]" if ci else ""))
    if args.form == "power" and d.get("extrapolation_rel_error") is not None:
        print(f"  leave-largest-out extrapolation error: {d['extrapolation_rel_error']:.2%}")
    if args.form == "chinchilla":
        fr = d["frontier"]
        if fr is None:
            print(f"  not identified ({'; '.join(d['not_identified'])}): no compute-optimal frontier")
        else:
            print(
                f"  compute-optimal frontier: N_opt ∝ C^{fr['N_opt_exponent']:.3f}, D_opt ∝ C^{fr['D_opt_exponent']:.3f}"
            )
    return 0


def _check_level_bootstrap(args: argparse.Namespace) -> None:
    from ..analysis.errors import AnalysisInputError

    if hasattr(args, "level") and not 0 < args.level < 1:
        raise AnalysisInputError(f"--level must be between 0 and 1 (exclusive), got {args.level:g}")
    if args.bootstrap < 0:
        raise AnalysisInputError(f"--bootstrap must be >= 0 (0 = no intervals), got {args.bootstrap}")


def _run_isoflop(args: argparse.Namespace, df, xs: list[str], y) -> int:
    from ..analysis.errors import AnalysisInputError
    from ..analysis.fits import fit_isoflop

    if len(xs) not in (2, 3):
        raise AnalysisInputError(f"--form isoflop takes --x BUDGET,N[,D] (2 or 3 columns), got {xs}")
    if args.fix_E is not None:
        raise AnalysisInputError("--fix-E applies to --form power only")
    cols = [column(df, c, args.file) for c in xs]
    fit = fit_isoflop(
        cols[0],
        cols[1],
        y,
        cols[2] if len(cols) == 3 else None,
        bootstrap=args.bootstrap,
        level=args.level,
        seed=args.seed,
        names=(xs[0], xs[1], xs[2] if len(xs) == 3 else "D"),
        y_name=args.y,
    )
    d = fit.to_dict()
    if args.json:
        json.dump(d, sys.stdout)
        print()
        return 0
    ci = lambda k: f"   [{d[k][0]:.4g}, {d[k][1]:.4g}]" if d.get(k) else ""
    print(
        f"isoflop fit of {args.y!r}: budgets {xs[0]!r}, sizes {xs[1]!r} ({d['budgets_used']} of {len(d['budgets'])} "
        f"budgets used, {d['points_used']} points, {args.level:.0%} bootstrap intervals)"
    )
    print(f"  N_opt ∝ C^a: a = {d['a']:.4g}{ci('a_ci')}")
    print(f"  D_opt ∝ C^b: b = {d['b']:.4g}{ci('b_ci')}")
    for b in d["budgets"]:
        print(
            f"  C={b['C']:.4g}: N_opt={b['N_opt']:.4g} D_opt={b['D_opt']:.4g} ({b['points']} points)"
            + ("" if b["used"] else f"  NOT USED: {b['flag']}")
        )
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis import load
    from ..analysis.report import analyze, check_out_dir

    sweep, uri, experiment, cells, labels = args.sweep, args.tracking_uri, None, None, None
    milestones = None
    if sweep.endswith((".yaml", ".yml")):
        from ..config import load_sweep
        from ..data.evals import label_sources
        from ..plan import plan

        spec = load_sweep(sweep)
        labels = label_sources(spec.eval)  # how each set's markdown labels were obtained, for the style section
        sweep, experiment = spec.name, spec.tracking.experiment
        uri = uri or spec.tracking.uri
        cells = {r.cell_id for r in plan(spec).runs}  # only this version of the sweep
        if args.target:
            from .predict import sweep_milestones

            milestones = sweep_milestones(spec)
    uri = load.default_uri(uri)
    out = Path(args.out)
    if args.bootstrap < 0:
        from ..analysis.errors import AnalysisInputError

        raise AnalysisInputError(f"--bootstrap must be >= 0 (0 = no intervals), got {args.bootstrap}")
    check_out_dir(out)  # a named error before anything is fetched
    if args.from_file:
        df = frame_from_file(args.from_file)
    else:
        check_store(uri)  # seconds, not MLflow's minutes of retries against a server that is away
        df = load.from_mlflow(sweep, tracking_uri=uri, experiment=experiment, cache=out / "runs.parquet", cells=cells)
        if df.attrs.get("left_out"):
            print(
                f"note: left out {df.attrs['left_out']} run(s) of cells that are not in {args.sweep}'s current "
                f"plan (an earlier version of the sweep)",
                file=sys.stderr,
            )
    target = None
    if args.target:
        from .predict import resolve_target

        target = (args.target, resolve_target(args.target, df.groupby("model")["N"].first().to_dict(), sweep))
    rep = analyze(
        df,
        out,
        bootstrap=args.bootstrap,
        include_unfinished=args.include_unfinished,
        label_sources=labels,
        target=target,
        target_pairs=milestones,
    )
    report_json = rep.json_path
    assert report_json is not None  # analyze writes report.json before it returns
    logged = None
    if not args.from_file and not args.no_log:
        from mlflow.tracking import MlflowClient

        logged = load.parent_run_id(sweep, tracking_uri=uri, experiment=experiment)
        if logged:
            try:
                client = MlflowClient(uri)
                client.log_artifact(logged, str(rep.report_path), "analysis")
                client.log_artifact(logged, str(report_json), "analysis")
                for p in rep.figures:
                    client.log_artifact(logged, str(p), "analysis/figures")
            except Exception as e:  # noqa: BLE001 — the report is written; only its copy in MLflow failed
                print(
                    f"warning: report written to {out} but not logged to MLflow run {logged}: "
                    f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}",
                    file=sys.stderr,
                )
                logged = None
                args.no_log = True
    print(rep.headline())
    print(f"report: {rep.report_path} (and {report_json.name})")
    print(f"figures: {out / 'figures'} ({len(rep.figures)} files)")
    if logged:
        print(f"logged to MLflow run {logged} (artifacts analysis/)")
    elif not args.from_file and not args.no_log:
        print(f"note: sweep {sweep!r} has no parent run at {uri}; nothing logged")
    return 0
