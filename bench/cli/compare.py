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
    p.add_argument("--findings", action="store_true",
                   help="BASELINE and NEW are findings.csv files: exit 1 when a difference BASELINE calls significant "
                        "has another sign (or is missing) in NEW (e.g. the budget-doubling check)")
    p.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.report.compare import compare_tables, format_report, parse_tolerances, read_table

    if args.findings:
        return compare_findings(args.baseline, args.new)
    try:
        comparison = compare_tables(read_table(args.baseline), read_table(args.new),
                                    parse_tolerances(args.tolerance), args.test_set or None)
    except (FileNotFoundError, ValueError) as err:
        return fail("compare", err)
    print(format_report(comparison, show_all=args.all))
    return 1 if comparison.regressed else 0


def compare_findings(before: str, after: str) -> int:
    """Exit 1 when a significant finding of `before` changes sign (or goes missing) in `after`."""
    import pandas as pd

    from zpeft.cli import fail
    from zpeft.report.compare import format_sign_changes, sign_changes

    try:
        changes = sign_changes(pd.read_csv(before), pd.read_csv(after))
    except (FileNotFoundError, ValueError) as err:
        return fail("compare", err)
    print(format_sign_changes(changes))
    return 1 if changes["sign_changed"].any() else 0
