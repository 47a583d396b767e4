"""`zpeft error-bars RESULTS_DIR`: add conformal error bars to runs recorded without them, from their kept weights."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `error-bars` subcommand."""
    p = subparsers.add_parser(
        "error-bars", help="add calibrated intervals and p(z) to runs recorded before zpeft had them (no retraining)",
        description="For every ok run of RESULTS_DIR without error bars: rebuild its model from the kept weights, "
                    "check it reproduces the recorded test predictions, calibrate on the run's own spec-z "
                    "validation set, and add the record's `uncertainty`, calibration.json and the catalogues' "
                    "interval columns. Runs recorded with error bars are left as they are.")
    p.add_argument("results", help="results directory of `zpeft run`")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no line per run")
    p.set_defaults(func=error_bars_command)
    return p


def error_bars_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zpeft.cli import fail
    from zpeft.conventions import check_device_name
    from zpeft.run.export import ExportError

    if not Path(args.results).is_dir():
        return fail("error-bars", f"{args.results} is not a directory; give the results directory of `zpeft run`")
    try:
        check_device_name(args.device)
        from zpeft.uncertainty.backfill import add_error_bars

        done = add_error_bars(args.results, device=args.device, progress=not args.no_progress)
    except (ExportError, ValueError) as err:
        return fail("error-bars", err)
    print(f"error bars added to {len(done)} run(s) in {args.results}")
    return 0
