"""The README's findings block: generated from the report's Findings, refreshed in place between its markers."""

from __future__ import annotations

import pandas as pd
import pytest

from zpeft.report.build import build_report
from zpeft.report.readme import END, START


def test_report_refreshes_only_the_readme_block_with_its_own_findings(toy, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nBefore.\n\n{START}\nstale hand-written claim\n{END}\n\nAfter.\n")
    out = tmp_path / "report"
    build_report(toy.results, out, n_boot=100, progress=False, readme=readme)
    text = readme.read_text()
    assert text.startswith("# Title\n\nBefore.\n\n" + START) and text.endswith(END + "\n\nAfter.\n")
    assert "stale hand-written claim" not in text
    findings = pd.read_csv(out / "findings.csv")
    assert f"family of {len(findings)} pre-specified" in text
    # Every data fraction the suite ran has its own table of comparisons against head-only.
    for fraction in sorted(findings["data_fraction"].unique()):
        assert f"spec-z data fraction {fraction:g}, whole range" in text
    # The cells are the report's numbers: the lora-r4 vs head-only sigma_nmad difference, interval and verdict.
    row = findings[(findings["a"] == "lora-r4") & (findings["b"] == "head-only") & (findings["metric"] == "sigma_nmad")
                   & (findings["test_set"] == "spec") & (findings["range"] == "all")
                   & (findings["data_fraction"] == findings["data_fraction"].max())].iloc[0]
    cell = f"{row['diff']:+.4f} [{row['lo']:+.4f}, {row['hi']:+.4f}]"
    assert (f"**{cell}**" if row["significant"] else f"{cell} n.s.") in text
    assert "**Recommendation.**" in text
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
