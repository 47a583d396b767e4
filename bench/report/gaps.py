"""A strategy's gap to each non-ML reference row (best case, on-stamp, off-the-shelf BPZ), with paired intervals.

For the findings and the README's answer: one call per (dataset, variant) gives, on the spec-z test set against
the label and the photo-z test set against the true z (where known), on the whole set and in 0.3 < z <= 1.5,
the variant's TABLE_METRICS minus each fitted row's (|.| for biases), with the paired bootstrap interval of
zpeft.report.findings.compare_block (the same galaxy and seed resamples score both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import TABLE_METRICS
from zpeft.metrics import paper_range_mask
from zpeft.report.findings import RANGE_TITLES, TARGETS, Comparison, compare_block
from zpeft.report.references import FITS, ROW_NAMES
from zpeft.report.resampling import percentile_interval
from zpeft.run.records import read_predictions, read_references

GAP_COLUMNS = ["dataset", "a", "b", "test_set", "reference", "range", "metric", "seeds", "value_a", "value_b",
               "diff", "lo", "hi", "p"]


def reference_gaps(results_dir: str | Path, dataset: str, variant: str, run_ids: dict[int, str], *,
                   level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Rows (GAP_COLUMNS) of `variant` (a display name; `run_ids`: seed -> run id) against every fitted reference
    row the dataset's references file holds (`b` is the row's display name, ROW_NAMES).

    `diff` = value_a - value_b: negative means the variant is better for every metric (|bias| for the bias).
    """
    references = read_references(results_dir, dataset)
    predictions = {s: read_predictions(results_dir, run_id) for s, run_id in run_ids.items()}
    frames = []
    for test_set, ref_key, reference in TARGETS:
        if ref_key not in references:
            continue
        runs = {variant: {s: p[test_set] for s, p in predictions.items() if test_set in p}}
        rows = {ROW_NAMES[name]: references[test_set + suffix] for name, suffix in FITS.items()
                if test_set + suffix in references}
        if not runs[variant] or not rows:
            continue
        for row, fitted in rows.items():  # one array for every seed: the seed-averaged difference is a's mean - it
            runs[row] = {s: fitted for s in runs[variant]}
        comparisons = [Comparison(variant, row, "gap to a reference row") for row in rows]
        z_ref = references[ref_key]
        for range_ in RANGE_TITLES:
            mask = paper_range_mask(z_ref) if range_ == "paper_range" else np.ones(len(z_ref), dtype=bool)
            if not mask.any():
                continue
            block = compare_block({v: {s: p[mask] for s, p in by_seed.items()} for v, by_seed in runs.items()},
                                  z_ref[mask], comparisons, TABLE_METRICS, n_boot=n_boot, seed=seed)
            bounds = [percentile_interval(draws, 1 - level) for draws in block["draws"]]
            block = block.assign(lo=[b[0] for b in bounds], hi=[b[1] for b in bounds])
            frames.append(block.assign(dataset=dataset, test_set=test_set, reference=reference, range=range_))
    if not frames:
        return pd.DataFrame(columns=GAP_COLUMNS)
    return pd.concat(frames, ignore_index=True)[GAP_COLUMNS]


def gap_sentence(row: pd.Series, level: float = 0.95) -> str:
    """One gap in words: '<a> vs <b> on <test set> (<range>): <metric> <value_a> vs <value_b>, difference [lo, hi]'."""
    where = f"{row['test_set']} test set vs {row['reference']} z, {RANGE_TITLES[row['range']]}"
    return (f"{row['a']} vs {row['b']} ({where}): {row['metric']} {row['value_a']:.4f} vs {row['value_b']:.4f}, "
            f"difference {row['diff']:+.4f} [{row['lo']:+.4f}, {row['hi']:+.4f}] ({level:.0%} paired interval)")
