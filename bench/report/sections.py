"""The report's sections: overview, main tables, plots and failed runs, as renderable blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import REFERENCES, TABLE_METRICS, TEST_SETS, slug
from zpeft.metrics import METRICS, seed_summary
from zpeft.report import galaxy_plots, plots
from zpeft.report.findings import Findings, exploratory_table, method_text, primary_table
from zpeft.report.galaxies import MAGNITUDE_BAND, load_test_sets, magnitude_bins
from zpeft.report.references import DESCRIPTIONS, ROW_NAMES, TEMPLATE_FIT
from zpeft.report.render import Block
from zpeft.report.tables import CELL, main_fraction, ordered_variants, regime_sizes, summarise
from zpeft.report.titles import REFERENCE_TITLES, TEST_SET_TITLES


def overview(frame: pd.DataFrame) -> str:
    ok = frame[frame["status"] == "ok"]
    failed = frame[frame["status"] != "ok"]["run_id"].nunique()
    parts = [f"{ok['run_id'].nunique()} finished runs, {failed} failed",
             f"datasets: {', '.join(sorted(frame['dataset'].unique()))}",
             f"backbones: {', '.join(sorted(frame['backbone'].unique()))}",
             f"seeds: {', '.join(str(s) for s in sorted(ok['seed'].unique()))}",
             f"devices: {', '.join(sorted(str(d) for d in ok['device'].unique() if d))}"]
    return "; ".join(parts) + "."


def glossary() -> list[Block]:
    """Every metric's name, direction and definition, from the metric registry's docstrings, and the reference
    rows named as zpeft.report.references names them."""
    rows = [{"metric": name, "better": METRICS[name].direction, "definition": " ".join(METRICS[name].doc.split())}
            for name in METRICS.names()]
    return [Block("h2", "Glossary of metrics"),
            Block("p", "dz = (z_pred - z_ref) / (1 + z_ref); z_ref is the test set's label or, for simulated data, "
                       "the true redshift."),
            Block("table", table=pd.DataFrame(rows)),
            Block("p", "Reference rows (not strategies), from the best case to an off-the-shelf fit:"),
            Block("table", table=pd.DataFrame([{"row": ROW_NAMES[name], "what it is": DESCRIPTIONS[name]}
                                               for name in ROW_NAMES]))]


def fractions_text(frame: pd.DataFrame) -> str:
    return ", ".join(f"{f:g}" for f in sorted(frame["data_fraction"].unique()))


def main_tables(main: pd.DataFrame, range_: str, references: pd.DataFrame | None = None,
                reference_notes: list[str] | None = None) -> list[Block]:
    """The main tables of one range; `references` (zpeft.report.references.reference_table) adds reference rows."""
    if range_ == "all":
        blocks = [Block("h2", "Results by strategy"),
                  Block("p", "Columns are named after the metrics (zpeft.metrics). `trainable_params` and "
                             "`train_seconds` are the strategy's own (the base model's training is shared and not "
                             "included). Rows: every strategy at each dataset's full data fraction, then the "
                             "rows marked (reference), which are not strategies and train nothing: "
                             "template-fit (best case) fits the five catalogue magnitudes with the simulator's own "
                             "templates and prior, template-fit (on-stamp) the same to photometry measured on the "
                             "cutouts, bpz (off-the-shelf) fits them with desc-bpz's shipped templates and prior, "
                             "labels are the test set's own labels against the true redshift (see the glossary); "
                             "all are in references.csv, not results.csv.")]
        if reference_notes:
            blocks.append(Block("p", "Reference rows left out: " + "; ".join(reference_notes) + "."))
    else:
        blocks = [Block("h2", "Results in the reference paper's range"),
                  Block("p", "As the results by strategy, over test galaxies with 0.3 < z_ref <= 1.5 only.")]
    if main.empty:
        return blocks + [Block("p", "No finished runs: nothing to tabulate.")]
    summary = summarise(main)
    multi_cell = main.groupby(CELL).ngroups > 1
    for test_set in present(main, "test_set", TEST_SETS):
        for reference in present(main[main["test_set"] == test_set], "reference", REFERENCES):
            part = summary[(summary["test_set"] == test_set) & (summary["reference"] == reference)
                           & (summary["range"] == range_)]
            if part.empty:
                continue
            where = "whole test set" if range_ == "all" else "0.3 < z_ref <= 1.5 (paper range)"
            blocks.append(Block("h3", f"{TEST_SET_TITLES.get(test_set, test_set)}, "
                                      f"{REFERENCE_TITLES.get(reference, reference)}, {where}"))
            table = _main_table(part, main, multi_cell)
            if references is not None:
                table = pd.concat([table, _reference_rows(part, references, multi_cell)], ignore_index=True)
            blocks.append(Block("table", table=table))
    return blocks


def _reference_rows(part: pd.DataFrame, references: pd.DataFrame, multi_cell: bool) -> pd.DataFrame:
    """The reference rows of `part`'s datasets, test set, reference and range, in the main table's columns."""
    first = part.iloc[0]
    chosen = references[references["dataset"].isin(part["dataset"].unique())
                        & (references["test_set"] == first["test_set"]) & (references["reference"] == first["reference"])
                        & (references["range"] == first["range"])]
    rows = []
    for _, r in chosen.iterrows():
        row = {"dataset": r["dataset"], "backbone": ""} if multi_cell else {}
        row.update({"strategy": ROW_NAMES[r["name"]], "seeds": "", "trainable_params": "", "train_seconds": "",
                    "n": str(int(r["n"]))})
        for metric in TABLE_METRICS:
            value = r[metric]
            row[metric] = f"{value:.4f} [{r[f'{metric}_lo']:.4f}, {r[f'{metric}_hi']:.4f}]" if np.isfinite(value) \
                else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def present(frame: pd.DataFrame, column: str, known: tuple[str, ...]) -> list[str]:
    values = list(frame[column].dropna().unique())
    return [v for v in known if v in values] + sorted(v for v in values if v not in known)


def _main_table(part: pd.DataFrame, main: pd.DataFrame, multi_cell: bool) -> pd.DataFrame:
    """Rows per strategy: costs, test-set size and the TABLE_METRICS cells of one test set, reference and range."""
    rows = []
    for (cell, variant), group in _groups(part):
        first = group.iloc[0]
        runs = main[(main["dataset"] == cell[0]) & (main["backbone"] == cell[1]) & (main["variant"] == variant)]
        seconds = runs.drop_duplicates("run_id")["train_seconds"].to_numpy(dtype=float)
        n = runs[(runs["test_set"] == first["test_set"]) & (runs["reference"] == first["reference"])
                 & (runs["range"] == first["range"])]["n"]
        row = {"dataset": cell[0], "backbone": cell[1]} if multi_cell else {}
        row.update({"strategy": variant, "seeds": int(first["n_seeds"]),
                    "trainable_params": f"{int(round(first['trainable_params'])):,}",
                    "train_seconds": _mean_std(seconds, "{:.3g}"), "n": str(int(n.iloc[0])) if len(n) else ""})
        by_metric = group.set_index("metric")
        for metric in TABLE_METRICS:
            row[metric] = _cell(by_metric.loc[metric]) if metric in by_metric.index else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def _groups(part: pd.DataFrame):
    """(key, group) per variant in reading order, within each (dataset, backbone)."""
    order = {v: i for i, v in enumerate(ordered_variants(part))}
    keys = sorted(part.groupby([*CELL, "variant"], sort=False).groups,
                  key=lambda k: (k[0], k[1], order[k[2]]))
    grouped = part.groupby([*CELL, "variant"], sort=False)
    return [((k[:2], k[2]), grouped.get_group(k)) for k in keys]


def _cell(row: pd.Series) -> str:
    if row["interval"] == "seed spread":
        return f"{row['value']:.4f} ± {row['std']:.4f}"
    return f"{row['value']:.4f} [{row['lo']:.4f}, {row['hi']:.4f}]"


def _mean_std(values: np.ndarray, fmt: str) -> str:
    if values.size == 0:
        return ""
    if values.size == 1:
        return fmt.format(values[0])
    mean, std = seed_summary(values)
    return f"{fmt.format(mean)} ± {fmt.format(std)}"


def reference_lines(references: pd.DataFrame | None, dataset: str) -> dict[tuple[str, str, str], float]:
    """(test set, reference, metric) -> the template fit's value on the whole test set, for the plots' lines."""
    if references is None or references.empty:
        return {}
    rows = references[(references["dataset"] == dataset) & (references["name"] == TEMPLATE_FIT)
                      & (references["range"] == "all")]
    return {(r["test_set"], r["reference"], m): float(r[m]) for _, r in rows.iterrows() for m in TABLE_METRICS
            if np.isfinite(r[m])}


def pareto_section(ok: pd.DataFrame, main: pd.DataFrame, references: pd.DataFrame | None,
                   out_dir: Path) -> list[Block]:
    """The Pareto fronts per (dataset, backbone) at the full training set, with the template fit's line."""
    blocks = [Block("h2", "Accuracy against cost")]
    if main.empty:
        return blocks + [Block("p", "No finished runs: no plot.")]
    cells = list(main.groupby(CELL).groups)
    for dataset, backbone in cells:
        suffix = "" if len(cells) == 1 else "_" + slug(f"{dataset}_{backbone}")
        cell_main = main[(main["dataset"] == dataset) & (main["backbone"] == backbone)]
        made = plots.pareto(summarise(cell_main), ordered_variants(cell_main), out_dir, suffix,
                            lines=reference_lines(references, dataset), line_name=ROW_NAMES[TEMPLATE_FIT])
        blocks.append(Block("plot", plot=made) if made.path is not None else
                      Block("p", f"Not drawn: {made.title} ({made.skipped})."))
    return blocks


def primary_section(findings: Findings) -> list[Block]:
    """The primary family: how it is made, what was left out, and one row per comparison with its verdict."""
    blocks = [Block("h2", "Primary comparisons"), Block("p", method_text(findings))]
    if findings.notes:
        blocks.append(Block("p", "Left out: " + "; ".join(findings.notes) + "."))
    primary = findings.primary()
    if primary.empty:
        return blocks + [Block("p", "No primary comparisons could be made.")]
    return blocks + [Block("table", table=primary_table(primary))]


def exploratory_appendix(findings: Findings) -> list[Block]:
    """Every other comparison, collapsed: estimates with their intervals, no verdicts."""
    rows = findings.exploratory()
    blocks = [Block("h2", "Appendix: exploratory comparisons")]
    if rows.empty:
        return blocks + [Block("p", "None.")]
    text = (f"{len(rows)} estimates outside the primary family, each with its {findings.level:.0%} interval "
            f"(at least {findings.n_boot} replicates of seeds and test galaxies, resampled together). They are not tests: "
            "with this many, some intervals exclude zero by chance, so none carries a verdict. Also in "
            "findings.csv (column family).")
    return blocks + [Block("details", f"Show the {len(rows)} exploratory estimates",
                           extra={"blocks": [Block("p", text),
                                             Block("table", table=exploratory_table(rows, findings.level))]})]


def plot_section(ok: pd.DataFrame, bins: pd.DataFrame, main: pd.DataFrame, results_dir: Path,
                 out_dir: Path, references: pd.DataFrame | None = None, n_boot: int = 200) -> list[Block]:
    """Every figure per (dataset, backbone) bar the Pareto fronts (pareto_section); `n_boot` resamples for the
    per-magnitude intervals; `references` (references.reference_table) gives the template fit's lines."""
    blocks = [Block("h2", "Plots")]
    if ok.empty:
        return blocks + [Block("p", "No finished runs: no plots.")]
    cells = list(ok.groupby(CELL).groups)
    for dataset, backbone in cells:
        suffix = "" if len(cells) == 1 else "_" + slug(f"{dataset}_{backbone}")
        if len(cells) > 1:
            blocks.append(Block("h3", f"{dataset} / {backbone}"))
        cell_ok = ok[(ok["dataset"] == dataset) & (ok["backbone"] == backbone)]
        cell_main = main_fraction(cell_ok)
        summary_main = summarise(cell_main)
        order = ordered_variants(cell_main)
        lines = reference_lines(references, dataset)
        line_name = ROW_NAMES[TEMPLATE_FIT]
        made = [plots.metrics_by_strategy(summary_main, order, out_dir, reference, suffix, lines=lines,
                                          line_name=line_name) for reference in REFERENCES]
        made.append(plots.rank_curves(summary_main, out_dir, suffix))
        made.append(plots.fraction_curves(with_sizes(summarise(cell_ok), regime_sizes(cell_ok)), order, out_dir,
                                          suffix, lines=lines, line_name=line_name))
        cell_bins = bins[(bins["dataset"] == dataset) & (bins["backbone"] == backbone)] if not bins.empty else bins
        cell_bins = main_fraction(cell_bins) if not cell_bins.empty else cell_bins
        made += [plots.per_bin(cell_bins, order, out_dir, reference, suffix) for reference in REFERENCES]
        made += _galaxy_plots(cell_main, order, results_dir, out_dir, suffix, n_boot)
        blocks += [Block("plot", plot=p) for p in made if p.path is not None]
        skipped = [p for p in made if p.path is None]
        if skipped:
            blocks.append(Block("p", "Not drawn: " + "; ".join(f"{p.title} ({p.skipped})" for p in skipped) + "."))
    return blocks


def with_sizes(summary: pd.DataFrame, sizes: dict) -> pd.DataFrame:
    """`summary` with `n_spec_train`: the spec-z training galaxies of each row's regime (tables.regime_sizes)."""
    keys = zip(summary["dataset"], summary["backbone"], summary["data_fraction"])
    return summary.assign(n_spec_train=[sizes.get(k, np.nan) for k in keys])


def _galaxy_plots(main: pd.DataFrame, order: list[str], results_dir: Path, out_dir: Path, suffix: str,
                  n_boot: int) -> list[plots.Plot]:
    """The figures drawn from per-galaxy predictions: density, n(z), running median dz, metrics vs magnitude."""
    dataset = main["dataset"].iloc[0]
    try:
        test_sets = load_test_sets(main, results_dir)
    except FileNotFoundError:
        return [plots.Plot("density", "Predicted vs reference density", "", None,
                           f"no test-set references for dataset {dataset!r}")]
    seed = int(main["seed"].min())
    made = []
    for test_set in TEST_SETS:
        arrays = test_sets.get(test_set)
        pairs = {} if arrays is None else {v: (arrays.z_label, z) for (v, s), z in arrays.predictions.items()
                                           if s == seed}
        made.append(plots.density(pairs, [v for v in order if v in pairs], test_set, seed, out_dir, suffix))
    made.append(galaxy_plots.redshift_distributions(test_sets, order, seed, out_dir, suffix))
    made.append(galaxy_plots.running_dz(test_sets, order, seed, out_dir, suffix))
    by_magnitude = magnitude_bins(test_sets, n_boot)
    if by_magnitude.empty:
        made.append(plots.Plot(f"per_magnitude_{MAGNITUDE_BAND}{suffix}", "Metrics against magnitude", "", None,
                               f"the predictions catalogues carry no {MAGNITUDE_BAND}-band magnitudes"))
    else:
        by_magnitude.insert(0, "dataset", dataset)
        by_magnitude.insert(1, "backbone", main["backbone"].iloc[0])
        by_magnitude.to_csv(out_dir / f"magnitude_bins{suffix}.csv", index=False)
        made.append(plots.per_magnitude(by_magnitude, order, out_dir, MAGNITUDE_BAND, suffix))
    return made


def training_section(ok: pd.DataFrame) -> list[Block]:
    """Per trained run: its learning rate and where it came from, what ended it and its best epoch."""
    runs = ok[ok["lr"].notna()].drop_duplicates("run_id") if "lr" in ok else ok.iloc[:0]
    blocks = [Block("h2", "Training: learning rates and convergence"),
              Block("p", "lr_source: `tuned` (chosen by `zpeft tune` on validation loss), `suite` (set in the suite "
                         "file), `protocol` (the strategy's own, e.g. paper-tl's 1e-8) or `default` (the strategy's "
                         "class default, not chosen on any data). `epochs`: epochs trained; `ended_by`: `stopping rule` "
                         "(validation loss stopped improving: converged) or `epoch cap` (the safety limit cut it "
                         "short); `best_epoch` 0: no epoch beat the starting weights, which were kept (no gain).")]
    if runs.empty:
        return blocks + [Block("p", "No trained runs.")]
    rank = {v: i for i, v in enumerate(ordered_variants(runs))}
    runs = runs.sort_values(["dataset", "backbone", "data_fraction", "seed"], kind="stable") \
        .sort_values("variant", key=lambda v: v.map(rank), kind="stable")
    table = runs[["dataset", "backbone", "variant", "data_fraction", "n_spec_train", "seed", "lr", "lr_source",
                  "epochs", "best_epoch", "ended_by"]].rename(columns={"variant": "strategy",
                                                                        "n_spec_train": "N spec-z train"})
    table = table.assign(**{"N spec-z train": table["N spec-z train"].map(
        lambda n: f"{int(n):,}" if pd.notna(n) else "")})
    table = table.assign(lr=table["lr"].map(lambda v: f"{v:.3g}"))
    if table[["dataset", "backbone"]].drop_duplicates().shape[0] == 1:
        table = table.drop(columns=["dataset", "backbone"])
    return blocks + [Block("table", table=table.reset_index(drop=True))]


def failed_section(frame: pd.DataFrame) -> list[Block]:
    failed = frame[frame["status"] != "ok"].drop_duplicates("run_id")
    blocks = [Block("h2", "Failed runs")]
    if failed.empty:
        return blocks + [Block("p", "None.")]
    table = failed[["run_id", "dataset", "backbone", "variant", "seed", "data_fraction", "error"]] \
        .rename(columns={"variant": "strategy"}).reset_index(drop=True)
    return blocks + [Block("table", table=table, extra={"class": "errors"})]  # long ids and errors wrap anywhere


