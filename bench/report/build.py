"""Reports from a results directory: `results.csv`, `references.csv`, `report.md`, a self-contained `report.html`
and plots.

A report reads only run records, their predictions and the test sets' references (zpeft.run.records);
it knows nothing of strategies or training. Tables follow metric names exactly and say which
direction is better (every metric is lower-is-better; biases are compared by |value|).
"""

from __future__ import annotations

import json
from pathlib import Path

from zpeft.checksum import matches
from zpeft.report.answer import answer_blocks, paper_style_table, reference_paper_blocks
from zpeft.report.calibration import calibration_section
from zpeft.report.findings import compute_findings
from zpeft.report.readme import readme_block, readme_parts, refresh_readme
from zpeft.report.references import reference_table
from zpeft.report.render import Block, render_html, render_markdown
from zpeft.report.sections import (
    exploratory_appendix,
    failed_section,
    fractions_text,
    glossary,
    main_tables,
    overview,
    pareto_section,
    plot_section,
    primary_section,
    training_section,
)
from zpeft.report.tables import bins_table, main_fraction, results_table
from zpeft.run.layout import ResultsLayout
from zpeft.run.records import RunRecord, load_npz, read_records

HOW_TO_READ = (
    "Every metric here is better when lower; `bias` and `bias_mean` are signed and better when |value| is "
    "closer to zero. dz = (z_pred - z_ref) / (1 + z_ref), with z_ref the test set's label or, for simulated data, "
    "the true redshift. The spec-z test set is the adaptation target; the photo-z test set shows what a strategy "
    "forgot. In the tables by strategy further down, a cell with several seeds is mean ± standard deviation over "
    "seeds; with one seed it is the value and its 68 % bootstrap interval over test galaxies, as recorded. The "
    "test-set sampling error is shared by all strategies, so two strategies whose intervals overlap may still "
    "differ: the comparisons answer that by resampling the same galaxies and seeds for both."
)


def build_report(results_dir: str | Path, out_dir: str | Path, *, significance_level: float = 0.95,
                 n_boot: int = 1000, progress: bool = True, readme: str | Path | None = None) -> Path:
    """Write results.csv, bins.csv, references.csv, findings.csv, report.md, report.html and the PNG plots to
    `out_dir`; return report.html.

    `significance_level` is the level of the exploratory and answer-box intervals (1 - level: the family-wise
    error rate of the primary family's Holm verdicts); `n_boot` the number of joint seed-and-galaxy replicates
    (zpeft.report.findings raises it for the primary family where Holm needs more). With `readme`, that file's
    generated block (zpeft.report.readme) is rewritten with the answer box, photo-z table and reference-paper
    comparison.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if readme is not None:
        readme_parts(readme)  # a missing block fails now, not after the report's work
    records, stale = current_records(results_dir)
    if not records:
        raise FileNotFoundError(f"{results_dir}: no run records (*.json); run a suite first (zpeft run ...)")
    unreadable = unreadable_files(results_dir, records)
    if unreadable:
        raise ValueError(f"{results_dir}: {len(unreadable)} unreadable file(s), nothing written; run the suite "
                         "again to recompute them:\n" + "\n".join(f"  {p}" for p in unreadable))
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = results_table(records)
    frame.to_csv(out_dir / "results.csv", index=False)
    bins = bins_table(records)
    bins.to_csv(out_dir / "bins.csv", index=False)

    ok = frame[frame["status"] == "ok"]
    main = main_fraction(ok)
    references, reference_notes = reference_table(results_dir, sorted(main["dataset"].unique()) if len(main) else [],
                                                  n_boot=n_boot)
    references.to_csv(out_dir / "references.csv", index=False)
    findings = compute_findings(ok, results_dir, significance_level, n_boot, progress)
    findings.csv().to_csv(out_dir / "findings.csv", index=False)

    answer = answer_blocks(ok, findings, records)
    answer[0].extra["answer"] = True
    head = [Block("h1", f"zpeft report: {results_dir.name}"), *answer]
    paper_table = paper_style_table(findings, references)
    paper = reference_paper_blocks(ok, findings)
    about = [Block("h2", "How to read this report"), Block("p", HOW_TO_READ), Block("p", overview(frame))]
    if stale:
        about.append(Block("p", f"{stale} older record(s) in {results_dir} are not part of the suite's current plan "
                                "(their configuration changed since) and are left out."))
    if len(ok["data_fraction"].unique()) > 1:
        about.append(Block("p", "The tables by strategy and most plots use each dataset's full training data "
                                f"(data fraction {fractions_text(main)}); smaller spec-z training sets appear in the "
                                "answer, the comparisons, the data-fraction curves and results.csv."))
    blocks: list[Block] = [*head, *paper_table, *pareto_section(ok, main, references, out_dir), *paper,
                           *primary_section(findings), *about,
                           *plot_section(ok, bins, main, results_dir, out_dir, references),
                           *calibration_section(records, out_dir),
                           *main_tables(main, "all", references, reference_notes),
                           *main_tables(main, "paper_range", references),
                           *training_section(ok), *failed_section(frame), *glossary(),
                           *exploratory_appendix(findings)]
    (out_dir / "report.md").write_text(render_markdown(blocks))
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(blocks, title=f"zpeft report: {results_dir.name}"))
    if readme is not None:
        command = f"zpeft report {results_dir} -o {out_dir} --readme {readme}"
        refresh_readme(readme, readme_block([*answer, *paper_table, *paper], command))
    return html_path


def current_records(results_dir: Path) -> tuple[list[RunRecord], int]:
    """The records of the suite's current plan (`suite/plan.json`, written by `zpeft run`) and how many others.

    A suite whose configuration changed leaves its old records beside the new ones (run ids end
    in the config hash); mixing them would compare runs with different settings. Without a plan,
    every record counts.
    """
    records = read_records(results_dir)
    plan = ResultsLayout(results_dir).plan
    if not plan.is_file():
        return records, 0
    try:
        current = {run["run_id"] for run in json.loads(plan.read_text())["runs"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"plan {plan} is unreadable ({err}); run the suite again to rewrite it") from None
    kept = [r for r in records if r.run_id in current]
    return kept, len(records) - len(kept)




def unreadable_files(results_dir: Path, records: list[RunRecord]) -> list[str]:
    """Predictions and references of `records` that exist but are truncated, altered or unreadable.

    Missing files are not listed here: the report says what it skipped for want of them.
    """
    layout = ResultsLayout(results_dir)
    problems = []
    for record in records:
        path = layout.predictions(record.run_id)
        if record.status != "ok" or not path.exists():
            continue
        if record.predictions_sha256:
            if not matches(path, record.predictions_sha256):
                problems.append(f"{path}: does not match the checksum in its record")
            continue
        try:
            load_npz(path, "predictions")
        except ValueError as err:
            problems.append(str(err))
    for dataset in sorted({r.dataset for r in records}):
        path = layout.references(dataset)
        if path.exists():
            try:
                load_npz(path, "test-set references")
            except ValueError as err:
                problems.append(str(err))
    return problems
