"""`zpeft tune SUITE`: choose every trained strategy's learning rate on validation, with one budget for all."""

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
        description="Runs every trained strategy variant of SUITE at each rate of the grid (first seed, full "
                    "training data, the suite's epoch budget), keeps per variant the rate of lowest validation "
                    "loss (never a test label), writes tuning.md and tuning.csv to the report directory and the "
                    "chosen rates, one entry per variant, into the suite file.")
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
    """Exit status 0 when rates were chosen for every variant, 1 when some variant had no usable run."""
    from zpeft.cli import fail
    from zpeft.run.suite import SuiteError, find_suite, load_suite

    try:
        grid = parse_grid(args.grid)
        suite = load_suite(args.suite)
        from zpeft.run.tuning import tuning_suite

        tuned, runs = tuning_suite(suite, grid)
    except ValueError as err:  # SuiteError included
        return fail("tune", err)
    import math

    from zpeft.run.records import read_records
    from zpeft.run.runner import run_suite
    from zpeft.run.tuning import choose_rates, tuning_markdown, tuning_table, write_rates

    out = Path(args.out) if args.out else Path("results") / tuned.name
    report = Path(args.report) if args.report else Path("reports") / tuned.name
    try:
        summary = run_suite(tuned, out, device=args.device, executor=args.executor, workers=args.workers,
                            progress=not args.no_progress)
    except (SuiteError, RuntimeError) as err:
        return fail("tune", err)
    print(summary.text())
    current = set(summary.run_ids)
    table = tuning_table([r for r in read_records(out) if r.run_id in current], runs)
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
