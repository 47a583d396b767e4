"""Report figures (seaborn on matplotlib Figures, no pyplot state): each function draws one PNG or says why not.

Inputs are the summaries zpeft.report.build computes (value and error-bar bounds per variant, test set,
reference and metric) and the binned tables of zpeft.report.galaxies; a plot never computes statistics of its
own beyond averaging seeds per bin. Plots of per-galaxy arrays (n(z), running median) are in galaxy_plots.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.colors import LogNorm, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from zpeft.conventions import TEST_SETS
from zpeft.metrics import point_metrics

# (column in the summaries, axis label): biases are shown as |bias| since closer to zero is better.
PLOTTED = (("sigma_nmad", "sigma_nmad"), ("bias", "|bias|"), ("outlier_015", "outlier_015"))

TEST_SET_NAMES = {"spec": "spec-z test", "photo": "photo-z test", "combined": "combined test"}
REFERENCE_LINES = ("zero-shot", "head-only", "full")
DPI = 110


@dataclass
class Plot:
    """A drawn figure (`path`) or the reason it was not drawn (`skipped`)."""

    name: str
    title: str
    caption: str
    path: Path | None
    skipped: str | None = None


def theme():
    return sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.95)


# One colour per strategy in every figure, whatever else is plotted (Okabe-Ito / Tol colour-blind-safe hues).
# Hues apart from the adapter families' blues, greens, oranges and purples below.
STRATEGY_COLOURS = {"zero-shot": "#7f7f7f", "head-only": "#a6761d", "paper-tl": "#999933", "last-k": "#44aa99",
                    "full": "#000000", "combined": "#d55e00", "bitfit": "#cc79a7", "norm-only": "#882255"}
# Adapter families: shades of one hue, darker with higher rank (rank 1 lightest, 256 darkest).
ADAPTER_HUES = {"lora": "Blues", "dora": "Greens", "loha": "Oranges", "lokr": "Purples"}
FALLBACK = sns.color_palette("colorblind", 10)
_RANKED = re.compile(r"^(?P<family>.+)-r(?P<rank>\d+)$")
_NUMBERED = re.compile(r"^(?P<family>[a-z-]+?)(?P<k>\d+)$")


def _stable_index(text: str, n: int) -> int:
    """Index from a hash that is the same in every process (Python's hash() is salted per run)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % n


def _shade(rgb: tuple, amount: float) -> tuple:
    """Lighter (amount > 0, towards white) or darker (amount < 0, towards black)."""
    target = 1.0 if amount > 0 else 0.0
    return tuple(c + abs(amount) * (target - c) for c in rgb)


def strategy_colour(name: str) -> tuple[float, float, float]:
    """The RGB colour of a strategy or variant name, fixed across figures.

    Known strategies have a fixed colour; `lora-r8` and friends a shade of their family's hue ordered by rank;
    any other name one of the colour-blind palette by a stable hash. A variant told apart by parameters,
    `lora-r4 (bn=train)`, takes its label's colour shaded by a stable hash of the parameters.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a strategy name must be a non-empty string, got {name!r}")
    label, _, extra = name.partition(" (")
    if extra:
        return _shade(strategy_colour(label), (-0.3, 0.3, -0.15, 0.15)[_stable_index(extra, 4)])
    if label in STRATEGY_COLOURS:
        return to_rgb(STRATEGY_COLOURS[label])
    numbered = _NUMBERED.match(label)  # last-k1, last-k2: their family's colour, darker with k
    if numbered and numbered["family"] in STRATEGY_COLOURS:
        return _shade(to_rgb(STRATEGY_COLOURS[numbered["family"]]), -min(0.15 * (int(numbered["k"]) - 1), 0.6))
    if label in ADAPTER_HUES:
        return to_rgb(colormaps[ADAPTER_HUES[label]](0.7))
    ranked = _RANKED.match(label)
    if ranked and ranked["family"] in ADAPTER_HUES and int(ranked["rank"]) >= 1:
        position = 0.35 + 0.6 * min(math.log2(int(ranked["rank"])) / 6, 1.0)  # r2 0.45, r4 0.55, r8 0.65 ...
        return to_rgb(colormaps[ADAPTER_HUES[ranked["family"]]](position))
    return tuple(FALLBACK[_stable_index(label, len(FALLBACK))])


# Markers and line styles tell strategies apart without colour (colour-blind readers, greyscale prints): known
# strategies have their own marker; adapter ranks cycle through RANK_MARKERS and RANK_STYLES by log2(rank).
STRATEGY_MARKERS = {"zero-shot": "X", "head-only": "P", "paper-tl": "*", "last-k": ">", "full": "D", "combined": "H",
                    "bitfit": "<", "norm-only": "d"}
STRATEGY_STYLES = {"zero-shot": ":", "head-only": "--", "paper-tl": "-.", "last-k": (0, (5, 1)), "full": "-",
                   "combined": (0, (3, 1, 1, 1, 1, 1)), "bitfit": (0, (1, 1)), "norm-only": (0, (8, 2))}
RANK_MARKERS = ("o", "^", "s", "v", "p", "h", "8")
RANK_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)))
REFERENCE_STYLE = {"color": "#555555", "linestyle": (0, (6, 2, 1, 2)), "linewidth": 1.6}  # the template fit's line


def _family_index(label: str, n: int) -> int | None:
    ranked = _RANKED.match(label)
    if ranked and int(ranked["rank"]) >= 1:
        return int(round(math.log2(int(ranked["rank"])))) % n
    return None


def strategy_marker(name: str) -> str:
    """The marker of a strategy or variant name, fixed across figures (a variant with parameters: its label's)."""
    return _fixed_or_cycled(name.partition(" (")[0], STRATEGY_MARKERS, RANK_MARKERS)


def strategy_linestyle(name: str):
    """The line style of a strategy or variant name in line plots, fixed across figures."""
    label, _, extra = name.partition(" (")
    if extra:
        return RANK_STYLES[_stable_index(name, len(RANK_STYLES))]
    return _fixed_or_cycled(label, STRATEGY_STYLES, RANK_STYLES)


def _fixed_or_cycled(label: str, fixed: dict, cycle: tuple):
    """`fixed`'s entry for the label or its family (lora-r4 -> lora), else one of `cycle` by family rank or name."""
    numbered = _NUMBERED.match(label)
    label = numbered["family"] if numbered and numbered["family"] in fixed else label
    if label in fixed:
        return fixed[label]
    index = _family_index(label, len(cycle))
    return cycle[index if index is not None else _stable_index(label, len(cycle))]


def strategy_palette(names) -> dict[str, tuple]:
    """Colour per name, from strategy_colour: independent of which other names are plotted."""
    return {n: strategy_colour(n) for n in names}


def _folded(values: pd.DataFrame, metric: str, columns: tuple[str, str, str] = ("value", "lo", "hi")
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """value, lo, hi (from `columns`); for biases their distance from zero (an interval straddling zero starts at 0)."""
    v, lo, hi = (values[c].to_numpy(dtype=float) for c in columns)
    if metric != "bias":
        return v, lo, hi
    straddles = (lo < 0) & (hi > 0)
    a_lo, a_hi = np.abs(lo), np.abs(hi)
    return np.abs(v), np.where(straddles, 0.0, np.minimum(a_lo, a_hi)), np.maximum(a_lo, a_hi)


def _errors(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])


def _test_sets(frame: pd.DataFrame) -> list[str]:
    present = set(frame["test_set"])
    return [t for t in TEST_SETS if t in present] + sorted(present - set(TEST_SETS))


def save_png(fig: Figure, out_dir: Path, name: str) -> Path:
    path = Path(out_dir) / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    return path


def strategy_legend(fig: Figure, order: list[str], palette: dict, extra: list[tuple[Line2D, str]] = (),
                    lines: bool = False) -> None:
    """One entry per strategy with its colour and marker (and line style when the figure draws lines)."""
    handles = [Line2D([], [], marker=strategy_marker(v), linestyle=strategy_linestyle(v) if lines else "",
                      color=palette[v], markersize=7) for v in order]
    labels = list(order)
    for handle, label in extra:
        handles.append(handle)
        labels.append(label)
    fig.legend(handles, labels, loc="outside right upper", title="strategy", frameon=False)


def reference_line(ax, value: float | None, vertical: bool = False) -> bool:
    """Draw the template fit's value as a reference line; False when there is none."""
    if value is None or not np.isfinite(value):
        return False
    (ax.axvline if vertical else ax.axhline)(value, zorder=0, **REFERENCE_STYLE)
    return True


def _reference_handle(line_name: str) -> tuple[Line2D, str]:
    return Line2D([], [], **REFERENCE_STYLE), line_name


def metrics_by_strategy(summary: pd.DataFrame, order: list[str], out_dir: Path, reference: str,
                        suffix: str = "", lines: dict | None = None, line_name: str = "template fit") -> Plot:
    """Dot-and-whisker panels: test sets x (sigma_nmad, |bias|, outlier_015), one row per strategy; `lines`
    ((test set, reference, metric) -> value) draws the template fit as a vertical reference line."""
    name = f"metrics_by_strategy_{reference}{suffix}"
    title = f"Metrics by strategy, against the {'label' if reference == 'label' else 'true redshift'}"
    data = summary[(summary["reference"] == reference) & (summary["range"] == "all")] if not summary.empty else summary
    if data.empty:
        return Plot(name, title, "", None, f"no metrics against the {reference} reference")
    intervals = sorted(set(data["interval"]))
    caption = ("Whole test sets. Error bars: " + " and ".join(
        {"seed spread": "mean ± std over seeds", "bootstrap": "68 % bootstrap interval (one seed)"}[i]
        for i in intervals) + f". Lower is better in every panel. Dash-dotted grey: {line_name}, where it exists.")
    lines = lines or {}
    drew_line = False
    test_sets = _test_sets(data)
    variants = [v for v in order if v in set(data["variant"])]
    palette = strategy_palette(set(order) | set(data["variant"]))
    y = {v: i for i, v in enumerate(variants)}
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(13, 0.9 + (0.32 * len(variants) + 0.9) * len(test_sets)), layout="constrained")
        axes = np.atleast_2d(fig.subplots(len(test_sets), len(PLOTTED), sharey=True, squeeze=False))
        for i, test_set in enumerate(test_sets):
            for j, (metric, label) in enumerate(PLOTTED):
                ax = axes[i, j]
                part = data[(data["test_set"] == test_set) & (data["metric"] == metric)]
                for variant, row in part.set_index("variant").iterrows():
                    v, lo, hi = _folded(row.to_frame().T, metric)
                    ax.errorbar(v, [y[variant]], xerr=_errors(v, lo, hi), fmt=strategy_marker(variant),
                                color=palette[variant], capsize=3, markersize=7)
                value = lines.get((test_set, reference, metric))
                drew_line |= reference_line(ax, abs(value) if value is not None else None, vertical=True)
                ax.set_yticks(range(len(variants)), variants)
                ax.set_ylim(len(variants) - 0.5, -0.5)
                ax.set_title(f"{TEST_SET_NAMES.get(test_set, test_set)}: {label}", fontsize=11)
                ax.set_xlabel(label)
                ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        if drew_line:
            fig.legend(*zip(_reference_handle(line_name)), loc="outside lower center", frameon=False)
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))


def _front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the Pareto front (no other point has both lower cost and lower metric), by cost."""
    idx = np.lexsort((y, x))
    front, best = [], np.inf
    for i in idx:
        if y[i] < best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


_plain = FuncFormatter(lambda value, _: f"{value:g}")


def _log_axis(ax, formatter) -> None:
    """Log x axis labelled at 1, 2, 5 x 10^k only: default minor labels overlap on spans under a decade."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(formatter)
    ax.xaxis.set_minor_formatter(NullFormatter())


def pareto(summary: pd.DataFrame, order: list[str], out_dir: Path, suffix: str = "",
           metric: str = "sigma_nmad", lines: dict | None = None, line_name: str = "template fit") -> Plot:
    """sigma_nmad vs trainable parameters and vs training seconds (log x), Pareto front as a step line; `lines`
    ((test set, reference, metric) -> value) draws the template fit as a horizontal reference line."""
    name = f"pareto{suffix}"
    title = f"Pareto fronts: {metric} vs cost"
    data = summary[(summary["reference"] == "label") & (summary["range"] == "all") & (summary["metric"] == metric)] \
        if not summary.empty else summary
    if data.empty:
        return Plot(name, title, "", None, f"no {metric} against the label")
    caption = (f"{metric} against the label on each whole test set vs the strategy's trainable parameters and its "
               "own training seconds (log scale; the base model's training is shared and left out). Ringed points, "
               "joined by the dashed step line, form the Pareto front: no other strategy has both lower cost and "
               "lower scatter. Strategies with no training (cost 0) cannot sit on a log axis: they are drawn as "
               "dotted horizontal lines, and any trained strategy above such a line is off the front. Dash-dotted "
               f"grey: {line_name} (no images, trains nothing), where the test set has one.")
    lines = lines or {}
    drew_line = False
    test_sets = _test_sets(data)
    palette = strategy_palette(set(order) | set(data["variant"]))
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(13, 0.6 + 3.6 * len(test_sets)), layout="constrained")
        axes = fig.subplots(len(test_sets), 2, squeeze=False)
        for i, test_set in enumerate(test_sets):
            part = data[data["test_set"] == test_set]
            for j, (cost, xlabel) in enumerate((("trainable_params", "trainable parameters"),
                                                ("train_seconds", "training seconds"))):
                ax = axes[i, j]
                x = part[cost].to_numpy(dtype=float)
                v, lo, hi = _folded(part, metric)
                positive = x > 0
                for k in np.flatnonzero(positive):
                    variant = part["variant"].iloc[k]
                    ax.errorbar(x[k], v[k], yerr=_errors(v[k:k + 1], lo[k:k + 1], hi[k:k + 1]),
                                fmt=strategy_marker(variant), color=palette[variant], capsize=3, markersize=8)
                for k in np.flatnonzero(~positive):
                    ax.axhline(v[k], color=palette[part["variant"].iloc[k]], linestyle=":", linewidth=1.5)
                drew_line |= reference_line(ax, lines.get((test_set, "label", metric)))
                # Cost-0 strategies take part in the front: a trained one above them is dominated.
                front = _front(x, v)
                on_front = front[x[front] > 0]
                if on_front.size:
                    ax.step(x[on_front], v[on_front], where="post", color="0.3", linestyle="--", linewidth=1,
                            zorder=0)
                    ax.scatter(x[on_front], v[on_front], s=190, facecolors="none", edgecolors="0.2", linewidths=1.3)
                if positive.any():
                    _log_axis(ax, EngFormatter(sep="") if cost == "trainable_params" else _plain)
                    ax.margins(x=0.15)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(metric)
                ax.set_title(f"{TEST_SET_NAMES.get(test_set, test_set)}: {metric} vs {xlabel}", fontsize=11)
        variants = [v for v in order if v in set(data["variant"])]
        strategy_legend(fig, variants, palette,
                [(Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=11, markerfacecolor="none"),
                  "Pareto front"),
                 (Line2D([], [], color="0.5", linestyle=":"), "no training (cost 0)"),
                 *([_reference_handle(line_name)] if drew_line else [])])
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))


def rank_curves(summary: pd.DataFrame, out_dir: Path, suffix: str = "") -> Plot:
    """Metrics vs adapter rank per adapter family, with zero-shot, head-only and full as reference lines."""
    name = f"rank_curves{suffix}"
    title = "Adapter rank curves"
    data = summary[(summary["reference"] == "label") & (summary["range"] == "all")] if not summary.empty else summary
    ranked = data[np.isfinite(data["rank"].to_numpy(dtype=float))] if not data.empty else data
    families = [f for f, g in ranked.groupby("strategy") if g["rank"].nunique() > 1] if not ranked.empty else []
    if not families:
        return Plot(name, title, "", None, "no adapter strategy was run at more than one rank")
    caption = ("Metric against the label on each whole test set vs adapter rank (log 2 axis), one line per adapter "
               "family; horizontal lines (each in its strategy's style) mark strategies without a rank. Error bars: mean ± std over seeds, "
               "or the 68 % bootstrap interval with one seed. Lower is better.")
    test_sets = _test_sets(ranked)
    lines = [v for v in REFERENCE_LINES if v in set(data["variant"])]
    colours = strategy_palette(families + lines)
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(13, 0.6 + 3.3 * len(test_sets)), layout="constrained")
        axes = fig.subplots(len(test_sets), len(PLOTTED), squeeze=False)
        for i, test_set in enumerate(test_sets):
            for j, (metric, label) in enumerate(PLOTTED):
                ax = axes[i, j]
                for family in families:
                    part = ranked[(ranked["strategy"] == family) & (ranked["test_set"] == test_set)
                                  & (ranked["metric"] == metric)].sort_values("rank")
                    v, lo, hi = _folded(part, metric)
                    ax.errorbar(part["rank"], v, yerr=_errors(v, lo, hi), marker=strategy_marker(family), capsize=3,
                                color=colours[family], linestyle=strategy_linestyle(family), label=family)
                for variant in lines:
                    part = data[(data["variant"] == variant) & (data["test_set"] == test_set)
                                & (data["metric"] == metric)]
                    if not part.empty:
                        ax.axhline(_folded(part, metric)[0][0], color=colours[variant],
                                   linestyle=strategy_linestyle(variant), linewidth=1.2)
                ranks = sorted(ranked["rank"].unique())
                ax.set_xscale("log", base=2)
                ax.set_xticks(ranks, [f"{r:g}" for r in ranks])
                ax.minorticks_off()
                ax.set_xlabel("rank")
                ax.set_ylabel(label)
                ax.set_title(f"{TEST_SET_NAMES.get(test_set, test_set)}: {label}", fontsize=11)
        handles = [(Line2D([], [], color=colours[f], marker=strategy_marker(f), linestyle=strategy_linestyle(f)), f)
                   for f in families]
        handles += [(Line2D([], [], color=colours[v], linestyle=strategy_linestyle(v)), v) for v in lines]
        fig.legend(*zip(*handles), loc="outside right upper", frameon=False)
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))


def fraction_curves(summary: pd.DataFrame, order: list[str], out_dir: Path, suffix: str = "",
                    lines: dict | None = None, line_name: str = "template fit") -> Plot:
    """Metrics vs the number of spec-z training galaxies (column `n_spec_train`; the data fraction where it is
    missing), for strategies run at several; the template fit as a reference line."""
    name = f"fraction_curves{suffix}"
    title = "Metrics against the spec-z training set size"
    data = summary[(summary["reference"] == "label") & (summary["range"] == "all")] if not summary.empty else summary
    if data.empty or data["data_fraction"].nunique() < 2:
        return Plot(name, title, "", None, "every run used the same data fraction")
    by_size = "n_spec_train" in data and data["n_spec_train"].notna().all()
    x_column = "n_spec_train" if by_size else "data_fraction"
    multi = [v for v, g in data.groupby("variant") if g["data_fraction"].nunique() > 1]
    variants = [v for v in order if v in multi] + sorted(set(multi) - set(order))
    caption = ("Metric against the label on each whole test set vs "
               + ("the number of spec-z training galaxies the run used (log axis)" if by_size else
                  "the fraction of the spec-z training set used (the records carry no sizes)")
               + "; only strategies run at more than one size. Error bars: mean ± std over seeds where a point has "
               f"several seeds, else the 68 % bootstrap interval of its one run. Dash-dotted grey: {line_name}, "
               "which needs no training set.")
    test_sets = _test_sets(data)
    palette = strategy_palette(variants)
    lines = lines or {}
    drew_line = False
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(13, 0.6 + 3.3 * len(test_sets)), layout="constrained")
        axes = fig.subplots(len(test_sets), len(PLOTTED), squeeze=False)
        for i, test_set in enumerate(test_sets):
            for j, (metric, label) in enumerate(PLOTTED):
                ax = axes[i, j]
                for variant in variants:
                    part = data[(data["variant"] == variant) & (data["test_set"] == test_set)
                                & (data["metric"] == metric)].sort_values(x_column)
                    v, lo, hi = _folded(part, metric)
                    ax.errorbar(part[x_column], v, yerr=_errors(v, lo, hi), marker=strategy_marker(variant),
                                linestyle=strategy_linestyle(variant), capsize=3, color=palette[variant])
                value = lines.get((test_set, "label", metric))
                drew_line |= reference_line(ax, abs(value) if value is not None else None)
                ticks = sorted(data[x_column].unique())
                ax.set_xscale("log")
                ax.set_xticks(ticks, [f"{t:,.0f}" if by_size else f"{t:g}" for t in ticks])
                ax.minorticks_off()
                ax.set_xlabel("spec-z training galaxies" if by_size else "data fraction")
                ax.set_ylabel(label)
                ax.set_title(f"{TEST_SET_NAMES.get(test_set, test_set)}: {label}", fontsize=11)
        strategy_legend(fig, variants, palette, [_reference_handle(line_name)] if drew_line else [], lines=True)
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))


def density(pairs: dict[str, tuple[np.ndarray, np.ndarray]], order: list[str], test_set: str, seed: int,
            out_dir: Path, suffix: str = "") -> Plot:
    """Predicted vs reference redshift as log-count hexbins, one panel per strategy, one seed."""
    name = f"density_{test_set}{suffix}"
    title = f"Predicted vs label redshift, {TEST_SET_NAMES.get(test_set, test_set)}"
    if not pairs:
        return Plot(name, title, "", None, f"no predictions with matching references for the {test_set} test set")
    z_all = np.concatenate([np.concatenate(p) for p in pairs.values()])
    top = float(np.quantile(z_all, 0.995)) * 1.05 or 1.0
    clipped = {v: int(np.count_nonzero((z_ref > top) | (z_pred > top) | (z_ref < 0) | (z_pred < 0)))
               for v, (z_ref, z_pred) in pairs.items()}
    caption = (f"Seed {seed}. Hexbin counts on a log colour scale; solid line z_pred = z_ref, dotted lines "
               f"|dz| = 0.15 (the outlier_015 boundary). Each panel states its N galaxies, bias, sigma_nmad and "
               f"outlier_015 over all of them; the axes stop at z = {top:.2f} (the 99.5th percentile of every "
               "redshift shown, + 5 %), so galaxies beyond it are not drawn but counted in the numbers: "
               + ", ".join(f"{v} {clipped[v]}" for v in order) + " clipped.")
    ncols = min(4, len(order))
    nrows = -(-len(order) // ncols)
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(2.9 * ncols + 1.1, 3.2 * nrows + 0.7), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
        grid = np.linspace(0, top, 50)
        mappables = []
        for ax, variant in zip(axes.flat, order):
            z_ref, z_pred = pairs[variant]
            mappables.append(ax.hexbin(z_ref, z_pred, gridsize=35, extent=(0, top, 0, top), mincnt=1,
                                       cmap="viridis", linewidths=0))
            ax.plot(grid, grid, color="black", linewidth=0.8)
            for sign in (-1, 1):
                ax.plot(grid, grid + sign * 0.15 * (1 + grid), color="black", linestyle=":", linewidth=0.8)
            ax.set_xlim(0, top)
            ax.set_ylim(0, top)
            ax.set_title(variant, fontsize=11)
            stats = point_metrics(z_pred, z_ref)
            ax.text(0.03, 0.97, f"N = {len(z_ref):,}\nbias = {stats['bias']:+.4f}\nσ_NMAD = {stats['sigma_nmad']:.4f}"
                    f"\noutl. = {100 * stats['outlier_015']:.1f} %", transform=ax.transAxes, va="top", ha="left",
                    fontsize=8, bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})
            ax.set_aspect("equal")
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(4))
        for ax in axes.flat[len(order):]:
            ax.set_visible(False)
        for ax in axes[-1, :]:
            ax.set_xlabel("label z")
        for ax in axes[:, 0]:
            ax.set_ylabel("predicted z")
        # One log colour scale shared by every panel, so densities compare across strategies.
        norm = LogNorm(vmin=1, vmax=max(2.0, max(float(m.get_array().max()) for m in mappables)))
        for m in mappables:
            m.set_norm(norm)
        bar = fig.colorbar(mappables[0], ax=axes, label="galaxies per cell", shrink=0.8)
        bar.locator = LogLocator(base=10, subs=(1.0, 2.0, 5.0))
        bar.formatter = _plain
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
        bar.update_ticks()
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))


def per_bin(bins: pd.DataFrame, order: list[str], out_dir: Path, reference: str, suffix: str = "") -> Plot:
    """Metrics per z bin against one reference, one line per strategy, panels test sets x metrics + bin counts."""
    name = f"per_bin_{reference}{suffix}"
    title = f"Metrics per redshift bin, against the {'label' if reference == 'label' else 'true redshift'}"
    data = bins[(bins["reference"] == reference) & (bins["n"] > 0)] if not bins.empty else bins
    caption = ("Bins (lo, hi] in the reference redshift, drawn at their centres; empty bins left out. "
               + BINNED_CAPTION)
    return binned(data, order, out_dir, name, title, caption, f"{reference} z (bin centre)")


BINNED_CAPTION = ("Error bars: 68 % bootstrap interval over the bin's galaxies (mean of the seeds' bounds with "
                  "several seeds); values are means over seeds. bias is signed (the black line is zero: above it "
                  "predictions are too high), sigma_nmad and outlier_015 are better lower. The last column counts "
                  "the galaxies per bin on a linear axis: few galaxies, wide intervals.")
BINNED = (("sigma_nmad", "sigma_nmad"), ("bias", "bias (signed)"), ("outlier_015", "outlier_015"))


def per_magnitude(bins: pd.DataFrame, order: list[str], out_dir: Path, band: str, suffix: str = "") -> Plot:
    """Metrics per magnitude bin, panels test sets (each against the reference named in its title) x metrics."""
    name = f"per_magnitude_{band}{suffix}"
    title = f"Metrics against {band}-band magnitude"
    caption = (f"Bins of one magnitude in the {band}-band catalogue magnitude, drawn at their centres; bins with "
               "too few galaxies left out. Spec-z test against its labels, photo-z test against the true "
               "redshift. " + BINNED_CAPTION)
    return binned(bins, order, out_dir, name, title, caption, f"{band} magnitude (bin centre)")


def binned(data: pd.DataFrame, order: list[str], out_dir: Path, name: str, title: str, caption: str,
           xlabel: str) -> Plot:
    """Binned metrics (rows: variant, seed, test_set, reference, lo, hi, n, metric, metric_lo/_hi) as lines
    with error bars per strategy, one row of panels per (test set, reference), the last panel the bin counts."""
    if data.empty:
        return Plot(name, title, "", None, "no binned metrics to draw")
    columns = [c for m, _ in BINNED for c in (m, f"{m}_lo", f"{m}_hi")]
    mean = data.groupby(["variant", "test_set", "reference", "lo", "hi"], as_index=False) \
        .agg({**{c: "mean" for c in columns}, "n": "first"})
    mean["x"] = (mean["lo"] + mean["hi"]) / 2
    rows = [(t, r) for t in _test_sets(mean) for r in sorted(set(mean.loc[mean["test_set"] == t, "reference"]))]
    variants = [v for v in order if v in set(mean["variant"])]
    palette = strategy_palette(set(order) | set(mean["variant"]))
    with theme()[0], theme()[1]:
        fig = Figure(figsize=(16, 0.6 + 3.3 * len(rows)), layout="constrained")
        axes = fig.subplots(len(rows), len(BINNED) + 1, squeeze=False, sharex=True)
        for i, (test_set, reference) in enumerate(rows):
            part = mean[(mean["test_set"] == test_set) & (mean["reference"] == reference)]
            where = f"{TEST_SET_NAMES.get(test_set, test_set)} vs {'label' if reference == 'label' else 'true z'}"
            for j, (metric, label) in enumerate(BINNED):
                ax = axes[i, j]
                for variant in variants:
                    line = part[part["variant"] == variant].sort_values("x")
                    v, lo, hi = (line[c].to_numpy(dtype=float) for c in (metric, f"{metric}_lo", f"{metric}_hi"))
                    ax.errorbar(line["x"], v, yerr=_errors(v, lo, hi), marker=strategy_marker(variant), markersize=5,
                                capsize=2, color=palette[variant], linewidth=1.2,
                                linestyle=strategy_linestyle(variant))
                if metric == "bias":
                    ax.axhline(0.0, color="black", linewidth=0.8)
                ax.set_ylabel(label)
                ax.set_title(f"{where}: {label}", fontsize=10)
            counts = part.drop_duplicates(["lo", "hi"]).sort_values("x")
            ax = axes[i, -1]
            ax.bar(counts["x"], counts["n"], width=(counts["hi"] - counts["lo"]) * 0.9, color="#bbbbbb")
            ax.set_ylim(bottom=0)
            ax.set_ylabel("galaxies per bin")
            ax.set_title(f"{where}: bin counts", fontsize=10)
        for ax in axes[-1, :]:
            ax.set_xlabel(xlabel)
        strategy_legend(fig, variants, palette, lines=True)
        fig.suptitle(title)
        return Plot(name, title, caption, save_png(fig, out_dir, name))
