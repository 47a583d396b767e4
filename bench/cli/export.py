"""`zpeft export RUN_DIR/RUN_ID -o DIR`: one run's adapter, base weights and a torch.export program usable without zpeft."""

from __future__ import annotations

import argparse
from pathlib import Path

from zpeft.run.layout import RECORD_SUFFIX


def add_parser(subparsers) -> None:
    """Add the `export` subcommand."""
    p = subparsers.add_parser("export", help="one run's weights and a self-contained torch.export model",
                              description="Writes the peft adapter (adapter runs) or full state dict, the base "
                                          "weights, model.json, preprocessing.json, README.txt and model.pt2: the "
                                          "merged model with its preprocessing, loadable with "
                                          "torch.export.load(path).module() alone.")
    p.add_argument("run", help="RESULTS_DIR/RUN_ID: a results directory of `zpeft run` and a record's run id")
    p.add_argument("-o", "--output", required=True, help="directory to write the export into")
    p.set_defaults(func=export_command)


def split_run(text: str) -> tuple[Path, str]:
    """(results directory, run id) of `RESULTS_DIR/RUN_ID` (a trailing `.json` of the record file is dropped)."""
    path = Path(text)
    name = path.name.removesuffix(RECORD_SUFFIX)
    return path.parent, name


def export_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.run.export import ExportError, export_run

    results_dir, run_id = split_run(args.run)
    if not run_id or not results_dir.is_dir():
        return fail("export", f"{args.run}: expected RESULTS_DIR/RUN_ID with an existing results directory")
    try:
        files = export_run(results_dir, run_id, args.output)
    except (ExportError, FileNotFoundError) as err:
        return fail("export", err)
    print(f"wrote {len(files)} files for run {run_id} in {args.output} (see README.txt there)")
    return 0
