"""What a simulated pair looks like: set sizes, medians of z and i, and label quality against the
true z per i-magnitude bin. `python -m zpeft.simsurvey.summary DIR [DIR ...]` prints it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from zpeft.conventions import SPLITS, TABLE_METRICS
from zpeft.metrics import point_metrics

I_BINS = ((0.0, 21.0), (21.0, 22.0), (22.0, 23.0), (23.0, 24.0), (24.0, 25.0))


def label_stats(z_label: np.ndarray, z_true: np.ndarray) -> dict[str, float]:
    """n, bias, sigma_nmad and outlier_015 of the labels against the true z, by zpeft.metrics (NaN when empty)."""
    if len(z_true) == 0:
        return {"n": 0, **dict.fromkeys(TABLE_METRICS, float("nan"))}
    metrics = point_metrics(z_label, z_true)
    return {"n": metrics["n"], **{m: metrics[m] for m in TABLE_METRICS}}


def load_columns(directory: str | Path, kind: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """Named columns of every split of one set, stacked (no images)."""
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    frames = []
    for split in SPLITS:
        with h5py.File(directory / manifest["files"][kind][split], "r") as f:
            frames.append(pd.DataFrame({c: f[c][:] for c in columns}).assign(split=split))
    return pd.concat(frames, ignore_index=True)


def summarize(directory: str | Path) -> dict:
    """Sizes, medians and label quality (overall and per i bin) of a simulated pair."""
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    photo = load_columns(directory, "photo", ("lp_zPDF_CLASSIC", "z_truth", "i_cmodel_mag"))
    spec = load_columns(directory, "spec", ("specz_redshift", "z_truth", "i_cmodel_mag", "photoz_label"))
    per_bin = {}
    for lo, hi in I_BINS:
        sel = (photo["i_cmodel_mag"] >= lo) & (photo["i_cmodel_mag"] < hi)
        per_bin[f"{lo:g}-{hi:g}" if lo else f"<{hi:g}"] = label_stats(photo["lp_zPDF_CLASSIC"][sel].to_numpy(),
                                                                       photo["z_truth"][sel].to_numpy())
    return {
        "name": manifest["name"], "label_model": manifest["label_model"], "seed": manifest["seed"],
        "counts": manifest["counts"], "in_both": manifest.get("in_both"), "timing_s": manifest.get("timing_s"),
        "photo_median_z": float(photo["z_truth"].median()), "photo_median_i": float(photo["i_cmodel_mag"].median()),
        "spec_median_z": float(spec["z_truth"].median()), "spec_median_i": float(spec["i_cmodel_mag"].median()),
        "photo_labels": label_stats(photo["lp_zPDF_CLASSIC"].to_numpy(), photo["z_truth"].to_numpy()),
        "photo_labels_by_i": per_bin,
        "spec_galaxies_photoz": label_stats(spec["photoz_label"].to_numpy(), spec["z_truth"].to_numpy()),
    }


def main(argv: list[str] | None = None) -> int:
    for directory in argv if argv is not None else sys.argv[1:]:
        print(json.dumps(summarize(directory), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
