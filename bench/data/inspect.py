"""A look at a dataset pair: a table of counts and redshift ranges, and a figure of cutouts and n(z)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from astropy.visualization import simple_norm
from matplotlib.figure import Figure

from zpeft.data.checks import raise_problems
from zpeft.data.registry import FileSource, is_pair, load_pair, pair_sources, source_format
from zpeft.data.types import SPLITS, DatasetPair, concat

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def summarise(path_or_pair: str | Path | DatasetPair) -> pd.DataFrame:
    """One row per set and split: count, bands, image size, label quantiles, median i mag, true z.

    A path (pair directory, description or single file) is summarised from its columns without
    reading the pixels; a name is loaded through the registry.
    """
    if isinstance(path_or_pair, DatasetPair):
        rows = [_row(kind, split, s.images.shape, s.z, s.z_true, s.mags)
                for kind, splits in (("photo", path_or_pair.photo), ("spec", path_or_pair.spec))
                for split, s in splits.items()]
        return pd.DataFrame(rows)
    path = Path(path_or_pair)
    if is_pair(path):
        _, _, sources = pair_sources(path)
        files = [(kind, split, source) for kind, splits in sources.items() for split, source in splits.items()]
    elif path.exists():
        files = [(path.name, "", FileSource(path, None, source_format(path)))]
    else:
        return summarise(load_pair(str(path_or_pair)))
    rows = []
    for kind, split, source in files:
        scan = source.scan("skip")
        raise_problems(scan.problems)
        rows.append(_row(kind, split, scan.shape, scan.z, scan.z_true, scan.mags))
    return pd.DataFrame(rows)


def _row(kind: str, split: str, shape: tuple[int, ...], z: np.ndarray, z_true: np.ndarray | None,
         mags: dict[str, np.ndarray]) -> dict:
    quantiles = np.quantile(z, QUANTILES)
    i_mag = mags.get("i")
    return {
        "set": kind, "split": split, "count": len(z), "bands": shape[1], "image_size": f"{shape[2]}x{shape[3]}",
        "z_min": float(z.min()), **{f"z_p{round(100 * q):02d}": float(v) for q, v in zip(QUANTILES, quantiles)},
        "z_max": float(z.max()),
        "i_mag_median": float(np.nanmedian(i_mag)) if i_mag is not None and np.isfinite(i_mag).any() else np.nan,
        "has_z_true": z_true is not None,
        "z_true_median": float(np.median(z_true)) if z_true is not None else np.nan,
    }


def plot_examples(pair: DatasetPair | str | Path, out_png: str | Path, *, n_per_set: int = 2,
                  bands: tuple[str, ...] = ("g", "r", "i", "z", "y")) -> Path:
    """Save a figure: example cutouts per band (asinh stretch) and the z distributions of both sets.

    Examples are test-set galaxies at spread-out label quantiles, so low and high z both show.
    """
    if not isinstance(pair, DatasetPair):
        pair = load_pair(str(pair))
    examples = []
    for kind, test in (("photo", pair.photo["test"]), ("spec", pair.spec["test"])):
        order = np.argsort(test.z)
        for q in np.linspace(0.2, 0.8, n_per_set):
            row = order[int(q * (len(order) - 1))]
            examples.append((f"{kind} z={test.z[row]:.2f}", test.images.read([row])[0].astype(np.float32)))
    n_bands = examples[0][1].shape[0]
    names = list(bands[:n_bands]) + [f"ch{c}" for c in range(len(bands), n_bands)]

    fig = Figure(figsize=(2.0 * max(n_bands, 4), 2.0 * len(examples) + 3.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.0 * len(examples), 3.5])
    axes = top.subplots(len(examples), n_bands, squeeze=False)
    for r, (title, image) in enumerate(examples):
        norm = simple_norm(image, stretch="asinh", percent=99.5)  # one scale per galaxy keeps its colours
        for c, ax in enumerate(axes[r]):
            ax.imshow(image[c], origin="lower", cmap="gray", norm=norm)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(names[c])
            if c == 0:
                ax.set_ylabel(title, fontsize=8)
    for ax, which in zip(bottom.subplots(1, 2), ("label z", "true z")):
        _plot_nz(ax, pair, which)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png


def _plot_nz(ax, pair: DatasetPair, which: str) -> None:
    frames = []
    for kind, splits in (("photo-z set", pair.photo), ("spec-z set", pair.spec)):
        full = concat([splits[s] for s in SPLITS], name=kind)
        z = full.z if which == "label z" else full.z_true
        if z is not None:
            frames.append(pd.DataFrame({"z": z.astype(np.float64), "set": kind}))
    ax.set_xlabel(which)
    if not frames:
        ax.text(0.5, 0.5, "true z unknown", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        return
    data = pd.concat(frames, ignore_index=True)
    sns.histplot(data, x="z", hue="set", stat="density", common_norm=False, element="step",
                 bins=np.linspace(0, max(1.0, float(data.z.max())), 50), ax=ax)
    ax.set_title(f"{which} distribution ({pair.name})")
