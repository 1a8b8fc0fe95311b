#!/usr/bin/env python3
"""Make the site written by ``asv publish`` work without network access.

asv's ``index.html`` loads jQuery, flot (and its plugins), stupidtable, blueimp-md5
and Bootstrap from public CDNs, with ``integrity=`` hashes; offline, the first
failed load sends the browser to ``error.html``.  This script installs the same
libraries from the npm registry into ``.asv/vendor`` (ignored by git), copies the
files the site needs into ``<html_dir>/vendor/`` and rewrites the published HTML
to load them from there, without the ``integrity``/``crossorigin``/
``referrerpolicy`` attributes (the local files are not byte-identical to the CDN
builds: flot's npm package has no ``.min.js``, stupidtable's oldest npm release is
1.1.3 where the CDN serves 1.0.1).

Run it after every ``asv publish`` (publish rewrites the HTML):

    cd asv_benchmarks && asv publish && python offline_site.py

It needs ``npm`` (Debian: ``apt-get install -y npm``) the first time, and fails if
the published HTML still references a remote script or stylesheet afterwards.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: npm package -> (version, files the site needs, relative to the package root).
PACKAGES: dict[str, tuple[str, list[str]]] = {
    "jquery": ("3.3.1", ["dist/jquery.min.js"]),
    "flot": (
        "0.8.3",
        [
            "jquery.flot.js",
            "jquery.flot.time.js",
            "jquery.flot.selection.js",
            "jquery.flot.categories.js",
        ],
    ),
    "flot-orderbars": ("1.0.0", ["js/jquery.flot.orderBars.js"]),
    "stupid-table-plugin": ("1.1.3", ["stupidtable.min.js"]),
    "blueimp-md5": ("2.19.0", ["js/md5.min.js"]),
    "bootstrap": (
        "3.1.1",
        ["dist/js/bootstrap.min.js", "dist/css/bootstrap.min.css", "dist/fonts"],
    ),
}

#: The last path component of each CDN URL in asv 0.6's index.html -> local file.
LOCAL_FOR = {
    "jquery-3.3.1.min.js": "jquery/dist/jquery.min.js",
    "jquery.flot.min.js": "flot/jquery.flot.js",
    "jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "flot/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "flot/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "flot-orderbars/js/jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupid-table-plugin/stupidtable.min.js",
    "md5.min.js": "blueimp-md5/js/md5.min.js",
    "bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
}

TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
REMOTE = re.compile(r'\b(src|href)="(https?://[^"]+)"', re.IGNORECASE)
DROP = re.compile(r'\s+(?:integrity|crossorigin|referrerpolicy)="[^"]*"', re.IGNORECASE)


def html_dir_from_config() -> Path:
    from asv.config import Config  # asv reads its JSON-with-comments config

    return (HERE / Config.load(str(HERE / "asv.conf.json")).html_dir).resolve()


def installed_version(node_modules: Path, package: str) -> str | None:
    manifest = node_modules / package / "package.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text()).get("version")


def npm_install(prefix: Path) -> Path:
    node_modules = prefix / "node_modules"
    missing = [
        f"{name}@{version}"
        for name, (version, _) in PACKAGES.items()
        if installed_version(node_modules, name) != version
    ]
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            sys.exit("offline_site.py: npm not found (Debian: apt-get install -y npm)")
        prefix.mkdir(parents=True, exist_ok=True)
        print(f"npm install {' '.join(missing)}", flush=True)
        subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-save", "--no-package-lock",
             "--no-audit", "--no-fund", *missing],
            check=True,
        )
    return node_modules


def copy_vendor(node_modules: Path, vendor: Path) -> None:
    for name, (_, files) in PACKAGES.items():
        for rel in files:
            src = node_modules / name / rel
            dst = vendor / name / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)


def rewrite(html: str) -> tuple[str, list[str]]:
    unknown: list[str] = []

    def fix(match: re.Match) -> str:
        tag = match.group(0)
        remote = REMOTE.search(tag)
        if remote is None:
            return tag
        url = remote.group(2)
        local = LOCAL_FOR.get(url.rsplit("/", 1)[-1])
        if local is None:
            unknown.append(url)
            return tag
        tag = tag.replace(remote.group(0), f'{remote.group(1)}="vendor/{local}"')
        return DROP.sub("", tag)

    return TAG.sub(fix, html), unknown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html-dir", type=Path, help="default: html_dir of asv.conf.json")
    parser.add_argument("--npm-prefix", type=Path, default=HERE / ".asv" / "vendor")
    args = parser.parse_args()
    html_dir = (args.html_dir or html_dir_from_config()).resolve()
    if not (html_dir / "index.html").is_file():
        sys.exit(f"offline_site.py: no {html_dir / 'index.html'}: run `asv publish` first")

    node_modules = npm_install(args.npm_prefix.resolve())
    copy_vendor(node_modules, html_dir / "vendor")

    problems = []
    for page in sorted(html_dir.glob("*.html")):
        text, unknown = rewrite(page.read_text(encoding="utf-8"))
        page.write_text(text, encoding="utf-8")
        problems += [f"{page.name}: {url}" for url in unknown]
        for tag in TAG.findall(text):
            if REMOTE.search(tag):
                problems.append(f"{page.name}: still remote: {tag}")
    if problems:
        print("offline_site.py: remote resources left:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{html_dir}: site is self-contained (libraries in {html_dir / 'vendor'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
