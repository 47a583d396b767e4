"""`zpeft compare BASELINE NEW`: check a new results table against a baseline; exit 1 on a regression."""

from __future__ import annotations

import argparse

from zpeft.report.tolerances import DEFAULT_TOLERANCES


def add_parser(subparsers) -> None:
    """Add the `compare` subcommand."""
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


def compare_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.report.compare import compare_tables, format_report, parse_tolerances, read_table

    try:
        comparison = compare_tables(read_table(args.baseline), read_table(args.new),
                                    parse_tolerances(args.tolerance), args.test_set or None)
    except (FileNotFoundError, ValueError) as err:
        return fail("compare", err)
    print(format_report(comparison, show_all=args.all))
    return 1 if comparison.regressed else 0
