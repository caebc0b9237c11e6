"""Render LuDoseResponse HTML reports to PNG with headless Chromium, to check them as a reader sees them.

Usage::

    python scripts/report_screenshots.py REPORT.html [REPORT.html ...] --out DIR [--width 1200] [--height 1000]

For each report it writes ``DIR/<name>-full.png`` (the whole page, one tall image, blank space at
the bottom trimmed) and the same page cut into window-sized tiles ``DIR/<name>-01.png``, ... (with
100 px of overlap), which show the page at the size a reader sees it. ``<name>`` is the report's
folder and file name. Chromium is Debian's ``chromium``
(``apt-get install -y chromium``) or the binary named by ``$CHROMIUM``; each run uses a new, empty
profile folder and no network. The exit status is 1 when Chromium is missing or a screenshot fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


def chromium_binary() -> str | None:
    """$CHROMIUM, else the first of chromium / chromium-browser / google-chrome on PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if shutil.which(named) or Path(named).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def screenshot(binary: str, url: str, target: Path, width: int, height: int, timeout_s: float = 120) -> None:
    """One PNG of ``url`` at a ``width`` × ``height`` window; RuntimeError when Chromium writes none."""
    with tempfile.TemporaryDirectory(prefix="ludr-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={target}",
               f"--window-size={width},{height}", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not target.is_file() or target.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot of {url} (exit {done.returncode}): {done.stderr[-500:]}")


def _trim_and_tile(full: Path, out: Path, stem: str, height: int, overlap: int = 100) -> list[Path]:
    """Cut the blank bottom off ``full`` and write it again as tiles of ``height`` pixels."""
    from PIL import Image, ImageChops

    with Image.open(full) as im:
        page = im.convert("RGB")
    box = ImageChops.difference(page, Image.new("RGB", page.size, (255, 255, 255))).getbbox()
    if box is not None:
        page = page.crop((0, 0, page.width, min(page.height, box[3] + 20)))
    page.save(full)
    tiles = []
    top = 0
    while top < page.height:
        tiles.append(out / f"{stem}-{len(tiles) + 1:02d}.png")
        page.crop((0, top, page.width, min(page.height, top + height))).save(tiles[-1])
        top += height - overlap
    return tiles


def render(report: Path, out: Path, width: int = 1200, height: int = 1000, full_height: int | None = None,
           binary: str | None = None) -> list[Path]:
    """Screenshots of ``report``: the full page and its tiles; returns their paths."""
    binary = binary or chromium_binary()
    if binary is None:
        raise RuntimeError("chromium not found: install it (Debian: apt-get install -y chromium) or set $CHROMIUM")
    out.mkdir(parents=True, exist_ok=True)
    text = report.read_text(encoding="utf-8")
    url = report.resolve().as_uri()
    stem = report.parent.name + "-" + report.stem
    # a generous height from the page's figures and tables (Chromium does not size to the content);
    # the blank rest is trimmed
    full = full_height or min(32000, 2000 + 900 * text.count("<figure") + 40 * text.count("<tr>"))
    paths = [out / f"{stem}-full.png"]
    screenshot(binary, url, paths[0], width, full)
    return paths + _trim_and_tile(paths[0], out, stem, height)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--width", type=int, default=1200)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args(argv)
    try:
        for report in args.reports:
            for path in render(report, args.out, args.width, args.height):
                print(path)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"report_screenshots: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
