"""The report's calibration section: are each strategy's conformal error bars honest, overall and on faint galaxies?

Reads only the records' `uncertainty` blocks (zpeft.uncertainty.runs.score_tests): coverage of the
68 % and 95 % intervals against nominal per strategy and per i-magnitude bin, width against
coverage, and PIT histograms, for the spec-z test set against its labels (the intervals are
calibrated on spec-z validation labels, so that is the claim they make).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zpeft.report import plots
from zpeft.report.render import Block
from zpeft.run.records import RunRecord
from zpeft.uncertainty import LEVELS

TEST_SET, REFERENCE = "spec", "label"
TAGS = tuple(round(100 * level) for level in LEVELS)


def calibration_frame(records: list[RunRecord], run_ids: set[str] | None = None) -> pd.DataFrame:
    """One row per (ok run with error bars, variant, bin): run_id, label, seed, variant, bin kind, lo, hi, n,
    coverage_*, width_*, and for whole-set rows pit_ks, crps and pit_hist; each (dataset, backbone)'s largest
    fraction only, unless `run_ids` names the runs to keep (one regime of the answer box)."""
    rows = []
    for r in records:
        block = (r.uncertainty or {}).get(TEST_SET) if r.status == "ok" else None
        if not block or (run_ids is not None and r.run_id not in run_ids):
            continue
        for variant, by_ref in block.items():
            scores = by_ref.get(REFERENCE)
            if not scores:
                continue
            base = {"run_id": r.run_id, "dataset": r.dataset, "backbone": r.backbone, "label": r.label,
                    "seed": r.seed, "data_fraction": r.data_fraction, "variant": variant}
            rows.append({**base, "bins": "all", "lo": np.nan, "hi": np.nan,
                         **{k: v for k, v in scores.items() if k not in ("z_bins", "mag_bins")}})
            for kind in ("z_bins", "mag_bins"):
                rows += [{**base, "bins": kind, **b} for b in scores.get(kind, [])]
    frame = pd.DataFrame(rows)
    if frame.empty or run_ids is not None:
        return frame
    largest = frame.groupby(["dataset", "backbone"])["data_fraction"].transform("max")
    return frame[frame["data_fraction"] == largest].reset_index(drop=True)


def calibration_section(records: list[RunRecord], out_dir: str | Path) -> list[Block]:
    """Blocks of the calibration section (heading, text, tables, plots written into `out_dir`)."""
    blocks = [Block("h2", "Calibration of error bars"),
              Block("p", "Every run's split-conformal intervals (zpeft.uncertainty), calibrated on its own spec-z "
                         "validation predictions and scored on the spec-z test set against its labels. `marginal` "
                         "calibrates all galaxies together; `mondrian` calibrates each i-magnitude bin on its own, "
                         "so faint galaxies are covered as often as bright ones. A calibrated system covers 68 % and "
                         "95 % of galaxies and has a flat PIT histogram (KS near 0); at equal coverage, narrower "
                         "intervals and lower CRPS are better. `calibration bins` gives the validation galaxies "
                         "per magnitude bin: with fewer than 39 in a bin, its 95 % intervals span the whole "
                         "redshift range.")]
    frame = calibration_frame(records)
    if frame.empty:
        return blocks + [Block("p", "No run recorded error bars (records written before zpeft.uncertainty).")]
    whole = frame[frame["bins"] == "all"]
    blocks.append(Block("table", table=_summary_table(whole)))
    mags = frame[frame["bins"] == "mag_bins"]
    if not mags.empty:
        blocks += [Block("h3", "Coverage per i-magnitude bin"),
                   Block("p", "Bins are quartiles of the spec-z test set's i magnitudes (the last is the faintest); "
                              "mean over seeds."),
                   Block("table", table=_magnitude_table(mags))]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = list(dict.fromkeys(whole["label"]))
    blocks += [Block("plot", plot=_coverage_plot(frame, order, out_dir)),
               Block("plot", plot=_pit_plot(whole, order, out_dir))]
    return blocks


def _mean_std(values: pd.Series, fmt: str = ".3f") -> str:
    v = values.dropna().to_numpy(dtype=float)
    if not v.size:
        return "-"
    return f"{v.mean():{fmt}}" + (f" ± {v.std(ddof=1):{fmt}}" if v.size > 1 else "")


def _summary_table(whole: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (label, variant), part in whole.groupby(["label", "variant"], sort=False):
        row = {"strategy": label, "variant": variant, "seeds": part["seed"].nunique()}
        for tag in TAGS:
            row[f"coverage_{tag}"] = _mean_std(part[f"coverage_{tag}"])
        for tag in TAGS:
            row[f"width_{tag}"] = _mean_std(part[f"width_{tag}"])
        row.update(pit_ks=_mean_std(part["pit_ks"]), crps=_mean_std(part["crps"], ".4f"),
                   **{"calibration bins": "/".join(str(n) for n in part["calibration_bins"].iloc[0])})
        rows.append(row)
    return pd.DataFrame(rows)


def _magnitude_table(mags: pd.DataFrame) -> pd.DataFrame:
    mean = mags.groupby(["label", "variant", "lo", "hi"], sort=False, as_index=False)[
        [f"coverage_{t}" for t in TAGS]].mean()
    mean["bin"] = [f"i {lo:.1f}-{hi:.1f}" for lo, hi in zip(mean["lo"], mean["hi"])]
    cells = mean.assign(value=[" / ".join(f"{row[f'coverage_{t}']:.2f}" for t in TAGS) for _, row in mean.iterrows()])
    table = cells.pivot_table(index=["label", "variant"], columns="bin", values="value", aggfunc="first", sort=False)
    table.columns.name = None
    table = table.reset_index().rename(columns={"label": "strategy"})
    table.insert(2, "coverage", " / ".join(f"{t} %" for t in TAGS))
    return table


def _coverage_plot(frame: pd.DataFrame, order: list[str], out_dir: Path) -> plots.Plot:
    """Coverage against i-magnitude bin (one panel per level and variant) and width against coverage."""
    name, title = "calibration_coverage", "Coverage of the conformal intervals"
    caption = ("Left panels: coverage per i-magnitude bin (bin centres; spec-z test set against its labels, mean "
               "over seeds) for each level and variant, nominal dashed. Right: mean 95 % interval width against "
               "95 % coverage, one marker per run (circle marginal, square Mondrian).")
    mags = frame[frame["bins"] == "mag_bins"]
    whole = frame[frame["bins"] == "all"]
    variants = sorted(frame["variant"].unique())
    palette = plots.strategy_palette(order)
    with plots.theme()[0], plots.theme()[1]:
        fig = Figure(figsize=(4.2 * (len(TAGS) * len(variants) + 1), 3.8), layout="constrained")
        axes = fig.subplots(1, len(TAGS) * len(variants) + 1, squeeze=False)[0]
        for k, (tag, variant) in enumerate((t, v) for t in TAGS for v in variants):
            ax = axes[k]
            part = mags[mags["variant"] == variant].groupby(["label", "lo", "hi"], as_index=False)[
                f"coverage_{tag}"].mean()
            for label in order:
                line = part[part["label"] == label].sort_values("lo")
                ax.plot((line["lo"] + line["hi"]) / 2, line[f"coverage_{tag}"], marker="o", color=palette[label],
                        label=label)
            ax.axhline(tag / 100, color="black", linestyle="--", linewidth=1)
            ax.set_xlabel("i magnitude (bin centre)")
            ax.set_ylabel(f"coverage of the {tag} % interval")
            ax.set_title(f"{variant}, {tag} %", fontsize=10)
        ax = axes[-1]
        for variant, marker in zip(variants, "os"):
            part = whole[whole["variant"] == variant]
            ax.scatter(part["coverage_95"], part["width_95"], marker=marker,
                       c=[palette[label] for label in part["label"]], s=30)
        ax.axvline(0.95, color="black", linestyle="--", linewidth=1)
        ax.set_xlabel("coverage of the 95 % interval")
        ax.set_ylabel("mean 95 % interval width (z)")
        ax.set_title("width against coverage", fontsize=10)
        axes[0].legend(fontsize=7)
        path = plots.save_png(fig, out_dir, name)
    return plots.Plot(name, title, caption, path)


def _pit_plot(whole: pd.DataFrame, order: list[str], out_dir: Path) -> plots.Plot:
    """PIT histograms, one panel per strategy, each variant a step line (mean over seeds)."""
    name, title = "calibration_pit", "PIT histograms"
    caption = ("Share of spec-z test galaxies per PIT bin (the conformal predictive CDF at the label), mean over "
               "seeds; flat at the dotted line when calibrated, U-shaped when intervals are too narrow, "
               "hump-shaped when too wide.")
    palette = {"marginal": "#4477aa", "mondrian": "#cc6677"}
    columns = min(4, len(order))
    rows = -(-len(order) // columns)
    with plots.theme()[0], plots.theme()[1]:
        fig = Figure(figsize=(3.6 * columns, 2.8 * rows), layout="constrained")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, label in zip(axes, order):
            for variant, part in whole[whole["label"] == label].groupby("variant"):
                hist = np.mean(np.stack([np.asarray(h, dtype=float) for h in part["pit_hist"]]), axis=0)
                edges = np.linspace(0, 1, len(hist) + 1)
                ax.stairs(hist, edges, color=palette.get(variant, "grey"), label=variant)
                ax.axhline(1 / len(hist), color="black", linestyle=":", linewidth=1)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("PIT")
        for ax in axes[len(order):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7)
        path = plots.save_png(fig, out_dir, name)
    return plots.Plot(name, title, caption, path)


def faint_verdict(records: list[RunRecord], label: str, run_ids: set[str] | None = None) -> str:
    """One sentence for the report's answer box: are `label`'s intervals calibrated on the faintest galaxies?

    Uses the variant the catalogues carry (Mondrian where there is one) on the faintest i-magnitude
    quartile of the spec-z test set, pooled over seeds; "calibrated" when both coverages lie within
    two binomial standard errors of nominal, counted on the bin's galaxies once (seeds share the test
    galaxies, so their runs are not independent draws). `run_ids`: the regime's runs (default: each dataset and
    backbone's largest spec-z fraction).
    """
    frame = calibration_frame(records, run_ids)
    part = frame[(frame["label"] == label) & (frame["bins"] == "mag_bins")] if not frame.empty else frame
    if part.empty:
        return f"{label}: no error bars per i-magnitude bin recorded."
    variant = "mondrian" if "mondrian" in set(part["variant"]) else "marginal"
    part = part[part["variant"] == variant]
    faint = part[part["lo"] == part["lo"].max()]
    n, runs = int(faint["n"].sum()), faint["run_id"].nunique()
    galaxies = n / runs
    parts, ok, tolerances = [], True, []
    for tag in TAGS:
        nominal = tag / 100
        covered = float((faint[f"coverage_{tag}"] * faint["n"]).sum() / n)
        tolerance = 2 * np.sqrt(nominal * (1 - nominal) / galaxies)
        ok &= abs(covered - nominal) <= tolerance
        parts.append(f"{covered:.0%} for the {tag} % intervals")
        tolerances.append(f"±{100 * tolerance:.1f} points at {tag} %")
    lo, hi = faint["lo"].iloc[0], faint["hi"].iloc[0]
    return (f"{label}'s {variant} error bars cover {' and '.join(parts)} of the faintest spec-z test galaxies "
            f"(i {lo:.1f}-{hi:.1f}, {galaxies:,.0f} galaxies x {runs} run(s)): "
            + ("calibrated on faint galaxies" if ok else "not calibrated on faint galaxies")
            + f" (two standard errors: {', '.join(tolerances)})."
            + ("" if ok else " Use the intervals on faint galaxies with care."))
