"""`zpeft tune SUITE`: choose the base model's and every trained strategy's learning rate per regime on validation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zpeft.conventions import DEFAULT_WORKERS
from zpeft.run.executors import EXECUTORS


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `tune` subcommand."""
    from zpeft.run.tuning import DEFAULT_GRID

    p = subparsers.add_parser(
        "tune", help="pick each strategy's learning rate from one grid by validation loss; write them into the suite",
        description="Trains the base model at each rate of the grid and keeps the rate of lowest photo-z validation "
                    "loss; then, from that base, runs every trained strategy variant of SUITE at each rate, for "
                    "every data fraction (first seed, the suite's training rule, each regime validated on its own "
                    "thinned validation split), keeps per variant and fraction the rate of lowest validation loss "
                    "(never a test label), writes tuning.md and tuning.csv to the report directory and the chosen "
                    "rates (per fraction, and the base model's) into the suite file.")
    p.add_argument("suite", help="shipped suite name or path of a suite TOML file")
    p.add_argument("--grid", default=",".join(f"{g:g}" for g in DEFAULT_GRID),
                   help="comma-separated learning rates (default %(default)s)")
    p.add_argument("--out", default=None, help="results directory of the tuning runs (default results/<suite>-tuning)")
    p.add_argument("--report", default=None, help="where tuning.md/csv go (default reports/<suite>-tuning)")
    p.add_argument("--no-write", action="store_true", help="report the chosen rates but leave the suite file as it is")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the suite's)")
    p.add_argument("--executor", choices=EXECUTORS.names(), default="local", help="as for `zpeft run`")
    p.add_argument("--workers", type=int, default=None, help=f"processes for --executor process (default {DEFAULT_WORKERS})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=tune_command)
    return p


def parse_grid(text: str) -> tuple[float, ...]:
    """The rates of `--grid`; ValueError naming the bad item."""
    out = []
    for item in text.split(","):
        try:
            out.append(float(item))
        except ValueError:
            raise ValueError(f"--grid: {item.strip()!r} is not a number") from None
    return tuple(out)


def tune_command(args: argparse.Namespace) -> int:
    """Exit status 0 when rates were chosen for the base and every variant in every regime, 1 when some had no
    usable run."""
    from zpeft.cli import fail
    from zpeft.run.suite import SuiteError, find_suite, load_suite

    try:
        grid = parse_grid(args.grid)
        suite = load_suite(args.suite)
        from zpeft.run.tuning import base_tuning_suites, check_grid, needs_base

        check_grid(grid)
    except ValueError as err:  # SuiteError included
        return fail("tune", err)
    import math

    import pandas as pd

    from zpeft.run.layout import ResultsLayout
    from zpeft.run.records import read_records
    from zpeft.run.runner import plan_suite, run_plan
    from zpeft.run.tuning import choose_rates, tuning_markdown, tuning_suite, tuning_table, write_rates

    out = Path(args.out) if args.out else Path("results") / f"{suite.name}-tuning"
    report = Path(args.report) if args.report else Path("reports") / f"{suite.name}-tuning"
    run_options = dict(device=args.device or suite.device, executor=args.executor, workers=args.workers,
                       progress=not args.no_progress)
    tables, base_lr = [], None
    try:
        if needs_base(suite):  # stage 1: the base model's rate, on photo-z validation loss
            suites, runs = base_tuning_suites(suite, grid)
            planned = [p for s in suites for p in plan_suite(s, progress=False)]
            summary = run_plan(f"{suite.name}-tuning-base", suite.source, planned, out, **run_options)
            print(summary.text())
            current = set(summary.run_ids)
            base_table = tuning_table([r for r in read_records(out) if r.run_id in current], runs,
                                      ResultsLayout(out).bases)
            base_choice = choose_rates(base_table)
            base_lr = float(base_choice["lr"].iloc[0])
            if math.isnan(base_lr):
                print("zpeft tune: the base model failed at every rate; nothing more is tuned", file=sys.stderr)
                return 1
            print(f"base model: lr {base_lr:g} (lowest photo-z validation loss)")
            tables.append(base_table)
        tuned, runs = tuning_suite(suite, grid, base_lr)  # stage 2: every variant per regime, from that base
        summary = run_plan(tuned.name, suite.source, plan_suite(tuned, progress=False), out, **run_options)
    except (SuiteError, RuntimeError, ValueError) as err:
        return fail("tune", err)
    print(summary.text())
    current = set(summary.run_ids)
    tables.append(tuning_table([r for r in read_records(out) if r.run_id in current], runs))
    table = pd.concat(tables, ignore_index=True)
    chosen = choose_rates(table)
    report.mkdir(parents=True, exist_ok=True)
    table.to_csv(report / "tuning.csv", index=False)
    (report / "tuning.md").write_text(tuning_markdown(suite.name, grid, table, chosen))
    print(chosen.to_string(index=False))
    print(f"wrote {report / 'tuning.md'} and {report / 'tuning.csv'}")
    if chosen["lr"].map(math.isnan).any():
        print("zpeft tune: some variant failed at every rate; the suite file is left as it is", file=sys.stderr)
        return 1
    if not args.no_write:
        path = write_rates(find_suite(args.suite), suite, chosen, grid)
        print(f"wrote the chosen rates into {path}")
    return 0
