"""Figures of per-galaxy predictions that astronomers check first: predicted against true n(z), and the running
median of dz against redshift. Each draws one PNG from zpeft.report.galaxies' arrays, or says why not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from zpeft.report.galaxies import SCORED_AGAINST, GalaxyArrays, running_median
from zpeft.report.plots import (
    TEST_SET_NAMES,
    Plot,
    save_png,
    strategy_legend,
    strategy_linestyle,
    strategy_palette,
    theme,
)


def _shown(test_sets: dict[str, GalaxyArrays], order: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Test sets with predictions of `seed`, and the variants (in `order`) that have them."""
    names = [t for t, a in test_sets.items() if any(s == seed for _, s in a.predictions)]
    variants = [v for v in order if any((v, seed) in test_sets[t].predictions for t in names)]
    return names, variants


def redshift_distributions(test_sets: dict[str, GalaxyArrays], order: list[str], seed: int, out_dir: Path,
                           suffix: str = "") -> Plot:
    """n(z): each strategy's histogram of predictions against the test set's label (and true z) histogram."""
    name = f"nz{suffix}"
    title = "Predicted against reference redshift distribution n(z)"
    names, variants = _shown(test_sets, order, seed)
    if not variants:
        return Plot(name, title, "", None, "no predictions to histogram")
    caption = (f"Seed {seed}. Grey: the test set's labels; dashed black: the true redshifts where known; one line "
               "per strategy's predictions. A model that regresses to the mean shows a narrower, taller n(z).")
    palette = strategy_palette(order)
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(5.2 * len(names) + 1.8, 4.2), layout="constrained")
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        for ax, test_set in zip(axes, names):
            arrays = test_sets[test_set]
            top = float(np.quantile(arrays.z_label, 0.995)) * 1.1 or 1.0
            edges = np.linspace(0.0, top, 41)
            ax.hist(arrays.z_label, bins=edges, color="#dddddd", label="label")
            if arrays.z_true is not None:
                ax.hist(arrays.z_true, bins=edges, histtype="step", color="black", linestyle="--", linewidth=1.2)
            for variant in variants:
                z_pred = arrays.predictions.get((variant, seed))
                if z_pred is not None:
                    ax.hist(z_pred, bins=edges, histtype="step", color=palette[variant], linewidth=1.3,
                            linestyle=strategy_linestyle(variant))
            ax.set_xlim(0, top)
            ax.set_xlabel("z")
            ax.set_ylabel("galaxies per bin")
            ax.set_title(TEST_SET_NAMES.get(test_set, test_set), fontsize=11)
        extra = [(Line2D([], [], color="#bbbbbb", linewidth=6), "label"),
                 (Line2D([], [], color="black", linestyle="--"), "true z")]
        strategy_legend(fig, variants, palette, extra, lines=True)
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))


def running_dz(test_sets: dict[str, GalaxyArrays], order: list[str], seed: int, out_dir: Path,
               suffix: str = "") -> Plot:
    """Running median of dz and the 68 % half-width of dz against the reference redshift, per strategy."""
    name = f"running_dz{suffix}"
    title = "Running median of dz against redshift"
    names, variants = _shown(test_sets, order, seed)
    names = [t for t in names if test_sets[t].reference(SCORED_AGAINST[t]) is not None]
    if not variants or not names:
        return Plot(name, title, "", None, "no predictions with references")
    caption = (f"Seed {seed}. dz = (z_pred - z_ref) / (1 + z_ref) in 25 bins of equal galaxy count along z_ref; "
               "spec-z test against its labels, photo-z test against the true redshift. Top: the median (0 is "
               "unbiased; a slope is regression to the mean). Bottom: half the 16-84 percentile range (a robust "
               "scatter). Dotted: the outlier_015 boundary.")
    palette = strategy_palette(order)
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(5.2 * len(names) + 1.8, 7.0), layout="constrained")
        axes = fig.subplots(2, len(names), squeeze=False, sharex="col")
        for j, test_set in enumerate(names):
            arrays = test_sets[test_set]
            reference = SCORED_AGAINST[test_set]
            z_ref = arrays.reference(reference)
            for variant in variants:
                z_pred = arrays.predictions.get((variant, seed))
                if z_pred is None:
                    continue
                z_mid, median, p16, p84 = running_median(z_ref, z_pred)
                style = strategy_linestyle(variant)
                axes[0, j].plot(z_mid, median, color=palette[variant], linewidth=1.3, linestyle=style)
                axes[1, j].plot(z_mid, (p84 - p16) / 2, color=palette[variant], linewidth=1.3, linestyle=style)
            axes[0, j].axhline(0.0, color="black", linewidth=0.8)
            for sign in (-1, 1):
                axes[0, j].axhline(sign * 0.15, color="black", linestyle=":", linewidth=0.8)
            axes[0, j].set_title(f"{TEST_SET_NAMES.get(test_set, test_set)} vs "
                                 f"{'label' if reference == 'label' else 'true z'}", fontsize=11)
            axes[0, j].set_ylabel("median dz")
            axes[1, j].set_ylabel("68 % half-width of dz")
            axes[1, j].set_xlabel(f"{'label' if reference == 'label' else 'true'} z")
        strategy_legend(fig, variants, palette, lines=True)
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))
