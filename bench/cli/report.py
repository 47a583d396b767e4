"""`zpeft report RESULTS -o OUT`: tables, paired statistics and plots from finished runs."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Add the `report` subcommand."""
    p = subparsers.add_parser("report", help="results.csv, report.md, report.html and plots from a results directory")
    p.add_argument("results_dir", help="directory of run records (*.json) written by `zpeft run`")
    p.add_argument("-o", "--output", required=True, help="directory to write the report into")
    p.add_argument("--significance-level", type=float, default=0.95,
                   help="level of the exploratory intervals and the answer box's; 1 - level is the family-wise error "
                        "rate of the primary family's Holm verdicts (default 0.95)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap replicates (seeds and galaxies resampled together) per comparison; the primary "
                        "family gets at least what its smallest Holm level needs")
    p.add_argument("--readme", metavar="PATH",
                   help="also rewrite the generated block of this Markdown file (between the lines "
                        "<!-- zpeft:findings:start --> and <!-- zpeft:findings:end -->) with the report's answer box")
    p.set_defaults(func=report_command)


def report_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.report.build import build_report

    try:
        path = build_report(args.results_dir, args.output, significance_level=args.significance_level,
                            n_boot=args.n_boot, readme=args.readme)
    except (FileNotFoundError, ValueError) as err:
        return fail("report", err)
    print(f"wrote {path} (and report.md, results.csv, references.csv, findings.csv, plots) in {path.parent}")
    if args.readme:
        print(f"refreshed the answer block of {args.readme}")
    return 0
