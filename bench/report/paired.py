"""Paired comparisons: each strategy against head-only and against the best, on the same test galaxies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zpeft.conventions import BASELINE_STRATEGY, REFERENCES, TABLE_METRICS, TEST_SETS
from zpeft.metrics import comparable, paired_bootstrap
from zpeft.report.render import Block
from zpeft.report.sections import present
from zpeft.report.tables import CELL, ordered_variants
from zpeft.report.titles import REFERENCE_TITLES, TEST_SET_TITLES
from zpeft.run.layout import ResultsLayout
from zpeft.run.records import read_predictions, read_references


def paired_section(main: pd.DataFrame, results_dir: Path, level: float, n_boot: int, progress: bool) -> list[Block]:
    blocks = [
        Block("h2", "Paired comparisons"),
        Block("p", f"Each cell is the difference strategy − comparison on the same test galaxies (whole test set), "
                   f"direction-aware: |bias| for biases, so a negative difference always means the row's strategy is "
                   f"better. Per seed: strategy seed s is compared with the comparison's seed s (both adapted from "
                   f"the same base model) by metrics.paired_bootstrap ({n_boot} resamples); the cell shows the mean "
                   f"difference over seeds and the envelope [min lo, max hi] of the per-seed central "
                   f"{level:.0%} intervals. \"n.s.\" marks a difference whose envelope contains zero. The "
                   f"{level:.0%} level is deliberate: the 68 % intervals elsewhere are ±1σ error bars and would mark "
                   f"about one in three differences of equal strategies as significant. \"best\" is, per metric, "
                   f"the strategy with the lowest mean (|mean| for bias) in the tables above."),
    ]
    if main.empty:
        return blocks + [Block("p", "No finished runs: no comparisons.")]
    for (dataset, backbone), cell in main.groupby(CELL):
        try:
            references = read_references(results_dir, dataset)
        except FileNotFoundError:
            blocks.append(Block("p", f"Skipped for {dataset} / {backbone}: no test-set references "
                                     f"({ResultsLayout(results_dir).references(dataset).name}) in the results directory."))
            continue
        runs = cell.drop_duplicates("run_id")
        predictions = {}
        for run_id in runs["run_id"]:
            try:
                predictions[run_id] = read_predictions(results_dir, run_id)
            except FileNotFoundError:
                pass
        if not predictions:
            blocks.append(Block("p", f"Skipped for {dataset} / {backbone}: no prediction files (*.preds.npz)."))
            continue
        if main.groupby(CELL).ngroups > 1:
            blocks.append(Block("h3", f"{dataset} / {backbone}"))
        blocks += _paired_tables(cell, predictions, references, level, n_boot, progress)
    return blocks


def _paired_tables(cell: pd.DataFrame, predictions: dict, references: dict, level: float, n_boot: int,
                   progress: bool) -> list[Block]:
    blocks = []
    all_rows = cell[cell["range"] == "all"]
    jobs = []
    for test_set in present(all_rows, "test_set", TEST_SETS):
        for reference in present(all_rows[all_rows["test_set"] == test_set], "reference", REFERENCES):
            ref_key = test_set if reference == "label" else f"{test_set}_{reference}"
            if ref_key in references:
                jobs.append((test_set, reference, ref_key))
    with tqdm(total=len(jobs), desc="paired bootstrap", disable=not progress) as bar:
        for test_set, reference, ref_key in jobs:
            rows = all_rows[(all_rows["test_set"] == test_set) & (all_rows["reference"] == reference)]
            tables, note = paired_table(rows, predictions, references[ref_key], test_set, level=level,
                                        n_boot=n_boot)
            blocks.append(Block("h3", f"{TEST_SET_TITLES.get(test_set, test_set)}, "
                                      f"{REFERENCE_TITLES.get(reference, reference)}"))
            blocks.append(Block("p", note))
            for name, table in tables.items():
                blocks.append(Block("p", f"Difference to {name}:" if name == "head-only" else
                                         "Difference to the best strategy of each metric:"))
                blocks.append(Block("table", table=table))
            bar.update()
    return blocks


def paired_table(rows: pd.DataFrame, predictions: dict[str, dict[str, np.ndarray]], z_ref: np.ndarray,
                 test_set: str, *, level: float = 0.95, n_boot: int = 1000) -> tuple[dict[str, pd.DataFrame], str]:
    """Each variant vs head-only and vs the best: {"head-only": table, "best": table}.

    Cells read "diff [lo, hi]", with " n.s." appended when the interval contains zero.

    `rows`: results rows of one test set, reference and range of one (dataset, backbone), one row per run.
    Table columns are the metrics of TABLE_METRICS. Returns the tables (empty when nothing can be compared)
    and a note naming each metric's best strategy and anything left out.
    """
    cache: dict = {}  # (run a, run b) -> paired_bootstrap result, shared by the metrics and both tables
    notes = []
    runs: dict[str, dict[int, str]] = {}  # variant -> seed -> run id with predictions
    for _, r in rows.iterrows():
        pred = predictions.get(r["run_id"], {}).get(test_set)
        if pred is None:
            notes.append(f"{r['variant']} seed {r['seed']}: no predictions")
        elif len(pred) != len(z_ref):
            notes.append(f"{r['variant']} seed {r['seed']}: {len(pred)} predictions for {len(z_ref)} references")
        else:
            runs.setdefault(r["variant"], {})[int(r["seed"])] = r["run_id"]
    variants = [v for v in ordered_variants(rows) if v in runs]
    if len(variants) < 2:
        return {}, "; ".join(notes + ["fewer than two strategies with predictions: nothing to compare"])
    baseline = next((v for v in variants if rows[rows["variant"] == v]["strategy"].iloc[0] == BASELINE_STRATEGY),
                    None)
    if baseline is None:
        notes.append(f"no {BASELINE_STRATEGY} run to compare with")
    means = rows.groupby("variant")[list(TABLE_METRICS)].mean()
    best = {m: min(variants, key=lambda v: comparable(m, means.at[v, m])) for m in TABLE_METRICS}
    partners = {"best": best}
    if baseline is not None:
        partners = {"head-only": dict.fromkeys(TABLE_METRICS, baseline), **partners}
    tables = {}
    for name, partner_of in partners.items():
        out = []
        for variant in variants:
            row = {"strategy": variant, "seeds": len(runs[variant])}
            for metric in TABLE_METRICS:
                partner = partner_of[metric]
                row[metric] = "(reference)" if partner == variant else _paired_cell(
                    runs[variant], runs[partner], predictions, z_ref, test_set, metric, level, n_boot, cache)
            out.append(row)
        tables[name] = pd.DataFrame(out)
    best_line = "best: " + ", ".join(f"{m} {best[m]}" for m in TABLE_METRICS)
    return tables, "; ".join([best_line] + notes)


def _paired_cell(a: dict[int, str], b: dict[int, str], predictions: dict, z_ref: np.ndarray, test_set: str,
                 metric: str, level: float, n_boot: int, cache: dict) -> str:
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return "no common seed"
    diffs, los, his = [], [], []
    for seed in seeds:
        key = (a[seed], b[seed])
        if key not in cache:
            cache[key] = paired_bootstrap(predictions[a[seed]][test_set], predictions[b[seed]][test_set], z_ref,
                                          n_boot=n_boot, seed=seed, level=level)
        result = cache[key][metric]
        diffs.append(result["diff"])
        los.append(result["lo"])
        his.append(result["hi"])
    lo, hi = min(los), max(his)
    text = f"{np.mean(diffs):+.4f} [{lo:+.4f}, {hi:+.4f}]"
    return text + " n.s." if lo <= 0.0 <= hi else text


