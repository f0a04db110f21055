"""Render run reports as a user sees them: rebuild each report, then screenshot it with headless
Chromium to a PNG (the whole page, cropped at its end).

    python benchmarks/render_report.py RUN [RUN ...] [--out DIR] [--width 1200] [--no-rebuild]

RUN is a run folder (``.../train``, holding distill.json). The rebuilt report goes to DIR/NAME/
(default ``runs/rendered``) so the run folder is only read; NAME is the run's folder name, or its
parent's for a pipeline run's ``train``. Without Chromium the reports are still rebuilt and the
screenshots are skipped with the reason (install ``chromium``, or set CHROMIUM to its path).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The window is this tall and the screenshot is cropped to the page's end (Chromium's --screenshot
#: captures the window only; 14,000 px holds a report with every section).
WINDOW_HEIGHT = 14000


def find_chromium() -> str | None:
    """The Chromium executable: $CHROMIUM, else the first of :data:`BROWSERS` on the PATH."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def run_name(run: Path) -> str:
    return run.resolve().parent.name if run.name == "train" else run.name


def screenshot(browser: str, page: Path, png: Path, *, width: int = 1200, timeout: float = 120) -> Path:
    """A PNG of the whole ``page``, ``width`` CSS pixels wide."""
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: no state from earlier runs
        cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
               f"--window-size={width},{WINDOW_HEIGHT}", f"--screenshot={png}", page.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.exists():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    crop_to_content(png)
    return png


def crop_to_content(png: Path, margin: int = 40) -> None:
    """Cut the blank rows below the page's last content (the window is taller than the page)."""
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    img = mpimg.imread(png)
    ink = np.where((img[..., :3] < 0.97).any(axis=(1, 2)))[0]
    if len(ink):
        plt.imsave(png, img[: min(len(img), ink[-1] + margin)])


def render(run: Path, out: Path, browser: str | None, *, rebuild: bool = True, width: int = 1200) -> str:
    """Rebuild the report of ``run`` into ``out``/NAME and screenshot it; returns a line to print."""
    name = run_name(run)
    if rebuild:
        from symdistill.report.run_report import write_report
        _, page = write_report(run, out / name)
    else:
        page = run / "report.html"
    if browser is None:
        return f"{name}: {page} (screenshot skipped: no Chromium found; install chromium or set CHROMIUM)"
    t0 = time.perf_counter()
    png = screenshot(browser, page, out / f"{name}.png", width=width)
    return f"{name}: {page} -> {png} ({time.perf_counter() - t0:.1f} s)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (holding distill.json)")
    p.add_argument("--out", type=Path, default=Path("runs/rendered"), help="where reports and PNGs go")
    p.add_argument("--width", type=int, default=1200, help="page width in CSS pixels")
    p.add_argument("--no-rebuild", action="store_true", help="screenshot the run's own report.html as it is")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "distill.json").exists() and not (r / "report.html").exists()]
    if missing:
        print(f"Not run folders (no distill.json or report.html): {', '.join(missing)}", file=sys.stderr)
        return 2
    browser = find_chromium()
    if browser is None:
        print("Chromium not found: reports are rebuilt, screenshots skipped "
              "(install chromium, e.g. `apt-get install chromium`, or set CHROMIUM=/path/to/chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        print(render(run, args.out, browser, rebuild=not args.no_rebuild, width=args.width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
