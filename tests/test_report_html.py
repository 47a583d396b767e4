"""report.html renders in headless Chromium with no network: a screenshot shows tables and plots."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from matplotlib.image import imread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_html_renders_in_headless_chromium(toy, tmp_path):
    report = toy.report
    shot = tmp_path / "report.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,4000",
           (report / "report.html").resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    image = imread(shot)
    assert image.shape[:2] == (4000, 1400)
    rgb = image[..., :3]
    # A rendered page has text and plots: many distinct grey levels, not one background colour.
    assert rgb.std() > 0.05
    assert (rgb.mean(axis=2) < 0.5).mean() > 0.01  # dark pixels: text, table rules, plot ink
    keep = report / "report_screenshot.png"  # kept beside the report for a person to look at
    shutil.copy(shot, keep)
