"""Learning-rate tuning with one budget for all: every trained strategy, the same grid, chosen on validation.

`tuning_suite` turns a suite into one run per (strategy variant, rate) at the suite's epoch budget,
one seed and the full training data; `choose_rates` picks, per variant, the rate with the lowest
best validation loss (the loss early stopping watches, on the validation split of the set the
strategy trains on), never reading a test label; `write_rates` puts the chosen rates into the
suite file with a comment saying how they were chosen.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pandas as pd

from zpeft import strategies
from zpeft.markdown import markdown_table
from zpeft.run.records import RunRecord
from zpeft.run.suite import StrategySpec, Suite, SuiteError, load_suite

DEFAULT_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # five log-spaced rates spanning every class default
FLAT_WITHIN = 0.01  # rates whose validation loss is within 1 % of the best count as "on the flat optimum"


@dataclass(frozen=True)
class TuningRun:
    """What one tuning run stands for: the suite variant it tunes and the rate it tries."""

    variant: str  # the display label in the tuned suite, e.g. "lora-r4"
    spec: StrategySpec  # the single-variant entry (grid axes fixed), without lr
    lr: float


def rate_tag(lr: float) -> str:
    """The label suffix of a tuning run at `lr`, e.g. `lr3e-04`."""
    return f"lr{lr:.0e}"


def single_variant_specs(spec: StrategySpec) -> list[tuple[str, StrategySpec]]:
    """One entry per grid combination of `spec`, each with a one-value grid: (display label, entry).

    Combinations come in `StrategySpec.expand`'s order (itertools.product over the grid), so labels line up.
    """
    keys = list(spec.grid)
    combos = itertools.product(*(spec.grid[k] for k in keys))
    return [(label, replace(spec, grid={k: (v,) for k, v in zip(keys, values)}, lr=None, lr_grid=()))
            for (_, label), values in zip(spec.expand(), combos)]


def trains(spec: StrategySpec) -> bool:
    """False for strategies with no rate to tune: they train nothing (zero-shot) or their rate is their protocol
    (paper-tl, which reproduces the reference paper's lr 1e-8)."""
    first = {k: v[0] for k, v in spec.grid.items()}
    strategy = strategies.create(spec.name, **first)
    return strategy.trains_on != "none" and not strategy.rate_is_protocol


def tuning_suite(suite: Suite, grid: tuple[float, ...] = DEFAULT_GRID) -> tuple[Suite, dict[str, TuningRun]]:
    """The suite that tunes `suite`: first seed, largest data fraction, each trained variant at every rate.

    Returns it and, per tuning-run label, what that run stands for.
    """
    if not grid or any(not (math.isfinite(lr) and lr > 0) for lr in grid):
        raise ValueError(f"learning-rate grid must be positive finite numbers, got {list(grid)}")
    if len(set(grid)) != len(grid):
        raise ValueError(f"learning-rate grid has repeated values: {list(grid)}")
    specs, runs = [], {}
    for spec in suite.strategies:
        if not trains(spec):
            continue
        for variant, single in single_variant_specs(spec):
            for lr in grid:
                tag = f"{spec.tag}-{rate_tag(lr)}" if spec.tag else rate_tag(lr)
                tuned = replace(single, lr=lr, tag=tag)
                label = tuned.expand()[0][1]
                runs[label] = TuningRun(variant, single, lr)
                specs.append(tuned)
    if not specs:
        raise ValueError(f"suite {suite.name!r} has no strategy that trains: nothing to tune")
    tuned_suite = replace(suite, name=f"{suite.name}-tuning", seeds=(suite.seeds[0],),
                          data_fractions=(max(suite.data_fractions),), strategies=tuple(specs))
    return tuned_suite, runs


def best_val_loss(record: RunRecord) -> float:
    """The lowest validation loss of a run's epochs; inf for a failed run or one without history."""
    if record.status != "ok":
        return math.inf
    losses = [h.get("val_loss") for h in record.history if h.get("val_loss") is not None]
    finite = [v for v in losses if math.isfinite(v)]
    return min(finite) if finite else math.inf


def tuning_table(records: list[RunRecord], runs: dict[str, TuningRun]) -> pd.DataFrame:
    """One row per (dataset, backbone, variant, rate): best validation loss, epochs run, early stop, status."""
    rows = []
    for record in records:
        run = runs.get(record.label)
        if run is None:
            continue
        rows.append({"dataset": record.dataset, "backbone": record.backbone, "variant": run.variant, "lr": run.lr,
                     "val_loss": best_val_loss(record), "epochs": record.epochs, "best_epoch": record.best_epoch,
                     "max_epochs": record.train_settings.get("epochs"),
                     "stopped_early": record.epochs < (record.train_settings.get("epochs") or 0),
                     "status": record.status, "error": record.error or ""})
    if not rows:
        raise ValueError("no tuning runs in the results: run the tuning suite first")
    return pd.DataFrame(rows).sort_values(["dataset", "backbone", "variant", "lr"]).reset_index(drop=True)


def choose_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant, the rate of lowest validation loss (mean over datasets and backbones of loss / best loss).

    With several datasets or backbones a variant still gets one rate (a suite entry has one), chosen by
    the mean relative loss so no pair dominates by scale. `flat` counts the rates within FLAT_WITHIN
    of the best; `at_edge` flags an optimum on the grid's edge (the grid may be too narrow).
    """
    frame = table.copy()
    best = frame.groupby(["dataset", "backbone", "variant"])["val_loss"].transform("min")
    frame["relative"] = frame["val_loss"] / best
    mean = frame.groupby(["variant", "lr"])["relative"].mean().reset_index()
    out = []
    grid = sorted(frame["lr"].unique())
    for variant, part in mean.groupby("variant", sort=False):
        if not part["relative"].map(math.isfinite).any():
            out.append({"variant": variant, "lr": math.nan, "flat": 0, "at_edge": False,
                        "note": "every rate failed or diverged"})
            continue
        pick = part.loc[part["relative"].idxmin()]
        flat = int((part["relative"] <= pick["relative"] * (1 + FLAT_WITHIN)).sum())
        at_edge = pick["lr"] in (grid[0], grid[-1])
        out.append({"variant": variant, "lr": float(pick["lr"]), "flat": flat, "at_edge": bool(at_edge),
                    "note": "optimum at the grid's edge" if at_edge else ""})
    return pd.DataFrame(out)


def tuning_markdown(suite_name: str, grid: tuple[float, ...], table: pd.DataFrame, chosen: pd.DataFrame) -> str:
    """The tuning report: how rates were chosen, the chosen rate per variant and the full val-loss grid."""
    wide = table.pivot_table(index=["dataset", "backbone", "variant"], columns="lr", values="val_loss")
    wide.columns = [f"lr {c:g}" for c in wide.columns]
    lines = [f"# Learning-rate tuning: {suite_name}", "",
             f"Every trained strategy variant ran at each rate of the grid {', '.join(f'{g:g}' for g in grid)} "
             "with the suite's own epoch budget and early stopping, one seed and the full training data. The rate "
             "kept is the one with the lowest best validation loss (HSC loss on the validation split of the set "
             "the strategy trains on: spec-z for fine-tuning strategies, the combined set for `combined`); no "
             f"test galaxy is read. `flat` counts the rates within {FLAT_WITHIN:.0%} of the best loss (1 = a sharp "
             "optimum); `at edge` flags a best rate on the grid's edge, where a wider grid might do better.", "",
             "## Chosen rates", "", markdown_table(chosen), "", "## Best validation loss per rate", "",
             markdown_table(wide.reset_index().round(5)), "",
             f"Runs that ended by early stopping: {int(table['stopped_early'].sum())} of {len(table)}.", ""]
    failed = table[table["status"] != "ok"]
    if not failed.empty:
        lines += ["## Failed runs", "", markdown_table(failed[["variant", "lr", "error"]]), ""]
    return "\n".join(lines)


def tuned_suite_text(text: str, suite: Suite, chosen: dict[str, float], comment: str,
                     grid: tuple[float, ...] = ()) -> str:
    """`text` of a suite file with its `[[strategies]]` entries rewritten, one per variant, each with its rate.

    Entries of trained strategies are split into one per grid combination (a rate per LoRA rank);
    untuned ones (zero-shot, paper-tl) are kept as they are. Everything outside the strategies entries is kept verbatim.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("[[strategies]]")]
    if not starts:
        raise SuiteError(f"suite {suite.name!r}: no [[strategies]] entries to write rates into")
    end = next((i for i in range(starts[0] + 1, len(lines)) if lines[i].strip().startswith("[")
                and not lines[i].strip().startswith("[[strategies]]")), len(lines))
    if any(not lines[i].strip().startswith("[[strategies]]") and lines[i].strip().startswith("[")
           for i in range(starts[0], end)):
        raise SuiteError(f"suite {suite.name!r}: the [[strategies]] entries are not contiguous")
    body = [f"# {line}" for line in textwrap.wrap(comment, 110)]  # `comment`: one paragraph, wrapped
    for spec in suite.strategies:
        if not trains(spec):
            body += ["", *_entry(spec, None)]
            continue
        for variant, single in single_variant_specs(spec):
            lr = chosen.get(variant)
            if lr is None or not math.isfinite(lr):
                raise SuiteError(f"no tuned rate for {variant!r}: tune every trained variant before writing")
            body += ["", *_entry(single, lr, grid)]
    head = lines[:starts[0]]
    while head and not head[-1].strip():
        head.pop()
    return "\n".join([*head, "", *body, "", *lines[end:]]).rstrip("\n") + "\n"


def _entry(spec: StrategySpec, lr: float | None, grid: tuple[float, ...] = ()) -> list[str]:
    """The TOML lines of one entry: `lr` with the grid it was tuned on, or the entry's own rate when `lr` is None."""
    out = ["[[strategies]]", f'name = "{spec.name}"']
    if spec.grid:
        items = ", ".join(f"{k} = [{', '.join(_toml_value(v) for v in values)}]" for k, values in spec.grid.items())
        out.append(f"grid = {{ {items} }}")
    if lr is None:
        lr, grid = spec.lr, spec.lr_grid
    if lr is not None:
        out.append(f"lr = {lr!r}")
    if lr is not None and grid:
        out.append(f"lr_grid = [{', '.join(repr(float(g)) for g in grid)}]")
    if spec.tag:
        out.append(f'tag = "{spec.tag}"')
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_rates(path: str | Path, suite: Suite, chosen: pd.DataFrame, grid: tuple[float, ...]) -> Path:
    """Rewrite the suite file at `path` with the chosen rates; the result is validated before it replaces the file."""
    from zpeft.run.atomic import atomic_write_text

    path = Path(path)
    comment = (f"Learning rates chosen by `zpeft tune {suite.name}` on {date.today().isoformat()}: for each variant "
               f"the rate of lowest validation loss on the grid {', '.join(f'{g:g}' for g in grid)}, one seed, this "
               f"suite's epoch budget (never test labels); see reports/{suite.name}-tuning/tuning.md.")
    rates = dict(zip(chosen["variant"], chosen["lr"]))
    text = tuned_suite_text(path.read_text(), suite, rates, comment, grid)
    check = path.with_name(f".{path.stem}.check.toml")
    check.write_text(text)
    try:
        load_suite(check)
    finally:
        check.unlink()
    atomic_write_text(path, text)
    return path
