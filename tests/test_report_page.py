"""The report page: a table of contents whose links resolve, and one fixed colour per strategy in every plot."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from zpeft.report import plots
from zpeft.report.render import Block, render_html, render_markdown, slug


class _Page(HTMLParser):
    """Ids, the links inside <nav>, and the order in which the nav and headings open."""

    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.toc_links: list[str] = []
        self.events: list[str] = []  # "h1", "nav", "h2", "h3" in document order
        self._in_nav = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag in ("h1", "h2", "h3", "nav"):
            self.events.append(tag)
        if tag == "nav":
            self._in_nav = True
        if tag == "a" and self._in_nav:
            self.toc_links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav = False


BLOCKS = [Block("h1", "zpeft report: toy"), Block("p", "How to read it."),
          Block("h2", "Results by strategy"), Block("h3", "spec-z test, against the label"),
          Block("p", "text"), Block("h3", "spec-z test, against the label"),  # a repeated heading
          Block("h2", "Plots"), Block("h3", "toy / tiny-cnn"),
          Block("h2", "Glossary of metrics: σ_NMAD & |bias| (`outlier_015`)")]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_html_contents_links_resolve_to_ids_on_the_page():
    page = _parse(render_html(BLOCKS, "toy"))
    headings = [b for b in BLOCKS if b.kind in ("h2", "h3")]
    assert len(page.toc_links) == len(headings)
    assert all(link.startswith("#") for link in page.toc_links)
    assert {link[1:] for link in page.toc_links} <= set(page.ids)
    assert len(set(page.ids)) == len(page.ids), "ids must be unique"
    assert len(set(page.toc_links)) == len(page.toc_links), "a repeated heading needs its own anchor"


def test_html_contents_sits_after_the_first_section_so_the_answer_comes_first():
    page = _parse(render_html(BLOCKS, "toy"))
    assert page.events[:5] == ["h1", "h2", "h3", "h3", "nav"] and page.events[5] == "h2"
    assert page.events.count("nav") == 1
    only_one = [Block("h1", "t"), Block("h2", "The answer"), Block("p", "text")]
    assert _parse(render_html(only_one, "t")).events == ["h1", "nav", "h2"]


def test_markdown_contents_uses_github_anchors_after_the_first_section():
    text = render_markdown(BLOCKS)
    lines = text.splitlines()
    contents = lines.index("**Contents**")
    h2 = [i for i, line in enumerate(lines) if line.startswith("## ")]
    assert lines.index("# zpeft report: toy") < h2[0] < contents < h2[1]
    assert "- [Results by strategy](#results-by-strategy)" in lines
    assert "  - [spec-z test, against the label](#spec-z-test-against-the-label)" in lines
    assert "  - [spec-z test, against the label](#spec-z-test-against-the-label-1)" in lines
    assert "  - [toy / tiny-cnn](#toy--tiny-cnn)" in lines
    assert "- [Glossary of metrics: σ_NMAD & |bias| (`outlier_015`)](#glossary-of-metrics-σ_nmad--bias-outlier_015)" \
        in lines


def test_slug_matches_github_for_punctuation_and_case():
    assert slug("Results in the reference paper's range") == "results-in-the-reference-papers-range"
    assert slug("Failed runs") == "failed-runs"
    assert slug("spec-z test, against the label") == "spec-z-test-against-the-label"


def test_no_headings_no_contents():
    blocks = [Block("h1", "t"), Block("p", "only text")]
    assert "Contents" not in render_markdown(blocks)
    assert "<nav" not in render_html(blocks, "t")


def test_toy_report_contents_links_resolve(toy):
    page = _parse((toy.report / "report.html").read_text())
    assert page.toc_links, "the toy report has sections, so it has a table of contents"
    assert {link[1:] for link in page.toc_links} <= set(page.ids)
    h2 = [i for i, e in enumerate(page.events) if e == "h2"]
    assert h2[0] < page.events.index("nav") < h2[1]  # after the answer, before the rest
    md = (toy.report / "report.md").read_text()
    assert md.index("## The answer") < md.index("**Contents**") < md.index("## Results on the spec-z test set")


def test_a_details_block_renders_collapsed_in_html_and_markdown():
    blocks = [Block("h1", "t"), Block("details", "Show 2 estimates",
                                      extra={"blocks": [Block("p", "not tests"), Block("p", "second")]})]
    page = render_html(blocks, "t")
    assert "<details><summary>Show 2 estimates</summary>" in page and "<details open" not in page
    assert page.index("<summary>") < page.index("not tests") < page.index("</details>")
    md = render_markdown(blocks)
    assert "<details><summary>Show 2 estimates</summary>\n\nnot tests\n\nsecond\n\n</details>" in md


# --- colours ------------------------------------------------------------------------------------------------------

KNOWN = ("zero-shot", "head-only", "paper-tl", "last-k", "full", "combined", "bitfit", "norm-only")


def _summary(variants: list[str]) -> pd.DataFrame:
    """A summary as zpeft.report.build makes it, with made-up numbers: only the colours are under test here."""
    rows = []
    for k, variant in enumerate(variants):
        for test_set in ("spec", "photo"):
            rows.append({"variant": variant, "strategy": variant.split("-r")[0], "test_set": test_set,
                         "reference": "label", "range": "all", "metric": "sigma_nmad", "value": 0.05 + 0.01 * k,
                         "lo": 0.04 + 0.01 * k, "hi": 0.06 + 0.01 * k, "interval": "bootstrap",
                         "trainable_params": 0 if variant == "zero-shot" else 10 ** (k + 2),
                         "train_seconds": 0.0 if variant == "zero-shot" else 1.0 + k})
    return pd.DataFrame(rows)


def _legend_colours(monkeypatch, tmp_path, variants: list[str]) -> dict[str, tuple]:
    figures = []
    real_save = plots.save_png

    def keep(fig, out_dir, name):
        figures.append(fig)
        return real_save(fig, out_dir, name)

    monkeypatch.setattr(plots, "save_png", keep)
    made = plots.pareto(_summary(variants), variants, tmp_path)
    assert made.skipped is None
    legend = figures[-1].legends[0]
    return {text.get_text(): to_rgb(handle.get_color()) for handle, text in zip(legend.legend_handles,
                                                                              legend.get_texts())}


def test_a_strategy_has_the_same_colour_whichever_others_are_plotted(monkeypatch, tmp_path):
    everyone = ["zero-shot", "head-only", "lora-r2", "lora-r8", "full", "combined", "bitfit", "my-new-method"]
    all_colours = _legend_colours(monkeypatch, tmp_path, everyone)
    for subset in (["full", "lora-r8"], ["my-new-method", "bitfit", "zero-shot"], ["lora-r8", "lora-r2"]):
        colours = _legend_colours(monkeypatch, tmp_path, subset)
        for variant in subset:
            assert colours[variant] == pytest.approx(all_colours[variant]), variant
            assert colours[variant] == pytest.approx(plots.strategy_colour(variant))


def test_known_strategies_have_distinct_fixed_colours():
    colours = [plots.strategy_colour(name) for name in KNOWN]
    assert len({tuple(np.round(c, 3)) for c in colours}) == len(KNOWN)
    assert plots.strategy_colour("full") == to_rgb(plots.STRATEGY_COLOURS["full"])


def test_adapter_ranks_are_shades_of_one_hue_darker_with_rank():
    def lightness(rgb):
        return float(np.dot(rgb, (0.299, 0.587, 0.114)))

    shades = [plots.strategy_colour(f"lora-r{r}") for r in (1, 2, 4, 8, 16, 64)]
    assert all(lightness(a) > lightness(b) for a, b in zip(shades, shades[1:]))
    assert all(c[2] >= c[0] and c[2] >= c[1] for c in shades), "every lora rank is a blue"
    assert plots.strategy_colour("dora-r4") != plots.strategy_colour("lora-r4")


def test_unknown_names_fall_back_to_the_colour_blind_palette_stably():
    names = ["my-new-method", "prefix-tuning", "ia3-r4"]
    for name in names:
        colour = plots.strategy_colour(name)
        assert colour in [tuple(c) for c in plots.FALLBACK]
        assert plots.strategy_colour(name) == colour
    # sha256, not Python's salted hash(): the pick is pinned, the same in every process and on every machine.
    assert plots.strategy_colour("my-new-method") == tuple(plots.FALLBACK[4])


def test_a_variant_with_parameters_is_a_shade_of_its_label():
    base = plots.strategy_colour("lora-r4")
    variant = plots.strategy_colour("lora-r4 (bn=train)")
    assert variant != base
    assert plots.strategy_colour("lora-r4 (bn=train)") == variant


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError, match="non-empty string"):
        plots.strategy_colour(bad)
