"""Reports from a results directory: `results.csv`, `report.md`, a self-contained `report.html` and plots.

A report reads only run records, their predictions and the test sets' references (bench.records);
it knows nothing of strategies or training. Tables follow metric names exactly and say which
direction is better (every metric is lower-is-better; biases are compared by |value|).
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bench import plots
from bench.metrics import METRICS, comparable, paired_bootstrap, seed_summary
from bench.records import RunRecord, read_predictions, read_records, read_references, references_path

TEST_SETS = ("spec", "photo", "combined")
REFERENCES = ("label", "true")
RANGES = ("all", "paper_range")
TABLE_METRICS = ("bias", "sigma_nmad", "outlier_015")
BASELINE_STRATEGY = "head-only"  # the reference paper's transfer-learning baseline
TEST_SET_TITLES = {"spec": "spec-z test set", "photo": "photo-z test set", "combined": "combined test set"}
REFERENCE_TITLES = {"label": "against the label", "true": "against the true redshift"}
# Known families first, in the order a reader expects them; anything else follows alphabetically.
STRATEGY_ORDER = ("zero-shot", "head-only", "bitfit", "norm-only", "last-k", "lora", "dora", "loha", "lokr",
                  "full", "combined")
RUN_COLUMNS = ("run_id", "config_hash", "suite", "dataset", "backbone", "strategy", "label", "variant")
RUN_TAIL = ("seed", "data_fraction", "status", "error", "trainable_params", "total_params", "train_seconds",
            "base_train_seconds", "epochs", "images_per_second", "peak_memory_mb", "device")
CELL = ["dataset", "backbone"]

HOW_TO_READ = (
    "Every metric here is better when lower; `bias` and `bias_mean` are signed and better when |value| is "
    "closer to zero. dz = (z_pred - z_ref) / (1 + z_ref), with z_ref the test set's label or, for simulated data, "
    "the true redshift. The spec-z test set is the adaptation target; the photo-z test set shows what a strategy "
    "forgot. With several seeds a cell is mean ± standard deviation over seeds; with one seed it is the value and "
    "its bootstrap interval [lo, hi] over test galaxies (68 % as recorded). The test-set sampling error is shared by "
    "all strategies and usually larger than the seed spread, so two strategies whose intervals overlap may still "
    "differ: the paired table answers that by resampling the same galaxies for both."
)


def build_report(results_dir: str | Path, out_dir: str | Path, *, significance_level: float = 0.95,
                 n_boot: int = 1000, progress: bool = True) -> Path:
    """Write results.csv, bins.csv, report.md, report.html and the PNG plots to `out_dir`; return report.html.

    `significance_level` is the central level of the paired-bootstrap intervals that decide the
    "n.s." marks; `n_boot` the number of bootstrap resamples per paired comparison.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    records, stale = current_records(results_dir)
    if not records:
        raise FileNotFoundError(f"{results_dir}: no run records (*.json); run a suite first (zpeft run ...)")
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = results_table(records)
    frame.to_csv(out_dir / "results.csv", index=False)
    bins = bins_table(records)
    bins.to_csv(out_dir / "bins.csv", index=False)

    blocks: list[Block] = [Block("h1", f"zpeft report: {results_dir.name}"), Block("p", HOW_TO_READ),
                           Block("p", _overview(frame))]
    if stale:
        blocks.append(Block("p", f"{stale} older record(s) in {results_dir} are not part of the suite's current plan "
                                 "(their configuration changed since) and are left out."))
    ok = frame[frame["status"] == "ok"]
    main = main_fraction(ok)
    if len(ok["data_fraction"].unique()) > 1:
        blocks.append(Block("p", "Tables, paired comparisons and most plots use each dataset's full training data "
                                 f"(data fraction {_fractions(main)}); runs at smaller fractions appear in the "
                                 "data-fraction curves and results.csv."))
    blocks += _main_tables(main, "all")
    blocks += _paired_section(main, results_dir, significance_level, n_boot, progress)
    blocks += _plot_section(ok, bins, main, results_dir, out_dir)
    blocks += _main_tables(main, "paper_range")
    blocks += _failed_section(frame)
    (out_dir / "report.md").write_text(render_markdown(blocks))
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(blocks, title=f"zpeft report: {results_dir.name}"))
    return html_path


def current_records(results_dir: Path) -> tuple[list[RunRecord], int]:
    """The records of the suite's current plan (`suite/plan.json`, written by `zpeft run`) and how many others.

    A suite whose configuration changed leaves its old records beside the new ones (run ids end
    in the config hash); mixing them would compare runs with different settings. Without a plan,
    every record counts.
    """
    records = read_records(results_dir)
    plan = results_dir / "suite" / "plan.json"
    if not plan.is_file():
        return records, 0
    current = {run["run_id"] for run in json.loads(plan.read_text())["runs"]}
    kept = [r for r in records if r.run_id in current]
    return kept, len(records) - len(kept)


# ---------------------------------------------------------------- tables of numbers

def results_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per ok run x test set x reference x range (every metric with _lo/_hi), one per failed run."""
    variants = variant_names(records)
    param_columns = _param_columns(records)
    rows = []
    for record in records:
        run = _run_columns(record, variants[record.run_id], param_columns)
        if record.status != "ok":
            rows.append(run)
            continue
        for test_set, by_reference in record.metrics.items():
            for reference, block in by_reference.items():
                for range_ in RANGES:
                    rows.append({**run, "test_set": test_set, "reference": reference, "range": range_,
                                 **block[range_]})
    metric_columns = ["n"] + [f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")]
    columns = [*RUN_COLUMNS, *param_columns.values(), *RUN_TAIL, "test_set", "reference", "range", *metric_columns]
    return pd.DataFrame(rows, columns=columns)


def bins_table(records: list[RunRecord]) -> pd.DataFrame:
    """Per-z-bin metrics: one row per ok run x test set x reference x bin (lo, hi], as in the records."""
    variants = variant_names(records)
    rows = []
    for record in records:
        if record.status != "ok":
            continue
        for test_set, by_reference in record.metrics.items():
            for reference, block in by_reference.items():
                for b in block.get("bins", []):
                    rows.append({"run_id": record.run_id, "dataset": record.dataset, "backbone": record.backbone,
                                 "strategy": record.strategy, "variant": variants[record.run_id],
                                 "seed": record.seed, "data_fraction": record.data_fraction, "test_set": test_set,
                                 "reference": reference, **b})
    return pd.DataFrame(rows)


def variant_names(records: list[RunRecord]) -> dict[str, str]:
    """Display name per run id: the label, plus the parameters that differ between runs sharing that label.

    Two runs labelled `lora-r4` that differ in `bn` become `lora-r4 (bn=frozen)` and `lora-r4 (bn=train)`,
    so no table row silently averages different configurations.
    """
    by_label: dict[str, list[RunRecord]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    names = {}
    for label, group in by_label.items():
        keys = sorted({k for r in group for k in r.params})
        varying = [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True) for r in group}) > 1]
        for r in group:
            extra = ", ".join(f"{k}={r.params.get(k)}" for k in varying)
            names[r.run_id] = f"{label} ({extra})" if extra else label
    return names


def _param_columns(records: list[RunRecord]) -> dict[str, str]:
    taken = set(RUN_COLUMNS) | set(RUN_TAIL) | {"test_set", "reference", "range", "n"} | \
        {f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")}
    keys = sorted({k for r in records for k in r.params})
    return {k: f"param_{k}" if k in taken else k for k in keys}


def _run_columns(record: RunRecord, variant: str, param_columns: dict[str, str]) -> dict:
    run = {k: getattr(record, k) for k in RUN_COLUMNS if k != "variant"}
    run["variant"] = variant
    for key, column in param_columns.items():
        value = record.params.get(key)
        run[column] = json.dumps(value) if isinstance(value, (dict, list)) else value
    run.update({k: getattr(record, k) for k in RUN_TAIL})
    return run


def main_fraction(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows at each (dataset, backbone)'s largest data fraction: the runs the main tables compare."""
    if frame.empty:
        return frame
    largest = frame.groupby(CELL)["data_fraction"].transform("max")
    return frame[frame["data_fraction"] == largest]


def strategy_sort_key(strategy: str, trainable_params: float, variant: str) -> tuple:
    family = STRATEGY_ORDER.index(strategy) if strategy in STRATEGY_ORDER else len(STRATEGY_ORDER)
    return family, strategy, trainable_params, variant


def ordered_variants(frame: pd.DataFrame) -> list[str]:
    """Variants in reading order: zero-shot, head-only, ..., adapters by size, full, combined."""
    first = frame.groupby("variant").agg(strategy=("strategy", "first"), params=("trainable_params", "max"))
    return sorted(first.index, key=lambda v: strategy_sort_key(first.at[v, "strategy"], first.at[v, "params"], v))


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per variant x test set x reference x range x metric: value, error-bar bounds, seed count and costs.

    With more than one seed: mean over seeds and mean ± std as bounds ("seed spread"); with one seed:
    the recorded value and its bootstrap interval ("bootstrap").
    """
    keys = CELL + ["data_fraction", "variant", "strategy", "test_set", "reference", "range"]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        base = dict(zip(keys, key))
        rank = group["rank"].iloc[0] if "rank" in group else math.nan
        costs = {"trainable_params": float(group["trainable_params"].mean()),
                 "train_seconds": float(group["train_seconds"].mean()),
                 "base_train_seconds": float(group["base_train_seconds"].mean()),
                 "rank": float(rank) if rank is not None and pd.notna(rank) else math.nan,
                 "n_seeds": int(group["seed"].nunique())}
        for metric in METRICS:
            values = group[metric].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            if values.size > 1:
                mean, std = seed_summary(values)
                lo, hi, spread = mean - std, mean + std, "seed spread"
            else:
                mean, lo, hi, spread = values[0], group[f"{metric}_lo"].iloc[0], group[f"{metric}_hi"].iloc[0], \
                    "bootstrap"
                std = math.nan
            rows.append({**base, **costs, "metric": metric, "value": mean, "std": std, "lo": lo, "hi": hi,
                         "interval": spread})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- report sections

@dataclass
class Block:
    """One piece of the report document, rendered to both Markdown and HTML."""

    kind: str  # "h1", "h2", "h3", "p", "table", "plot"
    text: str = ""
    table: pd.DataFrame | None = None
    plot: plots.Plot | None = None
    extra: dict = field(default_factory=dict)


def _overview(frame: pd.DataFrame) -> str:
    ok = frame[frame["status"] == "ok"]
    failed = frame[frame["status"] != "ok"]["run_id"].nunique()
    parts = [f"{ok['run_id'].nunique()} finished runs, {failed} failed",
             f"datasets: {', '.join(sorted(frame['dataset'].unique()))}",
             f"backbones: {', '.join(sorted(frame['backbone'].unique()))}",
             f"seeds: {', '.join(str(s) for s in sorted(ok['seed'].unique()))}",
             f"devices: {', '.join(sorted(str(d) for d in ok['device'].unique() if d))}"]
    return "; ".join(parts) + "."


def _fractions(frame: pd.DataFrame) -> str:
    return ", ".join(f"{f:g}" for f in sorted(frame["data_fraction"].unique()))


def _main_tables(main: pd.DataFrame, range_: str) -> list[Block]:
    if range_ == "all":
        blocks = [Block("h2", "Results by strategy"),
                  Block("p", "Columns are named after the metrics (bench.metrics). `trainable_params` and "
                             "`train_seconds` are the strategy's own (the base model's training is shared and not "
                             "included). Rows: every strategy at each dataset's full data fraction.")]
    else:
        blocks = [Block("h2", "Results in the reference paper's range"),
                  Block("p", "As the results by strategy, over test galaxies with 0.3 < z_ref <= 1.5 only.")]
    if main.empty:
        return blocks + [Block("p", "No finished runs: nothing to tabulate.")]
    summary = summarise(main)
    multi_cell = main.groupby(CELL).ngroups > 1
    for test_set in _present(main, "test_set", TEST_SETS):
        for reference in _present(main[main["test_set"] == test_set], "reference", REFERENCES):
            part = summary[(summary["test_set"] == test_set) & (summary["reference"] == reference)
                           & (summary["range"] == range_)]
            if part.empty:
                continue
            where = "whole test set" if range_ == "all" else "0.3 < z_ref <= 1.5 (paper range)"
            blocks.append(Block("h3", f"{TEST_SET_TITLES.get(test_set, test_set)}, "
                                      f"{REFERENCE_TITLES.get(reference, reference)}, {where}"))
            blocks.append(Block("table", table=_main_table(part, main, multi_cell)))
    return blocks


def _present(frame: pd.DataFrame, column: str, known: tuple[str, ...]) -> list[str]:
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


# ---------------------------------------------------------------- paired comparisons

def _paired_section(main: pd.DataFrame, results_dir: Path, level: float, n_boot: int, progress: bool) -> list[Block]:
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
                                     f"({references_path(results_dir, dataset).name}) in the results directory."))
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
    for test_set in _present(all_rows, "test_set", TEST_SETS):
        for reference in _present(all_rows[all_rows["test_set"] == test_set], "reference", REFERENCES):
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


# ---------------------------------------------------------------- plots

def _plot_section(ok: pd.DataFrame, bins: pd.DataFrame, main: pd.DataFrame, results_dir: Path,
                  out_dir: Path) -> list[Block]:
    blocks = [Block("h2", "Plots")]
    if ok.empty:
        return blocks + [Block("p", "No finished runs: no plots.")]
    cells = list(ok.groupby(CELL).groups)
    for dataset, backbone in cells:
        suffix = "" if len(cells) == 1 else "_" + _slug(f"{dataset}_{backbone}")
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
        made += _density_plots(cell_main, order, results_dir, out_dir, suffix)
        cell_bins = bins[(bins["dataset"] == dataset) & (bins["backbone"] == backbone)] if not bins.empty else bins
        cell_bins = main_fraction(cell_bins) if not cell_bins.empty else cell_bins
        made += [plots.per_bin(cell_bins, order, out_dir, reference, suffix) for reference in REFERENCES]
        blocks += [Block("plot", plot=p) for p in made if p.path is not None]
        skipped = [p for p in made if p.path is None]
        if skipped:
            blocks.append(Block("p", "Not drawn: " + "; ".join(f"{p.title} ({p.skipped})" for p in skipped) + "."))
    return blocks


def _density_plots(main: pd.DataFrame, order: list[str], results_dir: Path, out_dir: Path,
                   suffix: str) -> list[plots.Plot]:
    dataset = main["dataset"].iloc[0]
    try:
        references = read_references(results_dir, dataset)
    except FileNotFoundError:
        return [plots.Plot("density", "Predicted vs reference density", "", None,
                           f"no test-set references for dataset {dataset!r}")]
    runs = main.drop_duplicates("run_id")
    seed = int(runs["seed"].min())
    pairs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for _, r in runs[runs["seed"] == seed].iterrows():
        try:
            preds = read_predictions(results_dir, r["run_id"])
        except FileNotFoundError:
            continue
        for test_set, z_pred in preds.items():
            z_ref = references.get(test_set)
            if z_ref is not None and len(z_ref) == len(z_pred):
                pairs.setdefault(test_set, {})[r["variant"]] = (z_ref, z_pred)
    return [plots.density(pairs.get(test_set, {}), [v for v in order if v in pairs.get(test_set, {})], test_set,
                          seed, out_dir, suffix) for test_set in TEST_SETS]


# ---------------------------------------------------------------- failed runs

def _failed_section(frame: pd.DataFrame) -> list[Block]:
    failed = frame[frame["status"] != "ok"].drop_duplicates("run_id")
    blocks = [Block("h2", "Failed runs")]
    if failed.empty:
        return blocks + [Block("p", "None.")]
    table = failed[["run_id", "dataset", "backbone", "variant", "seed", "data_fraction", "error"]] \
        .rename(columns={"variant": "strategy"}).reset_index(drop=True)
    return blocks + [Block("table", table=table)]


# ---------------------------------------------------------------- rendering

def render_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "table":
            out.append(markdown_table(b.table))
        elif b.kind == "plot":
            out.append(f"![{b.plot.title}]({b.plot.path.name})\n\n*{b.plot.title}.* {b.plot.caption}")
    return "\n\n".join(out) + "\n"


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of the frame's string forms (pipes escaped)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; } h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; max-width: 1100px; }
td.error { text-align: left; white-space: normal; font-family: monospace; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: inline CSS, tables as HTML, plots as base64 PNG data URIs."""
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline_code(html.escape(b.text))}</p>")
        elif b.kind == "table":
            out.append(b.table.to_html(index=False, escape=True, border=0))
        elif b.kind == "plot":
            data = base64.b64encode(b.plot.path.read_bytes()).decode("ascii")
            out.append(f"<figure><img alt=\"{html.escape(b.plot.title)}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption><b>{html.escape(b.plot.title)}.</b> {html.escape(b.plot.caption)}"
                       f"</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _inline_code(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
