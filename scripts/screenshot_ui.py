#!/usr/bin/env python
"""Screenshot the MLflow runs table of a sweep (parent run with its cell runs expanded) with headless
Chromium, for docs/mlflow_ui.png; also returns the rendered text so a test can check the run names.

`--dump-dom` alone cannot do it: the UI collapses child runs under their parent and only a click
expands them, so this drives Chromium over the DevTools protocol (a minimal stdlib websocket client:
no extra dependency) — navigate, wait for the table, click the expanders, capture.

    python scripts/screenshot_ui.py                      # demo sweep on a throwaway server → docs/mlflow_ui.png
    python scripts/screenshot_ui.py --url http://127.0.0.1:5000/#/experiments/1/runs --out shot.png
"""

from __future__ import annotations

import argparse
import base64
import json
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
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run",
                  "--disable-sync", "--disable-extensions", "--mute-audio"]


# -- a minimal websocket client (RFC 6455: text frames, client masking, fragmentation) ----------------
class WebSocket:
    def __init__(self, url: str, timeout_s: float = 60.0):
        assert url.startswith("ws://"), url
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port or 80)), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
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
        self.proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--remote-debugging-port={self.port}",
                                      f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
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
        except Exception:  # noqa: BLE001
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


def capture_runs_table(url: str, run_names: list[str], out: str | os.PathLike | None = None,
                       timeout_s: float = 120.0) -> str:
    """Open `url` (a `/#/experiments/<id>/runs` page), expand nested runs, wait until every name in
    `run_names` is rendered, screenshot to `out`; returns the page's visible text."""
    ch = Chromium()
    try:
        ch.call("Page.enable")
        ch.call("Page.navigate", url=url)
        if not ch.wait_for(HAS_EXPANDER_JS, timeout_s):  # the grid is up once a parent row shows its expander
            raise TimeoutError(f"{url}: no parent run with nested runs rendered in {timeout_s:.0f} s")
        ch.js(CLOSE_ASSISTANT_JS)
        ch.js(EXPAND_JS)
        names = json.dumps(run_names)
        if not ch.wait_for(f"{names}.every(n => document.body.innerText.includes(n))", 60):
            raise TimeoutError(f"{url}: runs {run_names} not all rendered after expanding")
        time.sleep(1.0)  # let the grid finish painting
        if out is not None:
            ch.screenshot(out)
        return ch.js("document.body.innerText") or ""
    finally:
        ch.close()


def demo_sweep(url: str, sweep: str = "demo") -> tuple[str, list[str]]:
    """Log a small demo sweep (parent + 3 cells with the real metric names) into the server at `url`."""
    import math

    from worldpm_scaling import names
    from worldpm_scaling.track.mlflow_tracker import MlflowTracker

    tr = MlflowTracker(url, spool_dir=tempfile.mkdtemp(prefix="wps-spool-"), flush_every_s=1.0)
    parent = tr.start_sweep(sweep, params={"description": "tiny CPU grid (sweeps/demo.yaml)"})
    cells = [("tiny-xs", 0.69, 0.60), ("tiny-s", 0.66, 0.64), ("tiny-m", 0.64, 0.67)]
    run_names = [sweep]
    for i, (model, loss_end, acc_end) in enumerate(cells):
        name = f"{model}-8192-s0"
        run = tr.start_cell(sweep, f"cell{i:02d}", name=name, parent_run_id=parent.run_id,
                            params={"model.name": model, "data.pairs": 8192, "train.lr": 1e-3})
        for step in range(1, 257):
            x = step / 256
            run.log_metrics({names.TRAIN_LOSS: 0.6931 - (0.6931 - loss_end) * math.sqrt(x),
                             names.TRAIN_ACC: 0.5 + (acc_end - 0.5) * math.sqrt(x),
                             names.TRAIN_PAIRS_SEEN: 32 * step}, step=step)
        run.log_metrics({names.eval_loss("rmb"): loss_end + 0.01, names.eval_acc("rmb"): acc_end - 0.02}, step=256)
        run.finish("FINISHED")
        run_names.append(name)
    parent.finish("FINISHED")
    exp = tr.store.experiment_id(sweep)
    return tr.store.runs_table_url(exp), run_names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="runs-table URL of an existing server (default: start one with a demo sweep)")
    ap.add_argument("--names", nargs="*", default=[], help="run names that must be visible (with --url)")
    ap.add_argument("--out", default=str(REPO / "docs" / "mlflow_ui.png"))
    a = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if a.url:
        capture_runs_table(a.url, a.names or ["Run Name"], a.out)
        print(f"wrote {a.out}")
        return 0
    from worldpm_scaling.track.server import MlflowServer

    tmp = Path(tempfile.mkdtemp(prefix="wps-ui-shot-"))
    try:
        with MlflowServer(f"sqlite:///{tmp / 'mlflow.db'}", tmp / "artifacts") as srv:
            url, run_names = demo_sweep(srv.url)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            tmp_out = Path(a.out).with_suffix(".tmp.png")
            capture_runs_table(url, run_names, tmp_out)
            os.replace(tmp_out, a.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
