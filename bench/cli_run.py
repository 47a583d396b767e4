"""`zpeft run SUITE`: execute a suite by shipped name or path, resuming what is already recorded."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.executors import EXECUTORS


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `run` subcommand."""
    from bench.config import list_suites

    p = subparsers.add_parser(
        "run", help="run a suite (bench/suites/NAME.toml or a path); runs already recorded ok are skipped",
        description=f"Run a suite. Shipped suites: {', '.join(list_suites())}.")
    p.add_argument("suite", help="shipped suite name or path of a suite TOML file")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the suite's, else auto)")
    p.add_argument("--out", default=None, help="results directory (default: results/<suite name>)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: one run after another; process: a pool of --workers processes; "
                        "ray: Ray tasks, one GPU each (needs zpeft[ray] and a results directory every node sees)")
    p.add_argument("--workers", type=int, default=None, help="processes for --executor process (default 2)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which would be skipped; run nothing (each dataset is still "
                        "loaded, and simulated if not cached, to fingerprint it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_command)
    return p


def run_command(args: argparse.Namespace) -> int:
    """Exit status 0 when every run is ok, 1 when any failed (their errors are in their records)."""
    import sys

    from bench.config import SuiteError, load_suite
    from bench.runner import describe_dry_run, dry_run, run_suite

    if args.workers is not None and args.executor != "process":
        print("zpeft run: --workers applies to --executor process", file=sys.stderr)
        return 2
    try:
        suite = load_suite(args.suite)
    except SuiteError as err:
        print(f"zpeft run: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / suite.name
    try:
        if args.dry_run:
            print(describe_dry_run(dry_run(suite, out), out))
            return 0
        summary = run_suite(suite, out, device=args.device, executor=args.executor, workers=args.workers,
                            progress=not args.no_progress)
    except SuiteError as err:  # a dataset that does not load: say so without a traceback
        print(f"zpeft run: {err}", file=sys.stderr)
        return 2
    print(summary.text())
    return 1 if summary.failed else 0
