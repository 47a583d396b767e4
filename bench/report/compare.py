"""Regression check of a new results table against a baseline (`zpeft compare`), metric by metric.

Rows are joined on what identifies a measurement (dataset, backbone, strategy variant, seed, data
fraction, test set, reference, range). A metric regresses when it gets worse by more than its absolute
tolerance, in its own direction (|value| for biases). Trainable parameter counts must match exactly.
Timings are never checked: benchmarks measure time, they do not pass or fail on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.metrics import comparable
from zpeft.report.tolerances import DEFAULT_TOLERANCES, EXACT

KEYS = ("dataset", "backbone", "variant", "seed", "data_fraction", "test_set", "reference", "range")


@dataclass
class Comparison:
    """The checked rows (keys, metric, baseline, new, delta, tolerance, status) and unmatched runs."""

    checked: pd.DataFrame
    missing: pd.DataFrame  # in the baseline, absent from the new table: a regression
    added: pd.DataFrame  # only in the new table: reported, not a failure

    @property
    def regressed(self) -> bool:
        return bool((self.checked["status"] == "REGRESSION").any() or len(self.missing))


def parse_tolerances(items: list[str] | None) -> dict[str, float]:
    """`["sigma_nmad=0.002", ...]` -> defaults updated; unknown names and bad numbers are errors."""
    tolerances = dict(DEFAULT_TOLERANCES)
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in tolerances:
            raise ValueError(f"tolerance {item!r}: expected metric=value with metric one of "
                             f"{', '.join(tolerances)}")
        try:
            tolerances[name] = float(value)
        except ValueError:
            raise ValueError(f"tolerance {item!r}: {value!r} is not a number") from None
        if not tolerances[name] >= 0:
            raise ValueError(f"tolerance {item!r} must be >= 0")
    return tolerances


def read_table(path: str | Path) -> pd.DataFrame:
    """A results.csv (zpeft.report.build), finished runs only, with its key columns checked."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such results table (zpeft report writes results.csv)")
    frame = pd.read_csv(path)
    if "variant" not in frame and "label" in frame:
        frame["variant"] = frame["label"]
    missing = [k for k in (*KEYS, "status") if k not in frame]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}; is it a results.csv from zpeft report?")
    frame = frame[(frame["status"] == "ok") & frame["test_set"].notna()].copy()
    duplicated = frame.duplicated(list(KEYS), keep=False)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise ValueError(f"{path}: {int(duplicated.sum())} rows share their key, e.g. "
                         + ", ".join(f"{k}={first[k]}" for k in KEYS) + "; one row per run and test set expected")
    return frame


def compare_tables(baseline: pd.DataFrame, new: pd.DataFrame, tolerances: dict[str, float] | None = None,
                   test_sets: list[str] | None = None) -> Comparison:
    """Check every metric of every row present in both tables; rows only in the baseline are missing runs."""
    tolerances = dict(DEFAULT_TOLERANCES if tolerances is None else tolerances)
    if test_sets:
        known = sorted(set(baseline["test_set"]))
        baseline = baseline[baseline["test_set"].isin(test_sets)]
        new = new[new["test_set"].isin(test_sets)]
        if baseline.empty:
            raise ValueError(f"test sets {test_sets} select no baseline rows; the baseline has {known}")
    # A metric the baseline has and the new table lacks is a regression on every row, not a skipped check.
    new = new.assign(**{name: math.nan for name in tolerances if name in baseline and name not in new})
    keys = list(KEYS)
    joined = baseline.merge(new, on=keys, how="outer", suffixes=("_base", "_new"), indicator=True)
    missing = joined[joined["_merge"] == "left_only"][keys].reset_index(drop=True)
    added = joined[joined["_merge"] == "right_only"][keys].reset_index(drop=True)
    both = joined[joined["_merge"] == "both"]
    rows = []
    for name, tolerance in tolerances.items():
        if f"{name}_base" not in both or f"{name}_new" not in both:
            continue
        for _, r in both.iterrows():
            old, now = float(r[f"{name}_base"]), float(r[f"{name}_new"])
            delta, status = _check(name, old, now, tolerance)
            rows.append({**{k: r[k] for k in keys}, "metric": name, "baseline": old, "new": now, "delta": delta,
                         "tolerance": tolerance, "status": status})
    columns = [*keys, "metric", "baseline", "new", "delta", "tolerance", "status"]
    return Comparison(pd.DataFrame(rows, columns=columns), missing, added)


def _check(name: str, old: float, now: float, tolerance: float) -> tuple[float, str]:
    """(delta, status); delta is in the better-is-lower sense: positive means worse."""
    if math.isnan(old) and math.isnan(now):
        return math.nan, "ok"  # an empty subset (n = 0) in both
    if math.isnan(now) or math.isnan(old):
        return math.nan, "REGRESSION" if math.isnan(now) else "ok"
    if name in EXACT:
        return now - old, "ok" if now == old else "REGRESSION"
    delta = comparable(name, now) - comparable(name, old)
    if delta > tolerance:
        return delta, "REGRESSION"
    return delta, "improved" if delta < -tolerance else "ok"


def summary(comparison: Comparison) -> pd.DataFrame:
    """Per metric: tolerance, rows checked, regressions, worst delta (positive = worse)."""
    checked = comparison.checked
    if checked.empty:
        return pd.DataFrame(columns=["metric", "tolerance", "checked", "regressions", "improved", "worst_delta"])
    grouped = checked.groupby("metric", sort=False)
    return pd.DataFrame({
        "tolerance": grouped["tolerance"].first(),
        "checked": grouped.size(),
        "regressions": grouped["status"].apply(lambda s: int((s == "REGRESSION").sum())),
        "improved": grouped["status"].apply(lambda s: int((s == "improved").sum())),
        "worst_delta": grouped["delta"].apply(lambda d: float(np.nanmax(d)) if d.notna().any() else math.nan),
    }).reset_index()


def format_report(comparison: Comparison, show_all: bool = False) -> str:
    """Text for the terminal: per-metric summary, then the failing (or, with show_all, every) checked row."""
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
        parts = ["metrics checked (delta > 0 means worse; lower is better, |value| for biases):",
                 summary(comparison).to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        shown = comparison.checked if show_all else comparison.checked[comparison.checked["status"] == "REGRESSION"]
        if len(shown):
            parts += ["", "regressions:" if not show_all else "all checked rows:",
                      shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        if len(comparison.missing):
            parts += ["", f"missing from the new table ({len(comparison.missing)} rows, a regression):",
                      comparison.missing.to_string(index=False)]
        if len(comparison.added):
            parts += ["", f"new in the new table ({len(comparison.added)} rows, not checked):",
                      comparison.added.to_string(index=False)]
    verdict = "REGRESSION" if comparison.regressed else "no regression"
    return "\n".join(parts + ["", f"result: {verdict}"])


# --- verdict stability: do two reports' significant findings keep their sign? ---------------------------------------

FINDING_KEYS = ["dataset", "backbone", "data_fraction", "test_set", "reference", "range", "a", "b", "metric"]


def sign_changes(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Every comparison `before` calls significant, with its difference in `after` and whether the sign changed.

    Both are findings.csv tables (one row per comparison, `diff` = a - b, `significant` for primary rows). A
    comparison missing from `after` counts as changed: a check that lost a finding has not confirmed it.
    """
    missing = [k for k in [*FINDING_KEYS, "diff", "significant"] if k not in before or k not in after]
    if missing:
        raise ValueError(f"findings tables lack column(s) {', '.join(missing)}: make them with `zpeft report`")
    significant = before[before["significant"].astype("boolean").fillna(False).astype(bool)]
    later = after[[*FINDING_KEYS, "diff", "significant"]].rename(columns={"diff": "diff_after",
                                                                      "significant": "significant_after"})
    merged = significant[[*FINDING_KEYS, "diff"]].merge(later, on=FINDING_KEYS, how="left")
    merged["sign_changed"] = ~(np.sign(merged["diff"]) == np.sign(merged["diff_after"]))
    return merged


def format_sign_changes(changes: pd.DataFrame) -> str:
    """One line of counts, then each comparison whose sign changed."""
    changed = changes[changes["sign_changed"]]
    still = int(changes["significant_after"].astype("boolean").fillna(False).astype(bool).sum())
    lines = [f"{len(changes)} significant differences before; {len(changed)} changed sign (or are missing) after; "
             f"{still} still significant after"]
    for row in changed.itertuples():
        lines.append(f"  {row.a} vs {row.b} {row.metric} ({row.test_set} vs {row.reference}, {row.range}, fraction "
                     f"{row.data_fraction:g}): {row.diff:+.4f} -> {row.diff_after:+.4f}")
    return "\n".join(lines)
