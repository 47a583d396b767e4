"""The report's sections: overview, main tables, plots and failed runs, as renderable blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import REFERENCES, TABLE_METRICS, TEST_SETS, slug
from zpeft.metrics import METRICS, seed_summary
from zpeft.report import galaxy_plots, plots
from zpeft.report.galaxies import MAGNITUDE_BAND, load_test_sets, magnitude_bins
from zpeft.report.references import DESCRIPTIONS, ROW_NAMES
from zpeft.report.render import Block
from zpeft.report.tables import CELL, main_fraction, ordered_variants, summarise
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
    """Every metric's name, direction and definition, from the metric registry's docstrings."""
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


def plot_section(ok: pd.DataFrame, bins: pd.DataFrame, main: pd.DataFrame, results_dir: Path,
                 out_dir: Path, n_boot: int = 200) -> list[Block]:
    """Every figure per (dataset, backbone); `n_boot` resamples for the per-magnitude intervals."""
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
        made = [plots.metrics_by_strategy(summary_main, order, out_dir, reference, suffix)
                for reference in REFERENCES]
        made.append(plots.pareto(summary_main, order, out_dir, suffix))
        made.append(plots.rank_curves(summary_main, out_dir, suffix))
        made.append(plots.fraction_curves(summarise(cell_ok), order, out_dir, suffix))
        cell_bins = bins[(bins["dataset"] == dataset) & (bins["backbone"] == backbone)] if not bins.empty else bins
        cell_bins = main_fraction(cell_bins) if not cell_bins.empty else cell_bins
        made += [plots.per_bin(cell_bins, order, out_dir, reference, suffix) for reference in REFERENCES]
        made += _galaxy_plots(cell_main, order, results_dir, out_dir, suffix, n_boot)
        blocks += [Block("plot", plot=p) for p in made if p.path is not None]
        skipped = [p for p in made if p.path is None]
        if skipped:
            blocks.append(Block("p", "Not drawn: " + "; ".join(f"{p.title} ({p.skipped})" for p in skipped) + "."))
    return blocks


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
    """Per trained run: its learning rate and where it came from, and whether the stopping rule ended it."""
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
    table = runs[["dataset", "backbone", "variant", "data_fraction", "seed", "lr", "lr_source", "epochs", "best_epoch",
                  "ended_by"]].rename(columns={"variant": "strategy"})
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
    return blocks + [Block("table", table=table)]


