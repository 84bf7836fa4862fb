#!/usr/bin/env python
"""Screenshot the MLflow UI of a sweep with headless Chromium: the runs table (parent run with its cell
runs expanded; Dataset, Source, Models and eval-loss columns) for docs/mlflow_ui.png, and the chart
view comparing the cells' `eval/<category>/loss` against `train/pairs_seen` for
docs/mlflow_ui_charts.png. Also returns what was rendered, so tests can check it.

`--dump-dom` alone cannot do it: the UI collapses child runs under their parent and keeps its table
columns and chart layout in the browser's localStorage, so this drives Chromium over the DevTools
protocol (a minimal stdlib websocket client: no extra dependency) — it writes that UI state (rows
expanded, columns, three charts with x = train/pairs_seen) before the app starts, navigates, waits for
the rendered runs or Plotly traces, captures.

    python scripts/screenshot_ui.py        # synthetic demo sweep on a throwaway server → docs/mlflow_ui*.png
    python scripts/screenshot_ui.py --url http://127.0.0.1:5000/#/experiments/1/runs --sweep demo \\
        --out table.png --charts-out charts.png
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
]


# -- a minimal websocket client (RFC 6455: text frames, client masking, fragmentation) ----------------
class WebSocket:
    def __init__(self, url: str, timeout_s: float = 60.0):
        assert url.startswith("ws://"), url
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        self._rest = head.split(b"\r\n\r\n", 1)[1]

    def _read(self, n: int) -> bytes:
        while len(self._rest) < n:
            chunk = self.sock.recv(max(65536, n - len(self._rest)))
            if not chunk:
                raise ConnectionError("websocket closed")
            self._rest += chunk
        out, self._rest = self._rest[:n], self._rest[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        head = bytes([0x81])
        n = len(data)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if b0 & 0x0F == 0x8:
                raise ConnectionError("websocket closed by peer")
            if b0 & 0x0F in (0x9, 0xA):  # ping/pong: ignore
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, width: int = 1400, height: int = 820, binary: str | None = None):
        from worldpm_scaling.track.server import free_port

        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="wps-chromium-")  # fresh profile: no state, no prompts
        exe = binary or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not exe:
            raise RuntimeError("chromium not found: apt-get install chromium")
        self.proc = subprocess.Popen(
            [
                exe,
                *CHROMIUM_FLAGS,
                f"--remote-debugging-port={self.port}",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        target = None
        while time.monotonic() < deadline and target is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
                    target = next((t for t in json.load(r) if t.get("type") == "page"), None)
            except OSError:
                time.sleep(0.2)
        if target is None:
            self.close()
            raise RuntimeError("chromium's DevTools endpoint did not come up")
        self.ws = WebSocket(target["webSocketDebuggerUrl"])
        self._id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def wait_for(self, expr: str, timeout_s: float = 90.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.js(expr):
                return True
            time.sleep(0.5)
        return False

    def screenshot(self, path: str | os.PathLike) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 — best effort: the process is killed next
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)


EXPAND_JS = """(() => {
  const bs = [...document.querySelectorAll('button[data-component-id*="runnamecellrenderer"]')];
  bs.forEach(b => b.click());
  return bs.length;
})()"""
CLOSE_ASSISTANT_JS = """(() => {
  const b = document.querySelector('button[data-component-id="mlflow.assistant.chat_panel.close"]');
  if (b) b.click();
  return !!b;
})()"""
HAS_EXPANDER_JS = """document.querySelectorAll('button[data-component-id*="runnamecellrenderer"]').length > 0"""


def ui_state(
    *,
    expanded: list[str],
    columns: list[str],
    charts: list[str] = (),
    x_metric: str | None = None,
    section: str = "Eval loss by category",
) -> dict:
    """The experiment page's persisted UI state (what the UI keeps in localStorage per experiment):
    parent runs `expanded`, extra table `columns` (`metrics.<key>`, or `attributes.<Dataset|Source|
    Models>`), and a first chart section with one line chart per metric key in `charts`, its x-axis
    the metric `x_metric` on a log scale (the paper's log2 pairs axis) instead of the step."""
    sec = "wps-section-0"
    chart_cfgs = [
        {
            "uuid": f"wps-chart-{i}",
            "type": "LINE",
            "runsCountToCompare": 10,
            "metricSectionId": sec,
            "deleted": False,
            "isGenerated": False,
            "displayName": key,
            "metricKey": key,
            "lineSmoothness": 0,
            "xAxisScaleType": "log" if x_metric else "linear",
            "scaleType": "linear",
            "range": {},
            "xAxisKey": "metric" if x_metric else "step",
            "selectedXAxisMetricKey": x_metric or "",
            "yAxisKey": "metric",
            "yAxisExpressions": [],
            "ignoreOutliers": False,
            "useGlobalXaxisKey": False,
            "useGlobalLineSmoothing": True,
        }
        for i, key in enumerate(charts)
    ]
    return {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": list(columns),
        "columnOrder": [],
        "runsPinned": [],
        "columnWidths": {c: 190 if c.startswith("metrics.") else 240 for c in columns if "Dataset" not in c},
        "runsHidden": [],
        "runsVisibilityMap": {},
        "runsHiddenMode": "FIRST_10_RUNS",
        **(
            {
                "compareRunCharts": chart_cfgs,
                "compareRunSections": [{"uuid": sec, "name": section, "display": True, "isReordered": True}],
                "isAccordionReordered": True,
            }
            if chart_cfgs
            else {}
        ),
        "viewMaximized": False,
        "runListHidden": False,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": None,
        "groupsExpanded": {},
        "autoRefreshEnabled": False,
        "globalLineChartConfig": {
            "xAxisKey": "metric" if x_metric else "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": x_metric or "",
        },
        "runsExpanded": {r: True for r in expanded},
    }


def _experiment_id(url: str) -> str:
    import re

    m = re.search(r"#/experiments/([^/?]+)", url)
    if not m:
        raise ValueError(f"{url}: not an experiment page URL (…/#/experiments/<id>/runs)")
    return m.group(1)


def _open(ch: "Chromium", url: str, state: dict | None) -> None:
    """Load `url` with `state` already in the origin's localStorage (set from a same-origin page
    first, so the app reads it on start instead of generating its defaults)."""
    ch.call("Page.enable")
    if state is not None:
        origin = url.split("#", 1)[0].rstrip("/")
        ch.call("Page.navigate", url=origin + "/health")
        ch.wait_for("document.readyState === 'complete'", 30)
        key = f'MLflowLocalStorage-1.1-ExperimentPage-["{_experiment_id(url)}"]-ReactComponentState'
        ch.js(
            f"localStorage.setItem({json.dumps(key)}, {json.dumps(json.dumps(state))}); "
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true'); "  # no chat panel
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'); "
            # the sidebar's GenAI | Model training switch, on Model training
            "localStorage.setItem('mlflow.workflowType_v1', '\"machine_learning\"'); true"
        )
    ch.call("Page.navigate", url=url)


def capture_runs_table(
    url: str,
    run_names: list[str],
    out: str | os.PathLike | None = None,
    timeout_s: float = 120.0,
    *,
    state: dict | None = None,
    expect: list[str] = (),
) -> str:
    """Open `url` (a `/#/experiments/<id>/runs` page), expand nested runs, wait until every name in
    `run_names` (and every text in `expect`, e.g. column headers) is rendered, screenshot to `out`;
    returns the page's visible text. `state`: a `ui_state` to open the page with."""
    ch = Chromium(width=1800, height=760)
    try:
        _open(ch, url, state)
        if not ch.wait_for(HAS_EXPANDER_JS, timeout_s):  # the grid is up once a parent row shows its expander
            raise TimeoutError(f"{url}: no parent run with nested runs rendered in {timeout_s:.0f} s")
        ch.js(CLOSE_ASSISTANT_JS)
        if state is None:
            ch.js(EXPAND_JS)
        names = json.dumps([*run_names, *expect])
        if not ch.wait_for(f"{names}.every(n => document.body.innerText.includes(n))", 60):
            text = ch.js("document.body.innerText") or ""
            missing = [n for n in [*run_names, *expect] if n not in text]
            raise TimeoutError(f"{url}: {missing} not rendered (expanded: {state is not None or 'clicked'})")
        time.sleep(1.5)  # let the grid finish painting
        if out is not None:
            ch.screenshot(out)
        return ch.js("document.body.innerText") or ""
    finally:
        ch.close()


PLOTS_JS = """(() => [...document.querySelectorAll('.js-plotly-plot')].map(p => ({
  title: (p.closest('[data-testid]') || p.parentElement.parentElement.parentElement).innerText.split('\\n')[0],
  traces: (p.data || []).filter(t => t.x && t.x.length).map(t => ({name: t.name || '', x: [...t.x], y: [...t.y]})),
  xtype: p.layout && p.layout.xaxis ? p.layout.xaxis.type : null,
})))()"""


def capture_charts(
    url: str,
    charts: list[str],
    x_metric: str,
    *,
    expanded: list[str],
    traces: int,
    out: str | os.PathLike | None = None,
    timeout_s: float = 120.0,
) -> list[dict]:
    """The experiment's chart view (`compareRunsMode=CHART`) with one line chart per key in `charts`
    against the metric `x_metric` (log x-axis); waits until each of the first len(charts) plots has
    `traces` lines, screenshots to `out`, returns the plots as Plotly holds them
    ([{title, traces: [{name, x, y}], xtype}])."""
    sep = "&" if "?" in url.split("#", 1)[-1] else "?"
    ch = Chromium(width=1600, height=1000)
    try:
        _open(
            ch,
            f"{url}{sep}compareRunsMode=CHART",
            ui_state(expanded=expanded, columns=[], charts=charts, x_metric=x_metric),
        )
        ready = (
            f"(() => {{ const ps = [...document.querySelectorAll('.js-plotly-plot')].slice(0, {len(charts)});"
            f" return ps.length === {len(charts)} && ps.every(p => (p.data || []).filter(t => t.x && t.x.length)"
            f".length >= {traces}); }})()"
        )
        if not ch.wait_for(HAS_EXPANDER_JS, timeout_s):
            raise TimeoutError(f"{url}: no parent run with nested runs rendered in {timeout_s:.0f} s")
        if not ch.wait_for(ready, timeout_s):
            raise TimeoutError(
                f"{url}: {len(charts)} charts with {traces} lines each not rendered in "
                f"{timeout_s:.0f} s; got {ch.js(PLOTS_JS)}"
            )
        ch.js(CLOSE_ASSISTANT_JS)
        time.sleep(2.0)
        if out is not None:
            ch.screenshot(out)
        return (ch.js(PLOTS_JS) or [])[: len(charts)]
    finally:
        ch.close()


def demo_sweep(
    url: str,
    sweep: str = "demo",
    *,
    workdir: str | os.PathLike | None = None,
    batch: int = 32,
    register: bool = True,
    system_metrics: bool = True,
) -> tuple[str, list[str], dict]:
    """Log a small synthetic sweep into the server at `url` with the project's tracker, as the demo's
    jobs would: a parent and three cell runs with the real metric names (`train/*` every step,
    `eval/<set>/loss` and `eval/<category>/loss` at the power-of-two milestones), dataset inputs,
    source tags and a registered reward model for the largest cell. The curves are made up (power
    laws in pairs seen); only the layout matters here. `batch`: pairs per step (8192 pairs in all).
    Returns (runs-table URL, [sweep, *cell run names], {(run name, eval key): [(pairs, loss), …]})."""
    import json as _json

    from worldpm_scaling import names
    from worldpm_scaling.track.datasets import describe
    from worldpm_scaling.track.mlflow_tracker import MlflowTracker
    from worldpm_scaling.track.registry import register_exported_model

    work = Path(workdir or tempfile.mkdtemp(prefix="wps-demo-sweep-"))
    data = work / "data" / "demo"
    data.mkdir(parents=True, exist_ok=True)
    train = data / "train.jsonl"
    train.write_text(
        "".join(_json.dumps({"prompt": f"q{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(64))
    )
    evals = []
    for set_name, cat in (("rmbench_chat", "adversarial"), ("ppe_mmlu_pro", "objective"), ("helpsteer2", "subjective")):
        f = data / "evals" / f"{set_name}.jsonl"
        f.parent.mkdir(exist_ok=True)
        f.write_text(
            "".join(_json.dumps({"prompt": f"{set_name}{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(16))
        )
        evals.append((set_name, cat, f))
    tr = MlflowTracker(
        url, spool_dir=work / "spool", flush_every_s=1.0, system_metrics=system_metrics, system_metrics_interval_s=0.5
    )
    parent = tr.start_sweep(sweep, params={"description": "tiny CPU grid (sweeps/demo.yaml)"})
    cells = [("tiny-xs", 0.00), ("tiny-s", 0.04), ("tiny-m", 0.08)]
    milestones = [2**k for k in range(9, 14)]
    run_names, curves = [sweep], {}
    for i, (model, gain) in enumerate(cells):
        name = f"{model}-8192-s0"
        run = tr.start_cell(
            sweep,
            f"cell{i:02d}",
            name=name,
            parent_run_id=parent.run_id,
            params={"model.name": model, "data.pairs": 8192, "train.lr": 1e-3, "cell_id": f"cell{i:02d}"},
        )
        run.log_inputs(
            [
                describe(train, name="demo/train.jsonl", context="training", pairs_used=8192),
                *[describe(f, name=n, context="evaluation", category=c) for n, c, f in evals],
            ]
        )
        for step in range(1, 8192 // batch + 1):
            pairs = batch * step
            m = {
                names.TRAIN_LOSS: round(0.6931 - (0.12 + gain) * (pairs / 8192) ** 0.5, 4),
                names.TRAIN_ACC: round(0.5 + (0.15 + gain) * (pairs / 8192) ** 0.5, 4),
                names.TRAIN_PAIRS_SEEN: pairs,
            }
            if pairs in milestones:
                for set_name, cat, _f in evals:
                    # adversarial falls as a power law, objective turns down late, subjective stays flat
                    loss = round(
                        {
                            "adversarial": 0.70 * (pairs / 512) ** -(0.05 + gain),
                            "objective": 0.69 - (0.02 + 2 * gain) * max(0.0, math.log2(pairs / 2048)),
                            "subjective": 0.68 - 0.002 * math.log2(pairs / 512),
                        }[cat],
                        4,
                    )
                    m[names.eval_loss(set_name)] = m[names.eval_loss(cat)] = loss
                    curves.setdefault((name, names.eval_loss(cat)), []).append((pairs, loss))
            run.log_metrics(m, step=step)
        run.finish("FINISHED")
        run_names.append(name)
    parent.finish("FINISHED")
    if register:
        model_dir = work / "exported" / "tiny-m"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.json").write_text('{"model_type": "qwen2"}')
        register_exported_model(url, sweep, f"cell{len(cells) - 1:02d}", model_dir, f"{sweep}-reward-model")
    exp = tr.store.experiment_id(sweep)
    return tr.store.runs_table_url(exp), run_names, curves


CATEGORY_CHARTS = [f"eval/{c}/loss" for c in ("adversarial", "objective", "subjective")]
TABLE_COLUMNS = [
    "attributes.`Dataset`",
    "attributes.`Source`",
    "attributes.`Models`",
    *[f"metrics.`{k}`" for k in CATEGORY_CHARTS],
]


def parent_run_ids(url: str, sweep: str) -> list[str]:
    from worldpm_scaling.track import query

    return [r.run_id for r in query.sweep_runs(url.split("/#", 1)[0], sweep) if r.role == "sweep"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="runs-table URL of an existing server (default: start one with a demo sweep)")
    ap.add_argument("--sweep", default="demo", help="with --url: the sweep whose parent run to expand")
    ap.add_argument("--names", nargs="*", default=[], help="run names that must be visible (with --url)")
    ap.add_argument("--out", default=str(REPO / "docs" / "mlflow_ui.png"), help="runs table screenshot")
    ap.add_argument("--charts-out", default=str(REPO / "docs" / "mlflow_ui_charts.png"), help="chart view screenshot")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))

    def shoot(url: str, names: list[str], sweep: str, traces: int) -> None:
        parents = parent_run_ids(url, sweep)
        for path, take in (
            (
                a.out,
                lambda p: capture_runs_table(
                    url, names, p, state=ui_state(expanded=parents, columns=TABLE_COLUMNS), expect=CATEGORY_CHARTS[:1]
                ),
            ),
            (
                a.charts_out,
                lambda p: capture_charts(
                    url, CATEGORY_CHARTS, "train/pairs_seen", expanded=parents, traces=traces, out=p
                ),
            ),
        ):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp_out = Path(path).with_suffix(".tmp.png")
            take(tmp_out)
            os.replace(tmp_out, path)
            print(f"wrote {path}")

    if a.url:
        shoot(a.url, a.names or ["Run Name"], a.sweep, traces=1)
        return 0
    from worldpm_scaling.track.server import MlflowServer

    tmp = Path(tempfile.mkdtemp(prefix="wps-ui-shot-"))
    try:
        srv = MlflowServer(f"sqlite:///{tmp / 'mlflow.db'}", tmp / "artifacts", workers=2)
        try:
            srv.start(wait_s=600)  # ~8 s on an idle box; minutes on a loaded one
            url, run_names, _ = demo_sweep(srv.url, workdir=tmp / "work")
            shoot(url, run_names, "demo", traces=len(run_names) - 1)
        finally:
            srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
