"""Benchmark: the demo's cell (tiny-sm, sweeps/demo.yaml's recipe) against a bare PyTorch Bradley–Terry
loop over the same model, data and batches, side by side in one run; and where one cell's wall time goes.

Framework side: a fresh `python` process runs the demo's own job code, `launch.job.CellJob` (what a SLURM
array task runs: torch threads = cpus_per_task of slurm/local-cluster.yaml, i.e. 1, then
`launch.cell.run_cell` → `train.Trainer`), logging to a real MLflow server (started here on a free port,
as `make demo` does) with checkpoints every 50 steps and the 12 eval sets scored at the 5 milestones.
Timers wrap the real functions of that path (tokenizer, data, tracking setup, model build, evaluation,
checkpoints, metric logging) and an import hook counts module imports separately, so the breakdown adds
up to the process's wall time (start-up = interpreter + the job's module imports, shutdown = from the
job's return to the process's exit: MLflow's last flush, atexit, interpreter teardown).

Bare side: a fresh process, 1 thread, the same model (`build_model`, same seed), the same pairs in the
same order (`open_train_pairs`), the same batches (16 pairs, shared-prompt collation), AdamW with the
recipe's groups, warmup and clipping, both as multi-tensor (foreach) calls, its own code (not the
framework's engine): collate → forward → BT loss → backward → clip → step. No tracking,
no checkpoints, no evaluation, one host sync a step (the loss, to keep the curve). Its loss curve is
compared with the cell's logged train/loss (same model, data and batch ⇒ the same curve).

pairs/s (both sides): pairs trained / wall time of the training steps. For the cell that is the fit()
span without evaluation (steps, logging, checkpoints included); also reported: the whole fit() span,
and the median of the cell's own `perf/pairs_per_s`. Rounds alternate the order of the two sides so that
load from other processes on the box hits both alike; the table reports median, min and max.

    python bench/tiny_path.py                  # 3 rounds, full demo cell (8,192 pairs), writes bench/results/
    python bench/tiny_path.py --quick          # 1 round of 1,024 pairs, memory tracking, writes nothing
    python bench/tiny_path.py --profile        # cProfile of one cell's fit() (memory tracking), top functions
    python bench/tiny_path.py --base /tmp/base # … plus another checkout's cell in the same rounds (before/after)
    python bench/tiny_path.py --equivalence /tmp/base   # every logged metric vs another checkout's, to 1e-6
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.time()  # the child's first instruction (before any heavy import)

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "sweeps" / "demo.yaml"
CLUSTER = ROOT / "slurm" / "local-cluster.yaml"


# ----------------------------------------------------------------------------- shared set-up


def synth_data(folder: Path, pairs: int) -> Path:
    """The demo's synthetic forum (generator defaults, seed 0), written once into `folder`."""
    if not (folder / "train.parquet").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "worldpm_scaling",
                "data",
                "synth",
                "--pairs",
                str(pairs),
                "--seed",
                "0",
                "--out",
                str(folder),
                "--force",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
    return folder


def demo_run(
    data: Path, out: Path, *, model: str, seed: int, pairs: int, tracking: str, uri: str | None, experiment: str
):
    """The demo sweep's cell for `model`/`seed`, its data pointed at `data`, output under `out`."""
    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.plan import plan

    spec = load_sweep(SWEEP, cluster=CLUSTER)
    r = dataclasses.replace
    spec = r(
        spec,
        data=r(spec.data, source=str(data / "train.parquet"), tokenizer=str(data / "tokenizer.json"), pairs=pairs),
        eval=r(spec.eval, dir=str(data / "evals")),
        out_dir=str(out),
        tracking=r(spec.tracking, backend=tracking, uri=uri, experiment=experiment),
    )
    runs = [x for x in plan(spec).runs if x.model.name == model and x.seed == seed]
    if not runs:
        raise SystemExit(f"no cell for model {model} seed {seed} in {SWEEP}")
    return runs[0]


class ImportClock:
    """Wall time spent in (outermost) imports, so phases that import lazily are charged without it."""

    def __init__(self):
        self.total = 0.0
        self.cpu = 0.0
        self._depth = 0
        self._orig = builtins.__import__

    def install(self):
        orig = self._orig

        def timed(name, globals=None, locals=None, fromlist=(), level=0):
            if self._depth or (level == 0 and name in sys.modules and not fromlist):
                return orig(name, globals, locals, fromlist, level)
            self._depth += 1
            t, c = time.perf_counter(), time.thread_time()
            try:
                return orig(name, globals, locals, fromlist, level)
            finally:
                self._depth -= 1
                self.total += time.perf_counter() - t
                self.cpu += time.thread_time() - c

        builtins.__import__ = timed
        return self


class Phases:
    """Wraps functions: each call's wall time, less the imports made inside it, goes to a named phase."""

    def __init__(self, clock: ImportClock):
        self.clock = clock
        self.t: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.n: dict[str, int] = {}
        self._stack: list[str] = []

    def wrap(self, owner, attr: str, phase: str):
        fn = getattr(owner, attr)

        def timed(*a, **kw):
            outer = self._stack[-1] if self._stack else None
            self._stack.append(phase)
            t, imp, c, icpu = time.perf_counter(), self.clock.total, time.thread_time(), self.clock.cpu
            try:
                return fn(*a, **kw)
            finally:
                self._stack.pop()
                dt = time.perf_counter() - t - (self.clock.total - imp)
                dc = time.thread_time() - c - (self.clock.cpu - icpu)
                self.t[phase] = self.t.get(phase, 0.0) + dt
                self.cpu[phase] = self.cpu.get(phase, 0.0) + dc
                self.n[phase] = self.n.get(phase, 0) + 1
                if outer is not None:  # a nested phase is not counted twice
                    self.t[outer] = self.t.get(outer, 0.0) - dt
                    self.cpu[outer] = self.cpu.get(outer, 0.0) - dc

        setattr(owner, attr, timed)


# ----------------------------------------------------------------------------- the framework's cell


def child_cell(cfg: dict) -> dict:
    clock = ImportClock().install()
    t_imports0 = time.perf_counter()
    import torch

    from worldpm_scaling.launch import cell as cellmod
    from worldpm_scaling.launch.job import CellJob  # what a SLURM array task unpickles and calls

    t_setup = time.perf_counter()
    from worldpm_scaling import train as trainmod
    from worldpm_scaling.train import loop

    ph = Phases(clock)
    ph.wrap(cellmod, "_tokenizer", "data: tokenizer")
    ph.wrap(cellmod, "_open_data", "data: train pairs + eval sets")
    ph.wrap(cellmod, "_open_tracking", "tracking: MLflow experiment/runs/params/inputs")
    ph.wrap(cellmod, "_tag_hosts", "tracking: MLflow experiment/runs/params/inputs")
    ph.wrap(loop.Trainer, "__init__", "trainer + model build")
    ph.wrap(loop.Trainer, "_build", "trainer + model build")
    ph.wrap(loop.Trainer, "_restore", "checkpoints")
    ph.wrap(loop.Trainer, "_train_steps", "steps")
    ph.wrap(loop.Trainer, "evaluate", "evaluation")
    ph.wrap(loop.Trainer, "_save", "checkpoints")
    steps_t0 = []
    rates: list[float] = []
    losses: list[tuple[int, float]] = []

    orig_open = cellmod._open_tracking

    def open_tracking(*a, **kw):
        child = orig_open(*a, **kw)
        ph.wrap(child, "log_metrics", "logging: metrics")
        ph.wrap(child, "finish", "logging: finish run")
        ph.wrap(child, "flush", "logging: flush")
        return child

    cellmod._open_tracking = open_tracking
    orig_fit = loop.Trainer.fit

    def fit(self, progress=None):
        def prog(tr, m):
            from worldpm_scaling import names

            rates.append(m[names.PERF_PAIRS_PER_S])
            losses.append((tr.step, m[names.TRAIN_LOSS]))
            if progress is not None:
                progress(tr, m)

        t = time.perf_counter()
        steps_t0.append(t)
        try:
            return orig_fit(self, progress=prog)
        finally:
            steps_t0.append(time.perf_counter())

    loop.Trainer.fit = fit
    assert trainmod.Trainer is not None
    t_job = time.perf_counter()
    imports_before_job = clock.total
    result = CellJob(cfg["run_json"])()
    t_end = time.perf_counter()
    fit_span = steps_t0[-1] - steps_t0[0]
    phases = dict(ph.t)
    job_wall = t_end - t_job
    lazy_imports = clock.total - imports_before_job
    accounted = sum(phases.values()) + lazy_imports
    phases["other (markers, locks, signals, run_cell glue)"] = job_wall - accounted + (t_job - t_setup)
    return {
        "status": result["status"],
        "steps": result["steps"],
        "pairs": result["pairs_seen"],
        "t_start": T_START,
        "startup_imports_s": t_setup - t_imports0,
        "glue_s": t_job - t_setup,
        "lazy_imports_s": lazy_imports,
        "job_wall_s": job_wall,
        "fit_span_s": fit_span,
        "phases": phases,
        "calls": ph.n,
        "phases_cpu": dict(ph.cpu),
        "process_cpu_s": time.process_time(),
        "perf_pairs_per_s_median": statistics.median(rates) if rates else None,
        "losses": losses,
        "t_end": time.time(),
        "threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------- the bare loop


def child_bare(cfg: dict) -> dict:
    import torch

    torch.set_num_threads(1)  # as the demo's cells (cpus_per_task 1)
    t_imp = time.perf_counter()
    from worldpm_scaling.config import RunSpec
    from worldpm_scaling.data import open_train_pairs
    from worldpm_scaling.train.collate import collate
    from worldpm_scaling.train.model import bt_loss, build_model
    from worldpm_scaling.train.schedule import lr_at

    run = RunSpec.from_dict(json.loads(cfg["run_json"]))
    t_setup = time.perf_counter()
    t = run.train
    pairs = open_train_pairs(
        run.data, seed=run.seed, rank=0, world=1, max_pairs=run.pairs, ctx_len=t.ctx_len, reward_token=t.reward_token
    )
    model = build_model(run.model, head=t.head, seed=run.seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]  # the recipe's groups: no decay on biases/norms
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t.lr,
        betas=t.betas,
        eps=t.eps,
        foreach=True,
    )
    model.train()
    B = t.global_batch_pairs
    steps = run.pairs // B
    params = list(model.parameters())
    losses = []
    t0, c0 = time.perf_counter(), time.thread_time()
    for k in range(steps):
        b = collate([pairs[k * B + i] for i in range(B)], t.collation)
        rc, rr = model.rewards(b)
        loss = bt_loss(rc, rr).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.grad_clip, foreach=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(k, steps, t)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append((k + 1, loss.item()))
    dt, dc = time.perf_counter() - t0, time.thread_time() - c0
    return {
        "pairs": steps * B,
        "steps_s": dt,
        "steps_cpu_s": dc,
        "setup_s": t0 - t_setup,
        "imports_s": t_setup - t_imp,
        "losses": losses,
        "threads": torch.get_num_threads(),
        "t_end": time.time(),
    }


def child_metrics(cfg: dict) -> dict:
    """Every metric one cell logs (perf/* aside: they are timings), through the Trainer the cell owner
    builds, with no tracking store: what the equivalence check compares between two checkouts."""
    import torch

    torch.set_num_threads(1)
    import worldpm_scaling
    from worldpm_scaling.config import RunSpec
    from worldpm_scaling.launch import cell as cellmod
    from worldpm_scaling.track import InMemoryTracker
    from worldpm_scaling.train import Trainer

    run = RunSpec.from_dict(json.loads(cfg["run_json"]))
    tok = cellmod._tokenizer(run)
    pairs, evals = cellmod._open_data(run, tok, 0, 1)
    child = InMemoryTracker().start_cell(run.sweep, run.cell_id, name="eq")
    Trainer(run, child, train_pairs=pairs, eval_sets=evals, tokenizer=tok, train_pairs_sharded=True).fit()
    return {
        "code": str(Path(worldpm_scaling.__file__).parent),
        "metrics": {k: v for k, v in child.metrics.items() if not k.startswith("perf/")},
    }


def equivalence(a, data: Path, tmp: Path) -> int:
    """The demo cell's logged metrics from this checkout and from `--equivalence BASE` (another
    checkout, e.g. `git worktree add /tmp/base <commit>`), compared point by point."""
    out = {}
    for name, root in (("base", Path(a.equivalence).resolve()), ("this", ROOT)):
        run = demo_run(
            data, tmp / name, model=a.model, seed=a.seed, pairs=a.pairs, tracking="memory", uri=None, experiment="eq"
        )
        with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
            report = f.name
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--_child",
                "metrics",
                "--_cfg",
                json.dumps({"run_json": run.to_json()}),
                "--_report",
                report,
            ],
            check=True,
            env=env,
            cwd=root,
        )
        out[name] = json.loads(Path(report).read_text())
        os.unlink(report)
        print(f"{name}: metrics from {out[name]['code']}", file=sys.stderr)
    ma, mb = out["base"]["metrics"], out["this"]["metrics"]
    worst, n, where = 0.0, 0, None
    missing = sorted(set(ma) ^ set(mb))
    for k in sorted(set(ma) & set(mb)):
        if [s for s, _ in ma[k]] != [s for s, _ in mb[k]]:
            missing.append(f"{k} (steps differ)")
            continue
        for (s, x), (_, y) in zip(ma[k], mb[k]):
            n += 1
            d = abs(x - y)
            if d > worst:
                worst, where = d, (k, s)
    ok = not missing and worst <= 1e-6
    print(
        f"equivalence ({a.model}, seed {a.seed}, {a.pairs} pairs): {n} logged points compared "
        f"(every train/ and eval/ metric, perf/ excluded); max |difference| = {worst:.3g}"
        f"{f' at {where[0]} step {where[1]}' if where else ''}; {'missing/extra: ' + ', '.join(missing) if missing else 'same keys and steps'}"
        f" → {'EQUAL to 1e-6' if ok else 'DIFFERENT'}"
    )
    return 0 if ok else 1


def spawn(kind: str, cfg: dict, code: Path | None = None) -> tuple[dict, float]:
    """Run a side in a fresh process (worldpm_scaling from `code`, default this checkout); returns its
    report and its whole wall time (launch → exit)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
        report = f.name
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    t_launch = time.time()
    subprocess.run(
        [sys.executable, __file__, "--_child", kind, "--_cfg", json.dumps(cfg), "--_report", report],
        check=True,
        env=env,
        cwd=code or ROOT,
    )
    t_exit = time.time()
    out = json.loads(Path(report).read_text())
    os.unlink(report)
    out["t_launch"], out["t_exit"] = t_launch, t_exit
    return out, t_exit - t_launch


# ----------------------------------------------------------------------------- the run


def breakdown(c: dict) -> dict[str, float]:
    """One cell's wall time, launch → exit, in parts that add up."""
    rows = {
        "start-up: interpreter": c["t_start"] - c["t_launch"],
        "start-up: imports (torch, worldpm_scaling, submitit)": c["startup_imports_s"],
        "imports made lazily inside the cell (transformers, mlflow, …)": c["lazy_imports_s"],
    }
    rows.update(c["phases"])
    rows["shutdown: last flush, atexit, teardown"] = c["t_exit"] - c["t_end"]
    return rows


def cell_rates(c: dict) -> dict[str, float]:
    p = c["phases"]
    loop = p["steps"] + p.get("checkpoints", 0.0) + sum(v for k, v in p.items() if k.startswith("logging:"))
    return {
        "loop": c["pairs"] / loop,  # step loop with its logging and checkpoints
        "steps": c["pairs"] / p["steps"],  # the step loop alone
        "loop+eval": c["pairs"] / (loop + p.get("evaluation", 0.0)),  # … and the 5 evaluations
        "perf_median": c["perf_pairs_per_s_median"],
        "loop_cpu": c["pairs"]
        / (
            c["phases_cpu"]["steps"]
            + c["phases_cpu"].get("checkpoints", 0.0)
            + sum(v for k, v in c["phases_cpu"].items() if k.startswith("logging:"))
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 1,024 pairs, memory tracking; no results file")
    ap.add_argument("--profile", action="store_true", help="cProfile one cell's fit() in this process; no results")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (median/min/max reported)")
    ap.add_argument("--pairs", type=int, default=8192, help="pairs budget of the cell (the demo: 8,192)")
    ap.add_argument("--model", default="tiny-sm", help="demo size (tiny-sm is the demo's largest)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tracking",
        choices=("server", "memory"),
        default="server",
        help="server: a local MLflow server as `make demo` runs; memory: no tracking store",
    )
    ap.add_argument("--data", default=None, help="synthetic forum folder (default: a temporary one)")
    ap.add_argument("--out", default="bench/results/tiny_path", help="results path without suffix")
    ap.add_argument("--note", default="", help="what else was running on the box (goes into the results)")
    ap.add_argument(
        "--base",
        metavar="DIR",
        default=None,
        help="also time the cell of another checkout (e.g. `git worktree add /tmp/base <commit>`) in "
        "the same rounds: before/after side by side",
    )
    ap.add_argument(
        "--equivalence",
        metavar="BASE",
        default=None,
        help="instead of timing: compare every metric the cell logs with another checkout's (1e-6)",
    )
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_cfg", help=argparse.SUPPRESS)
    ap.add_argument("--_report", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child:
        cfg = json.loads(a._cfg)
        rep = {"cell": child_cell, "bare": child_bare, "metrics": child_metrics}[a._child](cfg)
        Path(a._report).write_text(json.dumps(rep))
        return 0
    if a.quick:
        a.rounds, a.pairs, a.tracking = 1, 1024, "memory"
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="wps-tiny-path-") as tmp:
        tmp = Path(tmp)
        data = synth_data(Path(a.data) if a.data else tmp / "data", 8192)
        if a.profile:
            return profile(a, data, tmp)
        if a.equivalence:
            return equivalence(a, data, tmp)
        server = None
        uri = None
        if a.tracking == "server":
            from worldpm_scaling.track.server import MlflowServer

            server = MlflowServer(
                f"sqlite:///{tmp}/mlflow.db", tmp / "mlartifacts", workers=1, log_path=tmp / "mlflow-server.log"
            )
            server.start(wait_s=300)
            uri = f"http://127.0.0.1:{server.port}"
        try:
            cells, bares, bases = [], [], []
            sides = ["cell", "bare"] + (["base"] if a.base else [])
            for r in range(a.rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    run = demo_run(
                        data,
                        tmp / f"r{r}-{side}",
                        model=a.model,
                        seed=a.seed,
                        pairs=a.pairs,
                        tracking="mlflow" if a.tracking == "server" else "memory",
                        uri=uri,
                        experiment=f"tiny_path-{os.getpid()}-r{r}-{side}",
                    )
                    cfg = {"run_json": run.to_json()}
                    rep, wall = spawn(
                        "cell" if side == "base" else side, cfg, Path(a.base).resolve() if side == "base" else None
                    )
                    rep["wall_s"] = wall
                    {"cell": cells, "bare": bares, "base": bases}[side].append(rep)
                    if side != "bare":
                        print(
                            f"round {r + 1}/{a.rounds} {side}: {rep['status']} {wall:.1f} s, "
                            f"{cell_rates(rep)['loop']:.1f} pairs/s",
                            file=sys.stderr,
                            flush=True,
                        )
                    else:
                        print(
                            f"round {r + 1}/{a.rounds} bare: {rep['pairs'] / rep['steps_s']:.1f} pairs/s",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            if server is not None:
                server.stop()
    report(a, cells, bares, load0, time.perf_counter() - t0, bases)
    return 0


def report(a, cells: list[dict], bares: list[dict], load0, elapsed: float, bases: list[dict] = ()) -> None:
    import torch

    bare = [b["pairs"] / b["steps_s"] for b in bares]
    rates = {k: [cell_rates(c)[k] for c in cells] for k in ("loop", "steps", "loop+eval", "perf_median", "loop_cpu")}
    bare_cpu = [b["pairs"] / b["steps_cpu_s"] for b in bares]

    def mmm(xs):
        return statistics.median(xs), min(xs), max(xs)

    bm = statistics.median(bare)
    lines = [
        f"{'side':<44}{'pairs/s median':>15}{'min':>8}{'max':>8}{'÷ bare':>8}",
        f"{'bare PyTorch BT loop (steps)':<44}{bm:>15.1f}{min(bare):>8.1f}{max(bare):>8.1f}{1.0:>8.2f}",
    ]
    labels = {
        "loop": "cell: steps + logging + checkpoints (headline)",
        "steps": "cell: steps alone",
        "loop+eval": "cell: steps + logging + checkpoints + evaluations",
        "perf_median": "cell: median of its logged perf/pairs_per_s",
    }
    for k in ("loop", "steps", "loop+eval", "perf_median"):
        med, lo, hi = mmm(rates[k])
        lines.append(f"{labels[k]:<44}{med:>15.1f}{lo:>8.1f}{hi:>8.1f}{med / bm:>8.2f}")
    base_rates = {k: [cell_rates(c)[k] for c in bases] for k in ("loop", "loop+eval", "loop_cpu")} if bases else {}
    if bases:
        for k in ("loop", "loop+eval"):
            med, lo, hi = mmm(base_rates[k])
            lines.append(f"{'base ' + labels[k][6:]:<44}{med:>15.1f}{lo:>8.1f}{hi:>8.1f}{med / bm:>8.2f}")
    bc = statistics.median(bare_cpu)
    med, lo, hi = mmm(rates["loop_cpu"])
    lines.append("per CPU-second of the training thread (less sensitive to load from other processes):")
    lines.append(f"{'bare PyTorch BT loop':<44}{bc:>15.1f}{min(bare_cpu):>8.1f}{max(bare_cpu):>8.1f}{1.0:>8.2f}")
    lines.append(f"{'cell: steps + logging + checkpoints':<44}{med:>15.1f}{lo:>8.1f}{hi:>8.1f}{med / bc:>8.2f}")
    if bases:
        med, lo, hi = mmm(base_rates["loop_cpu"])
        lines.append(f"{'base: steps + logging + checkpoints':<44}{med:>15.1f}{lo:>8.1f}{hi:>8.1f}{med / bc:>8.2f}")
    # wall-time breakdown: per-part median over rounds
    parts = [breakdown(c) for c in cells]
    keys = list(parts[0])
    walls = [c["wall_s"] for c in cells]
    base_parts = [breakdown(c) for c in bases]
    lines.append("")
    for label, cs, _parts in (("this checkout", cells, parts), (f"base ({a.base})", bases, base_parts)):
        if not cs:
            continue
        w = [c["wall_s"] for c in cs]
        lines.append(
            f"one cell's wall time (launch → exit), {label}, median of {len(cs)} rounds: "
            f"{statistics.median(w):.1f} s (min {min(w):.1f}, max {max(w):.1f})"
        )
    hdr = f"{'part':<60}{'s (median)':>11}{'min':>8}{'max':>8}{'share':>8}{'CPU s':>8}"
    lines.append(hdr + (f"{'base s':>9}{'base CPU':>9}" if bases else ""))
    for k in keys:
        v = [p.get(k, 0.0) for p in parts]
        med, lo, hi = mmm(v)
        cpu = [c["phases_cpu"][k] for c in cells if k in c.get("phases_cpu", {})]
        cpu_s = f"{statistics.median(cpu):>8.2f}" if cpu else f"{'':>8}"
        row = f"{k:<60}{med:>11.2f}{lo:>8.2f}{hi:>8.2f}{med / statistics.median(walls):>8.1%}{cpu_s}"
        if bases:
            bcpu = [c["phases_cpu"][k] for c in bases if k in c.get("phases_cpu", {})]
            row += f"{statistics.median([p.get(k, 0.0) for p in base_parts]):>9.2f}" + (
                f"{statistics.median(bcpu):>9.2f}" if bcpu else f"{'':>9}"
            )
        lines.append(row)
    # same curve check
    lc = dict(cells[0]["losses"])
    lb = dict(bares[0]["losses"])
    common = sorted(set(lc) & set(lb))
    diff = max(abs(lc[s] - lb[s]) for s in common) if common else float("nan")
    lines.append("")
    lines.append(
        f"same model/data/batch check: max |cell train/loss − bare loss| over {len(common)} steps = {diff:.2e}"
    )
    table = "\n".join(lines)
    print(table)
    if a.quick:
        return
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "model": a.model,
        "seed": a.seed,
        "pairs": a.pairs,
        "tracking": a.tracking,
        "rounds": a.rounds,
        "elapsed_s": round(elapsed, 1),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg(),
        "note": a.note,
        "bare_pairs_per_s": bare,
        "bare_pairs_per_cpu_s": bare_cpu,
        "cell_pairs_per_s": rates,
        "ratio_headline": statistics.median(rates["loop"]) / bm,
        "breakdown": parts,
        "cell_wall_s": walls,
        "base": a.base,
        "base_pairs_per_s": base_rates,
        "base_breakdown": base_parts,
        "base_wall_s": [c["wall_s"] for c in bases],
        "calls": cells[0]["calls"],
        "loss_max_abs_diff": diff,
        "threads": {"cell": cells[0]["threads"], "bare": bares[0]["threads"]},
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = (
        f"# python bench/tiny_path.py --rounds {a.rounds}{' --base ' + a.base if a.base else ''}  ({meta['date']}, {elapsed:.0f} s; {cpu}, "
        f"{os.cpu_count()} cores; 1 torch thread each side; load avg {load0[0]:.1f}→{meta['loadavg_end'][0]:.1f})\n"
        f"# {a.note}\n"
    )
    for suffix, text in ((".json", json.dumps(meta, indent=2) + "\n"), (".txt", head + table + "\n")):
        tmp = out.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(out.with_suffix(suffix))


def profile(a, data: Path, tmp: Path) -> int:
    """cProfile of one cell's fit() in this process (memory tracking, 1 thread): where a step's time goes."""
    import cProfile
    import pstats

    import torch

    from worldpm_scaling.launch import cell as cellmod
    from worldpm_scaling.track import InMemoryTracker
    from worldpm_scaling.train import Trainer

    torch.set_num_threads(1)
    run = demo_run(
        data, tmp / "prof", model=a.model, seed=a.seed, pairs=a.pairs, tracking="memory", uri=None, experiment="prof"
    )
    tok = cellmod._tokenizer(run)
    pairs, evals = cellmod._open_data(run, tok, 0, 1)
    tr = Trainer(
        run,
        InMemoryTracker().start_cell("p", run.cell_id, name="p"),
        train_pairs=pairs,
        eval_sets=evals,
        tokenizer=tok,
        train_pairs_sharded=True,
    )
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    tr.fit()
    prof.disable()
    print(f"fit: {time.perf_counter() - t:.1f} s for {run.pairs} pairs", file=sys.stderr)
    st = pstats.Stats(prof, stream=sys.stdout)
    st.sort_stats("tottime").print_stats(35)
    st.sort_stats("cumulative").print_stats(45)
    return 0


if __name__ == "__main__":
    sys.exit(main())
