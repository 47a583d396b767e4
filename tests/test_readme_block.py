"""The README's findings block: generated from the report's Findings, refreshed in place between its markers."""

from __future__ import annotations

import pandas as pd
import pytest

from zpeft.report.build import build_report
from zpeft.report.readme import END, START


def test_report_refreshes_only_the_readme_block_with_its_answer_box(toy, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nBefore.\n\n{START}\nstale hand-written claim\n{END}\n\nAfter.\n")
    out = tmp_path / "report"
    build_report(toy.results, out, n_boot=100, progress=False, readme=readme)
    text = readme.read_text()
    assert text.startswith("# Title\n\nBefore.\n\n" + START) and text.endswith(END + "\n\nAfter.\n")
    assert "stale hand-written claim" not in text
    block = text.split(START)[1].split(END)[0]
    assert "\n#" not in block, "headings in the block would change the README's outline"
    # The answer box, the photo-z table, the reference paper's claims and the decomposition, as in the report.
    assert "**The answer**" in block and "How sure:" in block
    assert "**Results on the spec-z test set**" in block and "**Against the reference paper**" in block
    assert "~2.2x" in block and "**Decomposition: paper-tl -> zero-shot -> head-only -> LoRA**" in block
    md = (out / "report.md").read_text()
    answer = md.split("## The answer\n")[1].split("\n## ")[0].split("**Contents**")[0].strip()
    for line in answer.splitlines():
        if line.startswith("### "):
            assert f"**{line[4:]}**" in block
        else:
            assert line in block
    sizes = pd.read_csv(out / "results.csv").groupby("data_fraction")["n_spec_train"].max()
    for n in sizes:
        assert f"{int(n):,} spec-z training galaxies" in block
    # Refreshing again replaces the block instead of adding a second one.
    build_report(toy.results, out, n_boot=100, progress=False, readme=readme)
    assert readme.read_text().count(START) == 1


def test_a_readme_without_the_block_fails_before_any_work(toy, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# No markers here\n")
    with pytest.raises(ValueError, match="findings block"):
        build_report(toy.results, tmp_path / "report", n_boot=20, progress=False, readme=readme)
    assert not (tmp_path / "report").exists()
    assert readme.read_text() == "# No markers here\n"
