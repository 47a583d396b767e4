"""report.html in headless Chromium with no network: the answer comes first and fills the first screen at 1400 x 900,
the first plot is within the first three screens, nothing is wider than the viewport, every plot image loads, every
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
    viewport: [window.innerWidth, window.innerHeight, document.documentElement.clientWidth],
    height: document.documentElement.scrollHeight,
    tooWide: [...document.body.querySelectorAll("*")]
      .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
      .map(e => e.tagName + " " + Math.round(e.getBoundingClientRect().width) + "px").slice(0, 10),
    answer: (() => {
      const box = document.querySelector("section.answer");
      if (!box) return null;
      const table = box.querySelector("table");
      return {top: box.getBoundingClientRect().top + scrollY,
              heading: box.querySelector("h2").textContent.trim(),
              tableBottom: table ? table.getBoundingClientRect().bottom + scrollY : null};
    })(),
    firstPlot: (() => {
      const img = document.querySelector("figure img");
      return img ? {top: img.getBoundingClientRect().top + scrollY, alt: img.alt} : null;
    })(),
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


def _check(page: str, tmp_path: Path, size: str = "1400,900") -> dict:
    probe = tmp_path / "report.html"  # beside nothing: the page must be self-contained to load its images
    probe.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _run([f"--window-size={size}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], tmp_path).stdout
    found = re.search(r'<pre id="zpeft-check">(.*?)</pre>', dom, re.S)
    assert found, "the check script did not run in Chromium"
    return json.loads(html.unescape(found.group(1)))


def test_report_page_leads_with_the_answer_and_every_image_and_link_works(toy, tmp_path):
    page = (toy.report / "report.html").read_text()
    assert "</body>" in page
    result = _check(page, tmp_path)
    assert result["sections"][:3] == ["The answer", "Results on the spec-z test set", "Accuracy against cost"]
    assert result["tocFirst"] == "The answer"
    assert result["sections"].index("Accuracy against cost") < result["sections"].index("Plots") \
        < result["sections"].index("Results by strategy")
    n_plots = len(list(toy.report.glob("*.png"))) - (1 if (toy.report / "report_screenshot.png").exists() else 0)
    assert result["images"] == n_plots and not result["broken"], result["broken"]
    assert result["links"] >= len(result["sections"]) and not result["dead"], result["dead"]


def test_first_screen_shows_the_answer_and_the_first_plot_comes_within_three_screens(toy, tmp_path):
    result = _check((toy.report / "report.html").read_text(), tmp_path)
    width, _, client = result["viewport"]
    height = 900  # the screen; headless Chromium's dump mode reports a shorter inner height, the layout is the same
    assert width == 1400, result["viewport"]
    answer = result["answer"]
    assert answer and answer["heading"] == "The answer"
    assert answer["top"] < 200 and answer["tableBottom"] <= height, answer  # its first table fits the first screen
    assert result["firstPlot"]["alt"].startswith("Pareto") and result["firstPlot"]["top"] < 3 * height, result
    assert not result["tooWide"], f"wider than the {client} px viewport: {result['tooWide']}"


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
