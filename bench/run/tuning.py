"""Learning-rate tuning with one grid for all: the base model first, then every trained variant per regime.

Stage 1 (`base_tuning_suites`): the base model trained at every grid rate (one zero-shot run
each, so the base models land in the results directory's store), the rate of lowest photo-z
validation loss kept; `combined`, which replaces the base, trains with the same section and gets
its own rate in stage 2. Stage 2 (`tuning_suite`): with the chosen base, every trained variant at
every rate, for every data fraction of the suite, on the first seed, each regime validated on its
own thinned validation split (`run.prepared.with_fraction`). `choose_rates` keeps, per variant and
fraction, the rate of lowest best validation loss (the loss the stopping rule watches), never
reading a test label; `write_rates` writes them into the suite file, per fraction, with the grid.
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
from zpeft.conventions import STOPPING_RULE
from zpeft.markdown import markdown_table
from zpeft.run.records import RunRecord
from zpeft.run.suite import StrategySpec, Suite, SuiteError, load_suite

DEFAULT_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # five log-spaced rates; widen it where an optimum sits on an edge
FLAT_WITHIN = 0.01  # rates whose validation loss is within 1 % of the best count as "on the flat optimum"
BASE_VARIANT = "base"  # the variant name of the base model's rows in the tuning table


@dataclass(frozen=True)
class TuningRun:
    """What one tuning run stands for: the suite variant it tunes and the rate it tries."""

    variant: str  # the display label in the tuned suite, e.g. "lora-r4"; BASE_VARIANT for the base model
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


def needs_base(suite: Suite) -> bool:
    """True when some strategy of the suite starts from the base model (whose rate stage 1 tunes)."""
    return any(strategy.starts_from == "base" for spec in suite.strategies for strategy, _ in spec.expand())


def check_grid(grid: tuple[float, ...]) -> None:
    if not grid or any(not (math.isfinite(lr) and lr > 0) for lr in grid):
        raise ValueError(f"learning-rate grid must be positive finite numbers, got {list(grid)}")
    if len(set(grid)) != len(grid):
        raise ValueError(f"learning-rate grid has repeated values: {list(grid)}")


def base_tuning_suites(suite: Suite, grid: tuple[float, ...] = DEFAULT_GRID) -> tuple[list[Suite], dict[str, TuningRun]]:
    """Stage 1: one zero-shot suite per grid rate, each training the base model at that rate (first seed).

    Returns the suites (to run together into one results directory) and, per run label, what it stands for.
    """
    check_grid(grid)
    suites, runs = [], {}
    for lr in grid:
        spec = StrategySpec("zero-shot", tag=f"base-{rate_tag(lr)}")
        runs[spec.expand()[0][1]] = TuningRun(BASE_VARIANT, spec, lr)
        suites.append(replace(suite, name=f"{suite.name}-tuning", seeds=(suite.seeds[0],), data_fractions=(1.0,),
                              base=replace(suite.base, lr=lr), base_lr_grid=(), strategies=(spec,)))
    return suites, runs


def tuning_suite(suite: Suite, grid: tuple[float, ...] = DEFAULT_GRID,
                 base_lr: float | None = None) -> tuple[Suite, dict[str, TuningRun]]:
    """Stage 2: first seed, every data fraction, each trained variant at every rate, from the base at `base_lr`.

    Returns it and, per tuning-run label, what that run stands for.
    """
    check_grid(grid)
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
    base = suite.base if base_lr is None else replace(suite.base, lr=base_lr)
    tuned_suite = replace(suite, name=f"{suite.name}-tuning", seeds=(suite.seeds[0],), base=base, base_lr_grid=(),
                          strategies=tuple(specs))
    return tuned_suite, runs


def best_val_loss(history: list[dict], status: str = "ok") -> float:
    """The lowest validation loss of a training's epochs (epoch 0, the start, included); inf if failed or empty."""
    if status != "ok":
        return math.inf
    losses = [h.get("val_loss") for h in history if h.get("val_loss") is not None]
    finite = [v for v in losses if math.isfinite(v)]
    return min(finite) if finite else math.inf


def tuning_table(records: list[RunRecord], runs: dict[str, TuningRun], bases_dir: Path | None = None) -> pd.DataFrame:
    """One row per (dataset, backbone, variant, data fraction, rate): best validation loss, epochs, how it ended.

    Base-model rows (stage 1) read the base model's own training from the store in `bases_dir`.
    """
    from zpeft.run.basestore import BaseStore
    from zpeft.run.records import config_hash

    rows = []
    for record in records:
        run = runs.get(record.label)
        if run is None:
            continue
        row = {"dataset": record.dataset, "backbone": record.backbone, "variant": run.variant, "lr": run.lr,
               "data_fraction": record.data_fraction}
        if run.variant == BASE_VARIANT:
            result = None
            if record.status == "ok" and bases_dir is not None:
                result = BaseStore(bases_dir).result(config_hash(record.config["base"]))
            if result is None:
                row |= {"val_loss": math.inf, "epochs": 0, "best_epoch": 0, "ended_by": "", "status": "failed",
                        "error": record.error or "base model not found"}
            else:
                row |= {"val_loss": best_val_loss(result.history), "epochs": result.epochs_run,
                        "best_epoch": result.best_epoch, "ended_by": result.ended_by, "status": "ok", "error": ""}
        else:
            row |= {"val_loss": best_val_loss(record.history, record.status), "epochs": record.epochs,
                    "best_epoch": record.best_epoch, "ended_by": record.ended_by, "status": record.status,
                    "error": record.error or ""}
        rows.append(row)
    if not rows:
        raise ValueError("no tuning runs in the results: run the tuning suite first")
    keys = ["dataset", "backbone", "variant", "data_fraction", "lr"]
    return pd.DataFrame(rows).sort_values(keys).reset_index(drop=True)


def choose_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant and data fraction, the rate of lowest validation loss (mean over datasets and backbones of
    loss / best loss).

    With several datasets or backbones a variant still gets one rate per fraction (a suite entry has one),
    chosen by the mean relative loss so no pair dominates by scale. `flat` counts the rates within
    FLAT_WITHIN of the best; `at_edge` flags an optimum on the grid's edge (the grid may be too narrow), except
    where no rate beat the starting weights (every run at the chosen rate kept its epoch 0: ties broken towards the
    lowest rate), which the note says instead.
    """
    frame = table.copy()
    if "data_fraction" not in frame:
        frame["data_fraction"] = 1.0
    regime = ["variant", "data_fraction"]
    best = frame.groupby(["dataset", "backbone", *regime])["val_loss"].transform("min")
    frame["relative"] = frame["val_loss"] / best
    mean = frame.groupby([*regime, "lr"])["relative"].mean().reset_index()
    out = []
    for (variant, fraction), part in mean.groupby(regime, sort=False):
        grid = sorted(part["lr"].unique())
        if not part["relative"].map(math.isfinite).any():
            out.append({"variant": variant, "data_fraction": fraction, "lr": math.nan, "flat": 0, "at_edge": False,
                        "note": "every rate failed or diverged"})
            continue
        pick = part.loc[part["relative"].idxmin()]
        flat = int((part["relative"] <= pick["relative"] * (1 + FLAT_WITHIN)).sum())
        at_start = frame[(frame["variant"] == variant) & (frame["data_fraction"] == fraction)
                         & (frame["lr"] == pick["lr"])]
        no_gain = "best_epoch" in at_start and bool(len(at_start)) and bool((at_start["best_epoch"] == 0).all()) \
            and variant != BASE_VARIANT
        at_edge = pick["lr"] in (grid[0], grid[-1]) and not no_gain
        note = ("no rate beat the starting weights (best epoch 0): the run keeps its start whatever the rate"
                if no_gain else "optimum at the grid's edge" if at_edge else "")
        out.append({"variant": variant, "data_fraction": fraction, "lr": float(pick["lr"]), "flat": flat,
                    "at_edge": bool(at_edge), "note": note})
    return pd.DataFrame(out)


def tuning_markdown(suite_name: str, grid: tuple[float, ...], table: pd.DataFrame, chosen: pd.DataFrame) -> str:
    """The tuning report: how rates were chosen, the chosen rate per variant and regime, the full val-loss grid."""
    wide = table.pivot_table(index=["dataset", "backbone", "variant", "data_fraction"], columns="lr",
                             values="val_loss")
    wide.columns = [f"lr {c:g}" for c in wide.columns]
    ended = table[table["variant"] != BASE_VARIANT]
    lines = [f"# Learning-rate tuning: {suite_name}", "",
             f"Grid: {', '.join(f'{g:g}' for g in grid)}, the same for every variant and regime. First the base "
             "model was trained at every rate and the rate of lowest photo-z validation loss kept (the `base` rows). "
             "Then, from that base, every trained strategy variant ran at every rate for every data fraction "
             "(regime), with the suite's own training rule (warm-up, plateau rate cuts, stopping when validation "
             "stops improving; the epoch cap a safety limit), one seed. Each regime is validated on its own "
             "validation split, thinned as its training split is, and keeps the rate with the lowest best "
             "validation loss (HSC loss on the validation split of the set the strategy trains on: spec-z for "
             "fine-tuning strategies, the combined set for `combined`; epoch 0, the starting weights, included). "
             "No test galaxy is read. "
             f"`flat` counts the rates within {FLAT_WITHIN:.0%} of the best loss (1 = a sharp optimum); `at edge` "
             "flags a best rate on the grid's edge, where a wider grid might do better.", "",
             "## Chosen rates", "", markdown_table(chosen), "", "## Best validation loss per rate", "",
             markdown_table(wide.reset_index().round(5)), "",
             f"Trained runs (every variant, base models aside) that ended by the stopping rule: "
             f"{int((ended['ended_by'] == STOPPING_RULE).sum())} of {len(ended)}; fine-tunes that kept their "
             f"starting weights (best epoch 0): {int(((ended['best_epoch'] == 0) & (ended['status'] == 'ok')).sum())}; "
             f"failed: {int((ended['status'] != 'ok').sum())}.", ""]
    failed = table[table["status"] != "ok"]
    if not failed.empty:
        last_line = failed["error"].map(lambda e: (str(e).strip().splitlines() or [""])[-1])
        lines += ["## Failed runs", "", markdown_table(failed[["variant", "data_fraction", "lr"]].assign(error=last_line)),
                  ""]
    return "\n".join(lines)


def tuned_suite_text(text: str, suite: Suite, chosen: dict[str, dict[float, float]], comment: str,
                     grid: tuple[float, ...] = (), base_lr: float | None = None) -> str:
    """`text` of a suite file with its `[[strategies]]` entries rewritten, one per variant, each with its rates.

    `chosen`: variant -> {data fraction: rate}. Entries of trained strategies are split into one per grid
    combination (a rate per LoRA rank); untuned ones (zero-shot, paper-tl) are kept as they are. With
    `base_lr`, `[training.base]` gets `lr` and `lr_grid`. Everything else is kept verbatim.
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
            rates = chosen.get(variant, {})
            missing = [f for f in spec.fractions(suite.data_fractions)
                       if not any(math.isclose(f, g, rel_tol=1e-9) and math.isfinite(r) for g, r in rates.items())]
            if missing:
                raise SuiteError(f"no tuned rate for {variant!r} at data fraction(s) {missing}: tune every trained "
                                 "variant in every regime before writing")
            body += ["", *_entry(single, rates, grid)]
    head = lines[:starts[0]]
    while head and not head[-1].strip():
        head.pop()
    out = [*head, "", *body, "", *lines[end:]]
    if base_lr is not None:
        out = _with_base_rate(out, base_lr, grid)
    return "\n".join(out).rstrip("\n") + "\n"


def _with_base_rate(lines: list[str], lr: float, grid: tuple[float, ...]) -> list[str]:
    """`lines` with `lr` and `lr_grid` set in `[training.base]` (the section added when missing)."""
    try:
        at = next(i for i, line in enumerate(lines) if line.split("#")[0].strip() == "[training.base]")
    except StopIteration:
        lines = [*lines, "", "[training.base]"]
        at = len(lines) - 1
    end = next((i for i in range(at + 1, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    keep = [line for line in lines[at + 1:end] if line.split("=")[0].strip() not in ("lr", "lr_grid")]
    new = [f"lr = {lr!r}                     # tuned: lowest photo-z validation loss on lr_grid (zpeft tune)",
           f"lr_grid = [{', '.join(repr(float(g)) for g in grid)}]"]
    return [*lines[:at + 1], *new, *keep, *lines[end:]]


def _entry(spec: StrategySpec, rates: dict[float, float] | None, grid: tuple[float, ...] = ()) -> list[str]:
    """The TOML lines of one entry: tuned rates per data fraction with their grid, or the entry's own rate."""
    out = ["[[strategies]]", f'name = "{spec.name}"']
    if spec.grid:
        items = ", ".join(f"{k} = [{', '.join(_toml_value(v) for v in values)}]" for k, values in spec.grid.items())
        out.append(f"grid = {{ {items} }}")
    lr, lr_grid = (rates, grid) if rates is not None else (spec.lr, spec.lr_grid)
    if isinstance(lr, dict):
        out.append("lr = { " + ", ".join(f'"{f:g}" = {r!r}' for f, r in sorted(lr.items())) + " }")
    elif lr is not None:
        out.append(f"lr = {lr!r}")
    if lr is not None and lr_grid:
        out.append(f"lr_grid = [{', '.join(repr(float(g)) for g in lr_grid)}]")
    if spec.tag:
        out.append(f'tag = "{spec.tag}"')
    if spec.data_fractions:
        out.append(f"data_fractions = [{', '.join(repr(f) for f in spec.data_fractions)}]")
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_rates(path: str | Path, suite: Suite, chosen: pd.DataFrame, grid: tuple[float, ...]) -> Path:
    """Rewrite the suite file at `path` with the chosen rates (per variant and fraction; the base's when tuned);
    the result is validated before it replaces the file."""
    from zpeft.run.atomic import atomic_write_text

    path = Path(path)
    comment = (f"Learning rates chosen by `zpeft tune {suite.name}` on {date.today().isoformat()}: the base model's "
               f"rate first (lowest photo-z validation loss), then for each variant and each data fraction the rate "
               f"of lowest validation loss on that regime's own (thinned) validation split, all from the grid "
               f"{', '.join(f'{g:g}' for g in grid)}, one seed, this suite's training rule (never test labels); see "
               f"reports/{suite.name}-tuning/tuning.md.")
    rates: dict[str, dict[float, float]] = {}
    base_lr = None
    for row in chosen.itertuples():
        if row.variant == BASE_VARIANT:
            base_lr = float(row.lr)
        else:
            rates.setdefault(row.variant, {})[float(row.data_fraction)] = float(row.lr)
    text = tuned_suite_text(path.read_text(), suite, rates, comment, grid, base_lr)
    check = path.with_name(f".{path.stem}.check.toml")
    check.write_text(text)
    try:
        load_suite(check)
    finally:
        check.unlink()
    atomic_write_text(path, text)
    return path
