"""`zpeft run SUITE`: execute a suite by shipped name or path, resuming what is already recorded."""

from __future__ import annotations

import argparse
from pathlib import Path

from zpeft.conventions import DEFAULT_WORKERS
from zpeft.run.executors import EXECUTORS


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `run` subcommand."""
    from zpeft.run.suite import list_suites

    p = subparsers.add_parser(
        "run", help="run a suite (a built-in name, see `zpeft list suites`, or a path); runs recorded ok are skipped",
        description=f"Run a suite. Built-in suites: {', '.join(list_suites())}.")
    p.add_argument("suite", help="shipped suite name or path of a suite TOML file")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the suite's, else auto)")
    p.add_argument("--out", default=None, help="results directory (default: results/<suite name>)")
    p.add_argument("--executor", choices=EXECUTORS.names(), default="local",
                   help="local: one run after another; process: a pool of --workers processes; "
                        "ray: Ray tasks, one GPU each (needs zpeft[ray] and a results directory every node sees)")
    p.add_argument("--workers", type=int, default=None, help=f"processes for --executor process (default {DEFAULT_WORKERS})")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which would be skipped; run nothing (each dataset is still "
                        "loaded, and simulated if not cached, to fingerprint it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_import_option(p)
    p.set_defaults(func=run_command)
    return p


def add_import_option(p: argparse.ArgumentParser) -> None:
    """`--import MODULE` (repeatable): modules that register backbones or strategies, imported before anything else."""
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (on the Python path or in the current directory), so the backbones "
                        "and strategies it registers can be named; repeatable")


def import_plugins(modules: list[str]) -> str | None:
    """Import the `--import` modules; the one-line problem when one does not import, else None."""
    if not modules:
        return None
    from zpeft.backbones import import_modules

    try:
        import_modules(modules)
    except ImportError as err:
        return str(err)
    return None


def run_command(args: argparse.Namespace) -> int:
    """Exit status 0 when every run is ok, 1 when any failed (their errors are in their records)."""
    from zpeft.cli import fail
    from zpeft.conventions import check_device_name
    from zpeft.run.suite import SuiteError, load_suite

    if args.workers is not None and args.executor != "process":
        return fail("run", "--workers applies to --executor process")
    if (problem := import_plugins(args.imports)) is not None:
        return fail("run", problem)
    try:
        if args.device is not None:
            check_device_name(args.device)
        suite = load_suite(args.suite)
    except (ValueError, ImportError) as err:  # ImportError: a backbone entry point that does not import
        return fail("run", err)
    from zpeft.run.execute import DISK_FULL
    from zpeft.run.runner import describe_dry_run, dry_run, run_suite

    out = Path(args.out) if args.out else Path("results") / suite.name
    try:
        if args.dry_run:
            print(describe_dry_run(dry_run(suite, out), out))
            return 0
        summary = run_suite(suite, out, device=args.device, executor=args.executor, workers=args.workers,
                            progress=not args.no_progress)
    except (SuiteError, RuntimeError) as err:  # a dataset that does not load, CUDA asked for but absent
        return fail("run", err)
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        return fail("run", f"no space left on the device writing {err.filename or out}; the records written so "
                           "far are kept: free some space and run the suite again to resume")
    print(summary.text())
    return 1 if summary.failed else 0
