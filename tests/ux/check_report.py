#!/usr/bin/env python3
"""Opens a Sluice run report in headless Chromium and checks it as a user
sees it.

A copy of the report gets a small script that, after the browser laid the
page out, records for every chart (<figure data-chart=...>) the rendered
size of its SVG, how many shapes it drew and the texts it shows; Chromium's
--dump-dom prints the page with that record. The checks:

* every chart the kind of run must show is there, rendered (an SVG of real
  size with shapes in it) and names each of its expected series;
* no metric the run computed shows "n/a";
* the class labels say indoor/outdoor;
* a failed run names the failing step and its error.

A screenshot of the whole page is saved next to the test output.

Usage: check_report.py --kind training|inference|failed REPORT.html OUT_DIR
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

# Charts each kind of report must show.
EXPECTED = {
    "training": [
        "roc",
        "roc-log",
        "pr",
        "calibration",
        "score-histogram",
        "learning-curve",
        "confusion",
        "grid-heatmap",
        "importance-gain",
        "importance-splits",
    ],
    "inference": [
        "probability-histogram",
        "truth-confusion",
        "roc",
        "roc-log",
        "pr",
        "calibration",
        "score-histogram",
    ],
    "failed": [],
}

PROBE = """
<script>
(function () {
  const out = {figures: [], text: document.body.innerText};
  for (const f of document.querySelectorAll('figure[data-chart]')) {
    const svg = f.querySelector('svg');
    const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    out.figures.push({
      chart: f.dataset.chart,
      series: (f.dataset.series || '').split('|').filter(s => s.length),
      width: r.width,
      height: r.height,
      shapes: svg ? svg.querySelectorAll('path, polyline, polygon, line, rect, circle').length : 0,
      texts: svg ? Array.from(svg.querySelectorAll('text')).map(t => t.textContent) : [],
    });
  }
  const pre = document.createElement('pre');
  pre.id = 'ux-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium on PATH (tests/ux/run.sh installs Debian's `chromium`)")


def run_browser(args, profile):
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        sys.exit(f"chromium failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout


def probe(report, work):
    html = open(report, encoding="utf-8").read()
    probed = os.path.join(work, "probed.html")
    with open(probed, "w", encoding="utf-8") as f:
        f.write(html.replace("</body>", PROBE + "</body>"))
    dom = run_browser(["--dump-dom", "file://" + probed], os.path.join(work, "profile-dom"))
    m = re.search(r'<pre id="ux-probe">(.*?)</pre>', dom, re.S)
    if not m:
        sys.exit("the probe did not run: no #ux-probe in the dumped DOM")
    raw = m.group(1)
    for ent, ch in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'"), ("&amp;", "&")):
        raw = raw.replace(ent, ch)
    return json.loads(raw)


def screenshot(report, out_png, work):
    run_browser(
        ["--window-size=1280,6000", f"--screenshot={out_png}", "file://" + os.path.abspath(report)],
        os.path.join(work, "profile-shot"),
    )
    size = os.path.getsize(out_png) if os.path.exists(out_png) else 0
    return size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=sorted(EXPECTED), required=True)
    ap.add_argument("report")
    ap.add_argument("out_dir")
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    errors = []
    with tempfile.TemporaryDirectory(prefix="sluice-ux-") as work:
        data = probe(a.report, work)
        png = os.path.join(a.out_dir, f"report-{a.kind}.png")
        size = screenshot(a.report, png, work)
    if size < 20_000:
        errors.append(f"screenshot {png} is {size} bytes: the page did not render")

    figures = data["figures"]
    charts = [f["chart"] for f in figures]
    for want in EXPECTED[a.kind]:
        if want not in charts:
            errors.append(f"chart `{want}` missing (charts shown: {', '.join(charts)})")
    for f in figures:
        name = f"chart `{f['chart']}` ({' | '.join(f['series'])})"
        if f["width"] < 200 or f["height"] < 150:
            errors.append(f"{name}: rendered {f['width']}x{f['height']} px")
        if f["shapes"] < 4:
            errors.append(f"{name}: only {f['shapes']} shapes drawn")
        shown = " ".join(f["texts"])
        for s in f["series"]:
            if s not in shown:
                errors.append(f"{name}: series `{s}` not named in the chart ({shown[:200]})")

    text = data["text"]
    if "n/a" in text:
        lines = [l for l in text.splitlines() if "n/a" in l]
        errors.append(f"`n/a` shown for a computed value: {lines[:5]}")
    if a.kind in ("training", "inference"):
        for label in ("indoor", "outdoor"):
            if label not in text:
                errors.append(f"class label `{label}` not shown")
    if a.kind == "training":
        for needed in ("Parameters", "Grid search", "per fold", "splits", "indoor share"):
            if needed not in text:
                errors.append(f"training report lacks `{needed}`")
    if a.kind == "inference":
        for needed in ("Model used", "deployed by", "written to", "predictions/run="):
            if needed not in text:
                errors.append(f"inference report lacks `{needed}`")
    if a.kind == "failed":
        if "Failed at step" not in text:
            errors.append("failed-run report does not name the failing step")
        if "min_metric" not in text:
            errors.append("failed-run report does not show the error")

    print(f"{a.report}: {len(figures)} charts ({', '.join(charts)}); screenshot {png} ({size} bytes)")
    if errors:
        for e in errors:
            print(f"  FAIL {e}")
        sys.exit(1)
    print(f"  ok: {a.kind} report renders every chart with its series, no n/a")


if __name__ == "__main__":
    main()
