"""Peak host memory and preparation time of the data path against the number of galaxies.

Each (size, storage) is measured in a fresh process (`python -m zpeft.perf.memory PAIR`), so one
measurement's allocations cannot hide in another's: it reads the pair, prepares it (fits the
preprocessing, builds the combined set), reads every training batch of the combined set once,
as an epoch does, and predicts nothing (the model's memory does not grow with the survey). Its
peak resident memory (ru_maxrss) is compared with the float16 size of the pair's images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from zpeft.markdown import markdown_table

GIB = 2**30


@dataclass
class MemoryRow:
    """One measured (pair size, storage asked)."""

    galaxies: int
    storage: str  # asked: auto, memory or stream
    chosen: str  # what the pair used: memory or stream
    image_gib: float  # all images of the pair at float16
    prepare_s: float  # read + prepare (checksums, pixel checks, preprocessing fit)
    epoch_s: float  # one pass over every training batch of the combined set
    peak_gib: float  # peak resident memory of the process
    baseline_gib: float  # resident memory after importing torch and zpeft, before the data

    @property
    def ratio(self) -> float:
        return self.peak_gib / self.image_gib


def probe(pair_dir: str | Path, storage: str, crop: int | None, batch: int) -> dict:
    """Prepare the pair and read one epoch of combined-set batches in this process; times and peak memory."""
    import torch

    from zpeft.data.registry import read_pair
    from zpeft.run.prepared import prepare_data
    from zpeft.training.batches import batches
    from zpeft.training.device import peak_memory_mb

    cpu = torch.device("cpu")
    baseline = peak_memory_mb(cpu)[0] / 1024
    start = time.perf_counter()
    data = prepare_data(read_pair(pair_dir, storage=storage), crop=crop)
    prepared = time.perf_counter()
    inputs = data.inputs("combined", "train")
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(0))
    seen = sum(len(y) for _, y in batches(inputs, order, batch, cpu))
    finished = time.perf_counter()
    pixels = sum(int(np.prod(s.images.shape)) for s in (*data.pair.photo.values(), *data.pair.spec.values()))
    return {"storage": storage, "chosen": data.storage, "image_gib": 2 * pixels / GIB,
            "prepare_s": prepared - start, "epoch_s": finished - prepared, "rows_read": seen,
            "peak_gib": peak_memory_mb(cpu)[0] / 1024, "baseline_gib": baseline}


def measure(sizes: list[int], workdir: str | Path, storages: list[str], *, size: int = 64, crop: int | None = None,
            batch: int = 256, progress: bool = True) -> list[MemoryRow]:
    """Write (or reuse) a synthetic pair of each size under `workdir` and probe it with each storage."""
    from zpeft.data.synthetic import write_synthetic_pair

    rows = []
    for n in sizes:
        pair = Path(workdir) / f"synthetic-{n}-{size}"
        if not (pair / "manifest.json").is_file():
            write_synthetic_pair(pair, n, size=size, progress=progress)
        for storage in storages:
            command = [sys.executable, "-m", "zpeft.perf.memory", str(pair), "--storage", storage,
                       "--batch", str(batch)] + ([] if crop is None else ["--crop", str(crop)])
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"memory probe of {pair} ({storage}) failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(MemoryRow(galaxies=n, **{k: v for k, v in result.items() if k != "rows_read"}))
            if progress:
                print(f"{n} galaxies, {storage}: {rows[-1]}", file=sys.stderr)
    return rows


def growth(rows: list[MemoryRow]) -> dict[str, tuple[float, float]]:
    """Per storage used: least-squares peak GiB = a + b * (galaxies / 100k), as (a, b)."""
    fits = {}
    for chosen in sorted({r.chosen for r in rows}):
        mine = [r for r in rows if r.chosen == chosen]
        if len({r.galaxies for r in mine}) >= 2:
            slope, intercept = np.polyfit([r.galaxies / 1e5 for r in mine], [r.peak_gib for r in mine], 1)
            fits[chosen] = (float(intercept), float(slope))
    return fits


def plot_memory(rows: list[MemoryRow], path: str | Path) -> Path:
    """Peak memory against galaxies, one line per storage used, beside the float16 size of the images."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    table = pd.DataFrame([asdict(r) for r in rows])
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(table, x="galaxies", y="peak_gib", hue="chosen", style="storage", markers=True, ax=ax)
    sizes = table.drop_duplicates("galaxies").sort_values("galaxies")
    ax.plot(sizes.galaxies, sizes.image_gib, "k--", lw=1, label="float16 images")
    ax.plot(sizes.galaxies, 1.5 * sizes.image_gib, "k:", lw=1, label="1.5 x images")
    ax.set(xlabel="galaxies in the pair", ylabel="peak resident memory (GiB)",
           title="host memory: data preparation and one epoch of batches")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return Path(path)


def render_section(rows: list[MemoryRow], meta: dict, figure: str | None = None) -> str:
    """The PERFORMANCE.md section of a memory run: table, fitted growth, and how it was measured."""
    import pandas as pd

    table = pd.DataFrame([{**asdict(r), "peak / images": r.ratio} for r in rows])
    fits = growth(rows)
    lines = ["<!-- perf:host_memory -->", "## Host memory of the data path against survey size (CPU)", "",
             f"- date: {meta['date']}", f"- command: `{meta['command']}`", f"- machine: {meta['machine']}",
             "- each row is a fresh process: read + prepare the pair, then one pass over every training batch of "
             "the combined set; `peak_gib` is its max RSS, `image_gib` the float16 size of all the pair's images, "
             "`baseline_gib` the RSS after imports",
             "- the preprocessing fit reads up to 4,096 photo-z training images at float32 (0.3 GiB at 64 x 64, "
             "freed before training): a constant that grows with the photo-z training set up to that cap", ""]
    lines += [markdown_table(table.round(3)), "", "Fitted growth (least squares over the sizes measured):", ""]
    lines += [f"- {chosen}: peak = {a:.2f} GiB + {b:.3f} GiB per 100k galaxies (the float16 images are "
              f"{rows[0].image_gib / rows[0].galaxies * 1e5:.2f} GiB per 100k)" for chosen, (a, b) in fits.items()]
    if figure:
        lines += ["", f"![peak memory against galaxies]({figure})"]
    lines += ["", "<!-- /perf:host_memory -->", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one memory probe (run by zpeft perf --memory)")
    parser.add_argument("pair")
    parser.add_argument("--storage", default="auto")
    parser.add_argument("--crop", type=int, default=None)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.pair, args.storage, args.crop, args.batch)))


if __name__ == "__main__":
    main()
