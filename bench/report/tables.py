"""Tables of numbers from run records: one row per run x test set x reference x range, summaries and ordering."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from zpeft.conventions import RANGES
from zpeft.metrics import METRICS, seed_summary
from zpeft.run.records import RunRecord

# Known families first, in the order a reader expects them; anything else follows alphabetically.
STRATEGY_ORDER = ("zero-shot", "head-only", "paper-tl", "bitfit", "norm-only", "last-k", "lora", "dora", "loha", "lokr",
                  "full", "combined")
RUN_COLUMNS = ("run_id", "config_hash", "suite", "dataset", "backbone", "strategy", "label", "variant")
RUN_TAIL = ("seed", "data_fraction", "n_spec_train", "status", "error", "lr", "lr_source", "trainable_params",
            "total_params", "train_seconds", "base_train_seconds", "epochs", "best_epoch", "ended_by",
            "images_per_second", "peak_memory_mb", "device")
CELL = ["dataset", "backbone"]


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
    run.update({k: getattr(record, k, None) for k in RUN_TAIL})
    run.update(lr=record.train_settings.get("lr"), n_spec_train=spec_train_size(record), ended_by=ended_by(record))
    return run


def spec_train_size(record: RunRecord) -> float:
    """How many spec-z training galaxies the run's data fraction left (dataset_meta sizes); NaN if not recorded."""
    size = (record.dataset_meta.get("sizes") or {}).get("spec/train")
    return float(size) if isinstance(size, (int, float)) else math.nan


def ended_by(record: RunRecord) -> str:
    """What ended training: "stopping rule", "epoch cap", or "" for a run that trains nothing (older records'
    `stopped_early` is turned into `ended_by` when they are read: RunRecord.from_dict)."""
    return record.ended_by if record.epochs > 0 else ""


def regime_sizes(frame: pd.DataFrame) -> dict[tuple, float]:
    """(dataset, backbone, data_fraction) -> spec-z training galaxies, from the runs that trained (zero-shot
    records the whole set whatever the fraction); NaN where no run recorded it."""
    out = {}
    for key, group in frame.groupby(["dataset", "backbone", "data_fraction"]):
        runs = group.drop_duplicates("run_id")
        trained = runs[runs["epochs"].fillna(0) > 0] if "epochs" in runs else runs
        sizes = (trained if len(trained) else runs)["n_spec_train"].dropna() if "n_spec_train" in runs else []
        out[key] = float(pd.Series(sizes).median()) if len(sizes) else math.nan
    return out


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


