"""report.html in headless Chromium with no network: the findings come first, every plot image loads, every
table-of-contents link resolves, and a screenshot shows text and plots.

CI installs Debian's chromium and sets ZPEFT_REQUIRE_CHROMIUM=1, so there a missing browser fails instead of skipping.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib.image import imread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
REQUIRED = os.environ.get("ZPEFT_REQUIRE_CHROMIUM", "") not in ("", "0")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Run in the page once it has loaded: what a reader needs, written into the DOM for --dump-dom to print.
CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const links = [...document.querySelectorAll('nav.toc a[href^="#"]')];
  const result = {
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 40)),
    links: links.length,
    dead: links.filter(a => !document.getElementById(decodeURIComponent(a.getAttribute("href").slice(1))))
               .map(a => a.getAttribute("href")),
    sections: [...document.querySelectorAll("h2")].map(h => h.textContent.trim()),
    tocFirst: links.length ? links[0].textContent.trim() : null,
  };
  const out = document.createElement("pre");
  out.id = "zpeft-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    if CHROMIUM is None:
        if REQUIRED:
            pytest.fail("ZPEFT_REQUIRE_CHROMIUM is set but no chromium is installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return CHROMIUM


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_report_page_leads_with_findings_and_every_image_and_link_works(toy, tmp_path):
    page = (toy.report / "report.html").read_text()
    assert "</body>" in page
    probe = tmp_path / "report.html"  # beside nothing: the page must be self-contained to load its images
    probe.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _run(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], tmp_path).stdout
    found = re.search(r'<pre id="zpeft-check">(.*?)</pre>', dom, re.S)
    assert found, "the check script did not run in Chromium"
    result = json.loads(html.unescape(found.group(1)))
    assert result["sections"][0] == "Findings", result["sections"]
    assert result["tocFirst"] == "Findings"
    assert result["sections"].index("Plots") < result["sections"].index("Results by strategy")
    n_plots = len(list(toy.report.glob("*.png"))) - (1 if (toy.report / "report_screenshot.png").exists() else 0)
    assert result["images"] == n_plots and not result["broken"], result["broken"]
    assert result["links"] >= len(result["sections"]) and not result["dead"], result["dead"]


def test_report_html_renders_in_headless_chromium(toy, tmp_path):
    shot = tmp_path / "report.png"
    _run([f"--screenshot={shot}", "--window-size=1400,4000", (toy.report / "report.html").resolve().as_uri()],
         tmp_path)
    image = imread(shot)
    assert image.shape[:2] == (4000, 1400)
    rgb = image[..., :3]
    # A rendered page has text and plots: many distinct grey levels, not one background colour.
    assert rgb.std() > 0.05
    assert (rgb.mean(axis=2) < 0.5).mean() > 0.01  # dark pixels: text, table rules, plot ink
    shutil.copy(shot, toy.report / "report_screenshot.png")  # kept beside the report for a person to look at
