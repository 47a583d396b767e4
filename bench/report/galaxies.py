"""Per-galaxy arrays for the report's astronomer plots, and the statistics drawn from them.

`load_test_sets` gathers, for one (dataset, backbone) at its main data fraction, each test set's label,
true redshift and i-band magnitude (from a run's predictions catalogue) with every run's predictions;
`magnitude_bins` scores each run per magnitude bin with bootstrap intervals, the table the
metrics-against-magnitude plot draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import TEST_SETS
from zpeft.metrics import METRICS, bin_masks, bootstrap_interval, point_metrics
from zpeft.run.layout import ResultsLayout
from zpeft.run.outputs import read_catalogue
from zpeft.run.records import read_predictions, read_references

MAGNITUDE_BAND = "i"  # HSC's detection band: photo-z quality is quoted against it
MAGNITUDE_STEP = 1.0  # bin width in magnitudes
MIN_PER_BIN = 20  # bins with fewer galaxies are left out of the magnitude table (their metrics are noise)
# What each test set is scored against in these plots, as in the Findings: spec-z labels are (nearly) exact;
# photo-z labels are noisy, so the photo-z test set is scored against the true redshift where it is known.
SCORED_AGAINST = {"spec": "label", "photo": "true", "combined": "label"}


@dataclass
class GalaxyArrays:
    """One test set's references and magnitudes in row order, and each run's predictions on it."""

    z_label: np.ndarray
    z_true: np.ndarray | None = None
    magnitude: np.ndarray | None = None  # MAGNITUDE_BAND, from a predictions catalogue
    predictions: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)  # (variant, seed) -> z_pred

    def reference(self, which: str) -> np.ndarray | None:
        return self.z_label if which == "label" else self.z_true


def load_test_sets(main: pd.DataFrame, results_dir: Path) -> dict[str, GalaxyArrays]:
    """Test set -> its arrays, for the ok runs in `main` (one dataset and backbone); runs whose predictions are
    missing or do not line up with the references are left out. Raises FileNotFoundError without references."""
    dataset = main["dataset"].iloc[0]
    references = read_references(results_dir, dataset)
    out = {t: GalaxyArrays(references[t], references.get(f"{t}_true")) for t in TEST_SETS if t in references}
    runs = main.drop_duplicates("run_id")
    for _, run in runs.iterrows():
        try:
            preds = read_predictions(results_dir, run["run_id"])
        except FileNotFoundError:
            continue
        for test_set, arrays in out.items():
            z_pred = preds.get(test_set)
            if z_pred is not None and len(z_pred) == len(arrays.z_label):
                arrays.predictions[run["variant"], int(run["seed"])] = z_pred
    for test_set, arrays in out.items():
        arrays.magnitude = _magnitudes(results_dir, runs["run_id"], test_set, len(arrays.z_label))
    return out


def _magnitudes(results_dir: Path, run_ids, test_set: str, n: int) -> np.ndarray | None:
    """MAGNITUDE_BAND magnitudes of a test set, from the first run whose catalogue has them in the right length."""
    layout = ResultsLayout(results_dir)
    column = f"mag_{MAGNITUDE_BAND}"
    for run_id in run_ids:
        path = layout.catalogue(run_id, test_set)
        if not path.exists():
            continue
        table = read_catalogue(path)
        if column in table.colnames and len(table) == n:
            return np.asarray(table[column], dtype=np.float64)
        return None  # every run's catalogue of a dataset has the same columns
    return None


def magnitude_edges(test_sets: dict[str, GalaxyArrays]) -> np.ndarray | None:
    """Edges every MAGNITUDE_STEP magnitudes spanning the finite magnitudes of every test set; None without any."""
    values = [a.magnitude[np.isfinite(a.magnitude)] for a in test_sets.values() if a.magnitude is not None]
    values = np.concatenate(values) if values else np.array([])
    if values.size == 0:
        return None
    lo = np.floor(values.min() / MAGNITUDE_STEP) * MAGNITUDE_STEP  # bin_masks's first bin includes its lower edge
    hi = max(np.ceil(values.max() / MAGNITUDE_STEP) * MAGNITUDE_STEP, lo + MAGNITUDE_STEP)
    return np.arange(lo, hi + MAGNITUDE_STEP / 2, MAGNITUDE_STEP)


def magnitude_bins(test_sets: dict[str, GalaxyArrays], n_boot: int, level: float = 0.68) -> pd.DataFrame:
    """Per run x test set x magnitude bin (lo, hi]: n and every metric with its `level` bootstrap interval,
    against the test set's SCORED_AGAINST reference; bins with fewer than MIN_PER_BIN galaxies are dropped."""
    edges = magnitude_edges(test_sets)
    rows = []
    if edges is None:
        return pd.DataFrame(rows)
    for test_set, arrays in test_sets.items():
        reference = SCORED_AGAINST[test_set]
        z_ref = arrays.reference(reference)
        if z_ref is None or arrays.magnitude is None:
            continue
        for (variant, seed), z_pred in arrays.predictions.items():
            for lo, hi, mask in bin_masks(arrays.magnitude, edges):
                if mask.sum() < MIN_PER_BIN:
                    continue
                row = {"variant": variant, "seed": seed, "test_set": test_set, "reference": reference,
                       "lo": lo, "hi": hi, "n": int(mask.sum()), **point_metrics(z_pred[mask], z_ref[mask])}
                interval = bootstrap_interval(z_pred[mask], z_ref[mask], n_boot=n_boot, seed=seed, level=level)
                row.update({f"{name}_{side}": bound for name, (a, b) in interval.items()
                            for side, bound in (("lo", a), ("hi", b))})
                rows.append(row)
    columns = ["variant", "seed", "test_set", "reference", "lo", "hi", "n",
               *[f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")]]
    return pd.DataFrame(rows, columns=columns)


def running_median(z_ref: np.ndarray, z_pred: np.ndarray, n_points: int = 25) -> tuple[np.ndarray, ...]:
    """Median and 16th/84th percentiles of dz = (z_pred - z_ref) / (1 + z_ref) in `n_points` bins of equal
    galaxy count along z_ref: (median z_ref, median dz, p16, p84) per bin."""
    order = np.argsort(z_ref, kind="stable")
    chunks = np.array_split(order, min(n_points, max(1, len(order) // 10)))
    dz = (z_pred - z_ref) / (1.0 + z_ref)
    stats = np.array([(np.median(z_ref[c]), *np.percentile(dz[c], [50, 16, 84])) for c in chunks if len(c)])
    return tuple(stats.T)
