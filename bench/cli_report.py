"""`zpeft report` and `zpeft compare`: tables and plots from finished runs, and the regression check."""

from __future__ import annotations

import argparse
import sys

from bench.compare import DEFAULT_TOLERANCES


def add_parser(subparsers) -> None:
    """Add the `report` and `compare` subcommands to the top-level parser's subparsers."""
    p = subparsers.add_parser("report", help="results.csv, report.md, report.html and plots from a results directory")
    p.add_argument("results_dir", help="directory of run records (*.json) written by `zpeft run`")
    p.add_argument("-o", "--output", required=True, help="directory to write the report into")
    p.add_argument("--significance-level", type=float, default=0.95,
                   help="central level of the paired-bootstrap intervals behind the n.s. marks (default 0.95)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per paired comparison")
    p.set_defaults(func=report_command)

    defaults = ", ".join(f"{k}={v:g}" for k, v in DEFAULT_TOLERANCES.items())
    p = subparsers.add_parser("compare", help="check a new results.csv against a baseline; exit 1 on a regression",
                              description="Timings are never checked. Missing runs in NEW are a regression; "
                                          "runs only in NEW are listed, not failed.")
    p.add_argument("baseline", help="baseline results.csv")
    p.add_argument("new", help="new results.csv")
    p.add_argument("--tolerance", action="append", default=[], metavar="METRIC=VALUE",
                   help=f"absolute tolerance, repeatable; defaults: {defaults}")
    p.add_argument("--test-set", action="append", default=[], metavar="NAME",
                   help="check only these test sets (spec, photo, combined); repeatable")
    p.add_argument("--all", action="store_true", help="print every checked row, not only the regressions")
    p.set_defaults(func=compare_command)


def report_command(args: argparse.Namespace) -> int:
    from bench.report import build_report

    try:
        path = build_report(args.results_dir, args.output, significance_level=args.significance_level,
                            n_boot=args.n_boot)
    except (FileNotFoundError, ValueError) as err:
        print(f"zpeft report: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (and report.md, results.csv, plots) in {path.parent}")
    return 0


def compare_command(args: argparse.Namespace) -> int:
    from bench.compare import compare_tables, format_report, parse_tolerances, read_table

    try:
        comparison = compare_tables(read_table(args.baseline), read_table(args.new),
                                    parse_tolerances(args.tolerance), args.test_set or None)
    except (FileNotFoundError, ValueError) as err:
        print(f"zpeft compare: {err}", file=sys.stderr)
        return 2
    print(format_report(comparison, show_all=args.all))
    return 1 if comparison.regressed else 0
