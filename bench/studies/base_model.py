"""Which choices decide the base model's quality: one factor at a time from the quick suite's base, on validation.

Each configuration trains one base model exactly as `zpeft run` does (`zpeft.run.cell.train_base`, seed 0,
the photo-z training set, early stopping on the photo-z validation set) and is scored on validation sets
only: its best photo-z validation loss (the HSC loss early stopping watches: the selection rule) and its
zero-shot sigma_nmad and |bias| on the spec-z validation set. No test split is read.

    python -m zpeft.studies.base_model --out reports/base-model-study [--workers 2] [--dataset sim-quick]

After the one-factor rows, an "all best factors" row combines each factor's level of lowest validation
loss, when that differs from the reference in two factors or more (one factor is already a row).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import sys
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zpeft.data.registry import DATASETS, load_pair, unknown_dataset
from zpeft.markdown import markdown_table

BACKBONE = "cnn-small"
SEED = 0
SUITE = "quick"
# Levels per factor, the reference's included; every other level is one row, all else as the reference.
LEVELS: dict[str, tuple] = {
    "width": (16, 24, 32),
    "crop": (32, 48),
    "epochs": (10, 20),
    "batch_size": (64, 128),
    "photo_fraction": (1.0, 0.5),
}
_SETTINGS_FACTORS = ("epochs", "batch_size")
_PHOTO_STREAM = 0xBA5E  # the photo-z subsample's random stream, apart from training's (which uses the seed)

NOT_STUDIED = """\
- **Photo-z set size (larger).** The simulated presets fix the photo-z area (`quick`: 0.11 deg^2, about 22.5k
  photo-z galaxies, 13.5k of them in training) and the loader's only size option, `max_rows`, keeps the first
  rows of *every* split, validation sets included, so validation losses would not be comparable across rows. A
  larger photo-z set needs a new, larger preset simulated from scratch (not cached; far beyond this study's
  budget). The study has the cheap half of the question instead: the row `photo_fraction 0.5` trains on a seeded
  half of the photo-z training set (validation sets unchanged, preprocessing fitted on that half). If halving
  costs little validation loss, set size is not what limits the base model; if it costs much, a larger preset is
  the experiment to run next.
- **Colour-preserving shared stretch.** `zpeft.data.preprocess.Preprocessor` stretches each band with its own
  sky sigma, arcsinh(x / 3 sigma_band), then standardises each band with its own mean and std; it has no option
  for one stretch shared by all bands. Its fields are what `model.json`, `preprocessing.json` and the exported
  `model.pt2` carry, so a shared stretch is a change to the preprocessing and export format (with its own
  tests), not a study row."""


@dataclass(frozen=True)
class BaseConfig:
    """One base model to train: a row of the study."""

    name: str  # row label: "reference", "width 32", ...
    factor: str  # what differs from the reference: a LEVELS key, "reference" or "all best factors"
    width: int
    crop: int | None
    settings: object  # zpeft.training.settings.TrainSettings, lr resolved (kept untyped: importing it loads torch)
    photo_fraction: float = 1.0

    def level(self, factor: str):
        """This configuration's value of `factor`."""
        if factor in _SETTINGS_FACTORS:
            return getattr(self.settings, factor)
        return getattr(self, factor)

    def with_level(self, factor: str, value, name: str | None = None, as_factor: str | None = None) -> BaseConfig:
        """The same configuration with `factor` set to `value`."""
        label = f"{factor} {value:g}" if isinstance(value, float) else f"{factor} {value}"
        changes = {"name": name or label, "factor": as_factor or factor}
        if factor in _SETTINGS_FACTORS:
            changes["settings"] = replace(self.settings, **{factor: value})
        else:
            changes[factor] = value
        return replace(self, **changes)


def reference_config(suite: str = SUITE) -> tuple[BaseConfig, str, dict]:
    """The suite's base model as a configuration, with the suite's first dataset name and options."""
    from zpeft.backbones import BACKBONES
    from zpeft.run.plan import BASE_LR
    from zpeft.run.suite import load_suite

    loaded = load_suite(suite)
    if BACKBONE not in [b.name for b in loaded.backbones]:
        raise ValueError(f"suite {suite!r} has no {BACKBONE} backbone; this study varies {BACKBONE}'s width")
    width = inspect.signature(BACKBONES.get(BACKBONE)).parameters["width"].default
    config = BaseConfig("reference", "reference", width=width, crop=loaded.crop, settings=loaded.base.with_lr(BASE_LR))
    dataset = loaded.datasets[0]
    return config, dataset.name, dict(dataset.options)


def one_factor_configs(reference: BaseConfig, levels: dict[str, tuple] = LEVELS) -> list[BaseConfig]:
    """The reference, then one row per level that differs from it, everything else kept."""
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown factors {unknown}; known: {', '.join(LEVELS)}")
    rows = [reference]
    for factor, values in levels.items():
        rows += [reference.with_level(factor, v) for v in values if v != reference.level(factor)]
    return rows


def best_combination(table: pd.DataFrame, configs: list[BaseConfig]) -> BaseConfig | None:
    """Each factor at its level of lowest photo-z validation loss (reference row included), when that differs
    from the reference in two factors or more; None otherwise (a single factor is already a row)."""
    by_name = {c.name: c for c in configs}
    ok = table[np.isfinite(table["photo_val_loss"].astype(float))]
    if "reference" not in set(ok["config"]):
        return None
    reference = by_name["reference"]
    combined = reference
    changed = []
    for factor in LEVELS:
        rows = ok[ok["factor"].isin(["reference", factor])]
        best = by_name[rows.loc[rows["photo_val_loss"].astype(float).idxmin(), "config"]]
        if best.level(factor) != reference.level(factor):
            combined = combined.with_level(factor, best.level(factor))
            changed.append(f"{factor} {best.level(factor):g}")
    if len(changed) < 2:
        return None
    return replace(combined, name="all best factors", factor="all best factors")


# --- one training, in whichever process runs it ------------------------------------------------------------------

_DATA: dict[tuple, object] = {}  # the last prepared data of this process: (dataset, options, crop, fraction) -> data


def prepared_for(dataset: str, options: dict, crop: int | None, photo_fraction: float):
    """The dataset prepared as `zpeft run` prepares it, with a seeded share of the photo-z training set."""
    from zpeft.data.types import DatasetPair
    from zpeft.run.prepared import prepare_data

    key = (dataset, json.dumps(options, sort_keys=True), crop, photo_fraction)
    if key not in _DATA:
        _DATA.clear()
        pair = load_pair(dataset, **options)
        if photo_fraction < 1.0:
            train = pair.photo["train"]
            keep = round(photo_fraction * len(train))
            if keep < 1:
                raise ValueError(f"photo_fraction {photo_fraction:g} of {len(train)} photo-z galaxies keeps none")
            rows = np.sort(np.random.default_rng([SEED, _PHOTO_STREAM]).permutation(len(train))[:keep])
            pair = DatasetPair(pair.name, {**pair.photo, "train": train.subset(rows)}, pair.spec, pair.meta)
        _DATA[key] = prepare_data(pair, crop=crop)
    return _DATA[key]


def train_config(config: BaseConfig, dataset: str, options: dict, device: str = "auto",
                 threads: int | None = None) -> dict:
    """Train `config`'s base model and score it on the validation sets: one row of the study (never raises)."""
    import torch

    from zpeft import backbones
    from zpeft.metrics import point_metrics
    from zpeft.run.cell import train_base
    from zpeft.training.device import resolve_device
    from zpeft.training.loop import predict

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    row = describe(config) | {"threads": torch.get_num_threads()}
    try:
        data = prepared_for(dataset, options, config.crop, config.photo_fraction)
        dev = resolve_device(device)
        model, result = train_base(BACKBONE, data, config.settings, device=dev, seed=SEED, progress=False,
                                   backbone_options={"width": config.width})
        spec_val = data.sets["spec", "val"]
        scores = point_metrics(predict(model, data.inputs("spec", "val"), dev, config.settings.eval_batch_size),
                               spec_val.z)
        row |= dict(photo_train_n=len(data.sets["photo", "train"]), spec_val_n=len(spec_val),
                    trainable_params=backbones.count_parameters(model, trainable_only=True),
                    train_seconds=result.train_seconds, epochs_run=result.epochs_run, best_epoch=result.best_epoch,
                    ended_by=result.ended_by, photo_val_loss=result.best_val_loss,
                    spec_val_sigma_nmad=scores["sigma_nmad"], spec_val_abs_bias=abs(scores["bias"]),
                    spec_val_outlier_015=scores["outlier_015"], error="")
    except Exception as err:  # one failed configuration is a row saying why; the study goes on
        row |= dict(photo_val_loss=math.nan, error=f"{type(err).__name__}: {err}",
                    traceback=traceback.format_exc())
    finally:
        torch.set_num_threads(before)
    return row


def describe(config: BaseConfig) -> dict:
    """The settings of a row, as table columns."""
    s = config.settings
    return dict(config=config.name, factor=config.factor, width=config.width,
                crop="none" if config.crop is None else config.crop, epochs=s.epochs, batch_size=s.batch_size,
                lr=s.lr, patience=s.patience, photo_fraction=config.photo_fraction)


# --- the study ---------------------------------------------------------------------------------------------------

@dataclass
class StudyResult:
    """Every row, the chosen one and what the study cost."""

    table: pd.DataFrame
    chosen: str | None  # name of the row of lowest photo-z validation loss (None when every row failed)
    seconds: float
    dataset: str
    workers: int
    combination: str  # what became of the "all best factors" row, in a sentence


def check_dataset(dataset: str) -> None:
    """ValueError naming the known datasets when `dataset` is neither a built-in nor an existing pair."""
    problem = unknown_dataset(dataset)
    if problem is None and dataset not in DATASETS and not Path(dataset).exists():
        problem = f"dataset {dataset!r}: no such pair directory or description"
    if problem is not None:
        raise ValueError(problem)


def run_configs(configs: list[BaseConfig], dataset: str, options: dict, *, workers: int, device: str,
                threads: int | None, desc: str) -> list[dict]:
    """Train every configuration, `workers` at a time; one worker (or one configuration) runs in this process.

    Workers come from the runner's pool (zpeft.run.executors.worker_pool), with cores // (trainings at once)
    torch threads each: several single-threaded trainings beat one multi-threaded one on a small CPU.
    """
    from zpeft.run.executors import cpu_cores, worker_pool

    parallel = max(1, min(workers, len(configs)))
    threads = threads or max(1, cpu_cores() // parallel)
    rows = []
    with tqdm(total=len(configs), desc=desc, unit="model", file=sys.stderr) as bar:
        def finished(row: dict) -> None:
            rows.append(row)
            note = row["error"] or f"val loss {row['photo_val_loss']:.4f}, {row['train_seconds']:.0f} s"
            bar.write(f"{row['config']}: {note}", file=sys.stderr)
            if row.get("traceback"):
                bar.write(row["traceback"], file=sys.stderr)
            bar.update()

        if parallel == 1:
            for config in configs:
                finished(train_config(config, dataset, options, device, threads))
        else:
            # Longest first (more pixels, wider, longer), so the pool does not end on one long training.
            order = sorted(configs, key=lambda c: -(c.width ** 2 * (c.crop or 64) ** 2 * c.settings.epochs))
            with worker_pool(parallel, threads) as pool:
                futures = {pool.submit(train_config, c, dataset, options, device, threads): c for c in order}
                for future in as_completed(futures):
                    try:
                        finished(future.result())
                    except Exception as err:  # the worker died (killed, out of memory): the row says so
                        finished(describe(futures[future]) | dict(photo_val_loss=math.nan,
                                                                  error=f"worker died: {type(err).__name__}: {err}"))
    names = [c.name for c in configs]
    return sorted(rows, key=lambda r: names.index(r["config"]))


def run_study(configs: list[BaseConfig], dataset: str, options: dict | None = None, *, workers: int = 2,
              device: str = "auto", threads: int | None = None, combine: bool = True) -> StudyResult:
    """The one-factor rows, then (`combine`) the "all best factors" row; the chosen row by validation loss."""
    check_dataset(dataset)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    names = [c.name for c in configs]
    if len(set(names)) != len(names) or "reference" not in names:
        raise ValueError(f"configurations need unique names and one named 'reference', got {names}")
    options = dict(options or {})
    start = time.perf_counter()
    rows = run_configs(configs, dataset, options, workers=workers, device=device, threads=threads,
                       desc="one factor at a time")
    table = pd.DataFrame(rows)
    combination = "not asked for"
    if combine:
        best = best_combination(table, configs)
        if best is None:
            combination = ("not run: the best level of every factor but at most one is the reference's, so it would "
                           "repeat a row already in the table")
        else:
            changed = [f"{f} {best.level(f)}" for f in LEVELS if best.level(f) != configs[0].level(f)]
            combination = f"run with {', '.join(changed)} (each factor's level of lowest validation loss)"
            extra = run_configs([best], dataset, options, workers=workers, device=device, threads=threads,
                                desc="all best factors")
            table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
    losses = table["photo_val_loss"].astype(float)
    chosen = None if not np.isfinite(losses).any() else str(table.loc[losses.idxmin(), "config"])
    table["chosen"] = table["config"] == chosen
    return StudyResult(table, chosen, time.perf_counter() - start, dataset, workers, combination)


# --- outputs -----------------------------------------------------------------------------------------------------

CSV_COLUMNS = ["config", "factor", "width", "crop", "epochs", "batch_size", "lr", "patience", "photo_fraction",
               "photo_train_n", "trainable_params", "threads", "train_seconds", "epochs_run", "best_epoch",
               "ended_by", "photo_val_loss", "spec_val_n", "spec_val_sigma_nmad", "spec_val_abs_bias",
               "spec_val_outlier_015", "chosen", "error"]


def write_study(result: StudyResult, out: Path) -> list[Path]:
    """study.csv (every column) and study.md (the table, what varied, the rule and the choice) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    table = result.table.reindex(columns=CSV_COLUMNS)
    csv_path, md_path = out / "study.csv", out / "study.md"
    table.to_csv(csv_path, index=False)
    md_path.write_text(study_markdown(result))
    return [csv_path, md_path]


def _fmt(value, spec: str) -> str:
    try:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def study_markdown(result: StudyResult) -> str:
    """The study as Markdown: header, selection rule, choice, cost, table, failures, what is not in it."""
    t = result.table.reindex(columns=CSV_COLUMNS)
    ref = t[t["config"] == "reference"].iloc[0]

    def column(name: str, spec: str) -> list[str]:
        return [_fmt(v, spec) for v in t[name]]

    shown = pd.DataFrame({
        "configuration": [f"**{c}**" if chosen else c for c, chosen in zip(t["config"], t["chosen"])],
        "width": t["width"], "crop": t["crop"],
        "epochs run / budget": [f"{r} / {b}" for r, b in zip(column("epochs_run", ".0f"), t["epochs"])],
        "best epoch": column("best_epoch", ".0f"), "ended by": t["ended_by"].fillna(""),
        "batch": t["batch_size"], "photo-z train": column("photo_train_n", ".0f"),
        "trainable params": column("trainable_params", ",.0f"), "train s": column("train_seconds", ".0f"),
        "photo-z val loss": column("photo_val_loss", ".4f"),
        "spec-z val sigma_nmad": column("spec_val_sigma_nmad", ".4f"),
        "spec-z val abs(bias)": column("spec_val_abs_bias", ".4f"),
    })
    s = ref
    lines = [
        f"# Base-model study: {BACKBONE} on {result.dataset}",
        "",
        f"What varied: one factor at a time from the `reference` row (from the command line: the {SUITE} "
        f"suite's base model): width {s['width']}, crop {s['crop']}, epochs {s['epochs']}, batch_size "
        f"{s['batch_size']}, photo_fraction {s['photo_fraction']:g} (of the photo-z training set), lr {s['lr']:g}, "
        f"patience {s['patience']}. Levels tried: " + "; ".join(
            f"{f} {' / '.join(levels)}" for f, levels in _levels_tried(t).items()) + ". "
        f"Every row is one base model, seed {SEED}, trained by `zpeft.run.cell.train_base` on the photo-z "
        "training set with early stopping on the photo-z validation set, as `zpeft run` trains it.",
        "",
        "Selection rule: the lowest photo-z validation loss (the HSC loss early stopping watches, at the best "
        "epoch). The spec-z validation columns (zero-shot sigma_nmad and |bias| against the spec-z labels) are "
        "there to read, not to choose by. No test split was read.",
        "",
        f"Chosen: **{result.chosen}**" + (
            "" if result.chosen is None else
            f" (photo-z val loss {_chosen(t, 'photo_val_loss')} against the reference's "
            f"{_fmt(ref['photo_val_loss'], '.4f')}; spec-z val sigma_nmad {_chosen(t, 'spec_val_sigma_nmad')} "
            f"against {_fmt(ref['spec_val_sigma_nmad'], '.4f')})") + ".",
        "",
        f"All best factors: {result.combination}.",
        "",
        f"The study took {result.seconds / 60:.1f} min (wall clock) with {result.workers} worker(s); `train s` "
        "is each training's own time, with the torch threads in study.csv, while the other workers' trainings "
        "shared the CPU.",
        "",
        markdown_table(shown),
    ]
    failed = t[t["error"].fillna("").astype(str) != ""]
    if len(failed):
        lines += ["", "Failed configurations:", ""] + [f"- {c}: {e}" for c, e in zip(failed["config"],
                                                                                    failed["error"])]
    lines += ["", "## Not in the study", "", NOT_STUDIED, ""]
    return "\n".join(lines)


def _levels_tried(table: pd.DataFrame) -> dict[str, list[str]]:
    """Factor -> the reference's level, then each other level a one-factor row tried."""
    ref = table[table["factor"] == "reference"].iloc[0]
    out = {}
    for factor in LEVELS:
        rows = table[table["factor"] == factor]
        if len(rows):
            out[factor] = [f"{v:g}" if isinstance(v, float) else str(v) for v in [ref[factor], *rows[factor]]]
    return out


def _chosen(table: pd.DataFrame, column: str) -> str:
    return _fmt(table.loc[table["chosen"].astype(bool), column].iloc[0], ".4f")


# --- command line ------------------------------------------------------------------------------------------------

def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m zpeft.studies.base_model", description=__doc__.split("\n\n")[0],
        epilog="Writes study.csv and study.md into --out.")
    p.add_argument("--out", type=Path, required=True, help="directory for study.csv and study.md")
    p.add_argument("--workers", type=int, default=2, help="trainings at once, each in its own process "
                                                         "(default %(default)s; 1: in this process)")
    p.add_argument("--dataset", default=None, help=f"dataset name or path (default: the {SUITE} suite's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    return p.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    """Exit 0 when every configuration trained, 1 when some failed, 2 on bad input."""
    args = parse_args(argv)
    try:
        reference, dataset, options = reference_config()
        if args.dataset is not None and args.dataset != dataset:
            dataset, options = args.dataset, {}
        result = run_study(one_factor_configs(reference), dataset, options, workers=args.workers, device=args.device)
    except ValueError as err:
        print(f"base-model study: {err}", file=sys.stderr)
        return 2
    for path in write_study(result, args.out):
        print(path)
    return 1 if (result.table["error"].fillna("").astype(str) != "").any() else 0


if __name__ == "__main__":
    sys.exit(main())
