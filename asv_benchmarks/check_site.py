#!/usr/bin/env python3
"""Check in headless Chromium that the published asv site renders offline.

Serves the published site (``html_dir`` of ``asv.conf.json``, after
``offline_site.py``) with ``python -m http.server`` on 127.0.0.1 (or uses one
already served, ``--base-url http://127.0.0.1:8080/`` for ``asv preview``), then loads

1. the benchmark grid (``index.html``), and
2. one benchmark's page (``index.html#<benchmark>``, default
   ``bench_time.Softmax.time_softmax``): its plot is drawn by flot on a canvas,

in Debian's ``chromium`` with every host name but 127.0.0.1 unresolvable (as if
offline).  For each page it saves a PNG screenshot and the rendered DOM, and checks
the DOM: the page did not fall back to asv's ``error.html``, the grid has benchmark
tiles, the plot page has flot's canvas and axis labels.  Exit status 0 when both
render.  Look at the screenshots too.

    cd asv_benchmarks && python check_site.py [--out .asv/screenshots] [--benchmark NAME]

Chromium: ``apt-get update && apt-get install -y chromium``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # Offline: only the local server resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # Let the page's scripts, JSON requests and drawing finish before capture.
    "--virtual-time-budget=15000",
]


def html_dir_from_config() -> Path:
    from asv.config import Config

    return (HERE / Config.load(str(HERE / "asv.conf.json")).html_dir).resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(html_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(html_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "index.json", timeout=1).read()
            return server, base
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("the local http.server did not come up")


def chromium(binary: str, url: str, size: str, *, screenshot: Path | None = None) -> str:
    """Load ``url`` in a ``size`` ("W,H") window; save a screenshot if asked, else
    return the rendered DOM."""
    with tempfile.TemporaryDirectory(prefix="asv-chromium-") as profile:
        flags = [*CHROMIUM_FLAGS, f"--window-size={size}", f"--user-data-dir={profile}"]
        if screenshot is not None:
            subprocess.run([binary, *flags, f"--screenshot={screenshot}", url],
                           check=True, capture_output=True, timeout=120)
            return ""
        done = subprocess.run([binary, *flags, "--dump-dom", url],
                              check=True, capture_output=True, text=True, timeout=120)
        return done.stdout


def check_grid(dom: str) -> tuple[list[str], str]:
    tiles = len(re.findall(r'class="btn benchmark-container"', dom))
    # Each tile's summary plot is drawn by flot (on a canvas) once the tile is in view.
    plots = len(re.findall(r'<div id="summarygrid-[^"]*" class="benchmark-plot"[^>]*><canvas', dom))
    problems = []
    if not tiles:
        problems.append("the grid has no benchmark tiles")
    elif plots < tiles:
        problems.append(f"only {plots} of {tiles} tiles have a plot")
    return problems, f"{tiles} benchmark tiles, {plots} with a plot"


def check_plot(dom: str) -> tuple[list[str], str]:
    graph = dom.split('id="main-graph"', 1)[-1].split('id="overview"', 1)[0]
    canvases = len(re.findall(r"<canvas[^>]*flot-base", graph))
    ticks = len(re.findall(r'class="flot-tick-label', graph))
    problems = []
    if not canvases:
        problems.append("no flot canvas in #main-graph")
    if not ticks:
        problems.append("no axis labels in #main-graph")
    return problems, f"{canvases} flot canvas, {ticks} axis labels in #main-graph"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html-dir", type=Path, help="default: html_dir of asv.conf.json")
    parser.add_argument("--out", type=Path, default=HERE / ".asv" / "screenshots")
    parser.add_argument("--benchmark", default="bench_time.Softmax.time_softmax")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--base-url", help="check a site already served there (e.g. by "
                        "`asv preview`: http://127.0.0.1:8080/) instead of serving html_dir")
    args = parser.parse_args()
    html_dir = (args.html_dir or html_dir_from_config()).resolve()
    index = html_dir / "index.html"
    if not index.is_file():
        sys.exit(f"check_site.py: no {index}: run `asv publish` and offline_site.py first")
    if "https://" in "".join(re.findall(r"<(?:script|link)\b[^>]*>", index.read_text())):
        print("check_site.py: index.html still loads from a CDN: run offline_site.py", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)

    if args.base_url:
        server, base = None, args.base_url.rstrip("/") + "/"
    else:
        server, base = serve(html_dir)
    failed = False
    try:
        pages = [  # the grid's window is tall enough to show every tile (they draw when in view)
            ("grid", base + "index.html", "1400,1500", check_grid),
            ("plot", base + "index.html#" + args.benchmark, "1400,1000", check_plot),
        ]
        for name, url, size, check in pages:
            png = args.out / f"{name}.png"
            chromium(args.chromium, url, size, screenshot=png)
            dom = chromium(args.chromium, url, size)
            (args.out / f"{name}.html").write_text(dom)
            problems, summary = check(dom)
            if "<title>airspeed velocity error</title>" in dom or 'id="summarygrid-display"' not in dom:
                problems.append("the page fell back to asv's error page (a library failed to load)")
            status = "FAIL" if problems else "ok"
            failed |= bool(problems)
            print(f"{status:4} {name}: {url} -> {png} ({png.stat().st_size} bytes); {summary}")
            for problem in problems:
                print(f"     {problem}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
