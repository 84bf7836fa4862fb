"""Calibration of `wps predict`'s intervals on planted ladders, Huber vs least squares, and its speed.

Each draw: a ladder of runs from a known L(N, D) and loss → accuracy sigmoid (tests/predict_synth.py:
each size at 1, 2, 5, 10 × 20 tokens per parameter, 10 checkpoints per run; run-to-run noise 1% of the
loss, evaluation noise 0.5%, accuracy binomial over 2,000 pairs), and one run of a larger target drawn
the same way (its actual). The truth a 90% interval must cover is that run's final loss and accuracy
(a prediction interval is for a run, not for the noiseless law; coverage of the law is shown too).

    python bench/predict_coverage.py                 # all of it (~30 min on 2 busy cores)
    python bench/predict_coverage.py --draws 40      # quicker, noisier
writes bench/results/predict_coverage.txt
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.predict_synth import SIZES, draw_run, ladder_frame, law, sig, target
from worldpm_scaling.analysis.predict import make_ladder, predict


def study(draws: int, *, sizes, n_factor: float, delta, outlier: float | None, seed: int, bootstrap: int) -> dict:
    rng = np.random.default_rng(seed)
    Nt, Dt = target(sizes, n_factor=n_factor)
    cov_loss = cov_acc = cov_law = 0
    errs, errs_loss, widths, forms = [], [], [], {}
    for i in range(draws):
        df = ladder_frame(rng, sizes=sizes)
        if outlier:  # one run of a middle size diverged: its checkpoints' loss × outlier, accuracy from it
            bad = df.run == df.run.unique()[len(df.run.unique()) // 2]
            df.loc[bad, "loss"] *= outlier
            df.loc[bad, "acc"] = sig(df.loc[bad, "loss"])
        _, L, a = draw_run(rng, Nt, Dt)
        lad = make_ladder(df.N, df.D, df.loss, acc=df.acc, run=df.run)
        p = predict(lad, Nt, Dt, bootstrap=bootstrap, seed=i, delta=delta)
        forms[p.step1.form] = forms.get(p.step1.form, 0) + 1
        if p.loss is None:
            continue
        lb, ab = p.loss[0], p.acc[0]
        cov_loss += lb.contains(L[-1])
        cov_acc += ab.contains(a[-1])
        cov_law += ab.contains(float(sig(law(Nt, Dt))))
        errs.append(abs(ab.pred - a[-1]) / a[-1])
        errs_loss.append(abs(lb.pred - L[-1]) / L[-1])
        widths.append(ab.hi - ab.lo)
    n = len(errs)
    return {
        "n": n,
        "cov_loss": cov_loss / n,
        "cov_acc": cov_acc / n,
        "cov_law": cov_law / n,
        "med_err_acc": float(np.median(errs)),
        "med_err_loss": float(np.median(errs_loss)),
        "width_acc": float(np.median(widths)),
        "forms": forms,
    }


def study_milestones(draws: int, *, bootstrap: int, seed: int) -> dict:
    """wps analyze's case: a milestone sweep with one run per size (no seeds), 5 sizes over 100x in N,
    6 milestones, 1% noise per evaluation (tests/analysis_synth.joint_sweep); the largest size predicted
    from the 4 below it at its last milestone; the truth is its actual (noisy) loss there."""
    from tests.analysis_synth import joint_sweep
    from worldpm_scaling.analysis.predict import predict_sweep_metric

    cov, errs = 0, []
    for i in range(draws):
        df = joint_sweep(5, noise=0.01, milestones=6, seed=seed + i, flat=False)
        n_of = df.groupby("model")["N"].first().to_dict()
        sp = predict_sweep_metric(df, "adversarial", "size4", n_of["size4"], n_of=n_of, bootstrap=bootstrap, seed=i)
        b, a = sp.prediction.loss[-1], float(sp.actual_loss[-1])
        cov += b.contains(a)
        errs.append(abs(b.pred - a) / a)
    return {"n": draws, "cov_loss": cov / draws, "med_err_loss": float(np.median(errs))}


def speed(bootstrap: int = 1000) -> tuple[float, int]:
    """16 runs × 1,500 rows (4 sizes × 4 budgets, ~94 checkpoints a run), both steps, 1,000 replicates."""
    rng = np.random.default_rng(7)
    df = ladder_frame(rng, sizes=SIZES[:4], checkpoints=94)[:1500]
    lad = make_ladder(df.N, df.D, df.loss, acc=df.acc, run=df.run)
    t0 = time.perf_counter()
    p = predict(lad, *target(SIZES[:4]), bootstrap=bootstrap)
    return time.perf_counter() - t0, p.bootstrap


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--bootstrap", type=int, default=500, help="replicates per prediction (the speed line uses 1000)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "predict_coverage.txt"))
    args = ap.parse_args()
    import os

    t_start = time.perf_counter()
    lines = [
        f"predict_coverage: python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start (shared machine: timings are noisy)",
        f"{args.draws} planted ladders per row, {args.bootstrap} bootstrap replicates, 90% intervals; "
        "truth = a held-out run of the target (law = the noiseless sigmoid(L(N, D)))",
        "",
    ]
    t, used = speed(1000)
    lines.append(
        f"speed: 16 runs x 1,500 rows, both steps, {used} replicates: {t:.1f} s — goal < 30 s: "
        + ("PASS" if t < 30 else "FAIL")
    )
    lines.append("")
    lines.append(
        f"{'ladder':<44} {'fit':<6} {'n':>4} {'cov acc':>8} {'cov loss':>9} {'cov law':>8} "
        f"{'med |err| acc':>14} {'med |err| loss':>15} {'width acc':>10}  forms"
    )
    rows = [
        ("4 sizes 2M-16M, target 64M (4x) at 5x budget", SIZES[:4], 4.0, None),
        ("5 sizes 2M-32M, target 256M (8x) at 5x budget", SIZES, 8.0, None),
        ("4 sizes, one run diverged (loss x1.3)", SIZES[:4], 4.0, 1.3),
    ]
    verdicts = []
    for name, sizes, nf, outl in rows:
        for fit, delta in (("huber", "auto"), ("ls", None)):
            t0 = time.perf_counter()
            n = args.draws if outl is None else max(args.draws // 2, 10)
            r = study(n, sizes=sizes, n_factor=nf, delta=delta, outlier=outl, seed=11, bootstrap=args.bootstrap)
            lines.append(
                f"{name:<44} {fit:<6} {r['n']:>4} {r['cov_acc']:>8.1%} {r['cov_loss']:>9.1%} {r['cov_law']:>8.1%} "
                f"{r['med_err_acc']:>14.2%} {r['med_err_loss']:>15.2%} {r['width_acc']:>10.3f}  {r['forms']}"
                f"  ({time.perf_counter() - t0:.0f} s)"
            )
            print(lines[-1], flush=True)
            if outl is None and fit == "huber":
                verdicts.append((name, r))
    m = study_milestones(max(args.draws // 2, 10), bootstrap=args.bootstrap, seed=100)
    lines.append(
        f"{'milestone sweep, 1 run per size, 5 sizes':<44} {'huber':<6} {m['n']:>4} {'–':>8} "
        f"{m['cov_loss']:>9.1%} {'–':>8} {'–':>14} {m['med_err_loss']:>15.2%}"
    )
    print(lines[-1], flush=True)
    lines.append("")
    for name, r in verdicts:
        ok = r["med_err_acc"] <= 0.02 and 0.85 <= r["cov_acc"] <= 0.95
        lines.append(
            f"acceptance ({name}, Huber, the default): median |rel err| acc {r['med_err_acc']:.2%} (<= 2%), "
            f"90% interval covers the held-out run's accuracy in {r['cov_acc']:.1%} (85-95%): "
            + ("PASS" if ok else "FAIL")
        )
    lines.append(
        f"(clean ladders: {args.draws} draws, the same for Huber and least squares; diverged-run and "
        "milestone rows: half that; "
        f"total {time.perf_counter() - t_start:.0f} s)"
    )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
