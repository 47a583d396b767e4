"""`zpeft export RUN_DIR/RUN_ID -o DIR`: one run's adapter, base weights and a torch.export program usable without zpeft.

`zpeft export mlflow RESULTS_DIR [--tracking-uri URI] [--experiment NAME] [--report DIR]` logs every run
record of a results directory to MLflow instead (zpeft.run.mlflow_export).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zpeft.cli.run import add_import_option, import_plugins
from zpeft.run.layout import RECORD_SUFFIX

MLFLOW = "mlflow"
MLFLOW_OPTIONS = ("tracking_uri", "experiment", "report")


def add_parser(subparsers) -> None:
    """Add the `export` subcommand (a run's model, or with `mlflow` first, a results directory to MLflow)."""
    p = subparsers.add_parser("export", help="one run's weights and a self-contained torch.export model, or "
                                             "`export mlflow RESULTS_DIR`: every run to MLflow",
                              usage="zpeft export RESULTS_DIR/RUN_ID -o DIR\n"
                                    "       zpeft export mlflow RESULTS_DIR [--tracking-uri URI] "
                                    "[--experiment NAME] [--report DIR]",
                              description="Writes the peft adapter (adapter runs) or full state dict, the base "
                                          "weights, model.json, preprocessing.json, README.txt and model.pt2: the "
                                          "merged model with its preprocessing, loadable with "
                                          "torch.export.load(path).module() alone. With `mlflow` first, logs each "
                                          "run record of RESULTS_DIR as one MLflow run instead (needs "
                                          "pip install 'zpeft[mlflow]'); exporting again adds no duplicates.")
    p.add_argument("run", help="RESULTS_DIR/RUN_ID: a results directory of `zpeft run` and a record's run id "
                               "(or a start of it only one run has); or `mlflow`")
    p.add_argument("results", nargs="?", help="with `mlflow`: the results directory of `zpeft run`")
    p.add_argument("-o", "--output", help="directory to write the export into (model export)")
    p.add_argument("--tracking-uri", dest="tracking_uri",
                   help="mlflow: tracking URI, e.g. file:./mlruns or http://host:5000 (default: MLflow's own, "
                        "MLFLOW_TRACKING_URI)")
    p.add_argument("--experiment", help="mlflow: experiment name (default: zpeft)")
    p.add_argument("--report", help="mlflow: a report directory of `zpeft report` to log as artifacts too")
    add_import_option(p)
    p.set_defaults(func=export_command, export_parser=p)


def split_run(text: str) -> tuple[Path, str]:
    """(results directory, run id) of `RESULTS_DIR/RUN_ID` (a trailing `.json` of the record file is dropped)."""
    path = Path(text)
    name = path.name.removesuffix(RECORD_SUFFIX)
    return path.parent, name


def export_command(args: argparse.Namespace) -> int:
    if args.run == MLFLOW:
        return mlflow_command(args)
    parser = args.export_parser
    if args.results is not None:
        parser.error(f"unrecognized arguments: {args.results}")
    if args.output is None:
        parser.error("the following arguments are required: -o/--output")
    given = [f"--{name.replace('_', '-')}" for name in MLFLOW_OPTIONS if getattr(args, name) is not None]
    if given:
        parser.error(f"{', '.join(given)}: only with `zpeft export mlflow RESULTS_DIR`")
    from zpeft.cli import fail
    from zpeft.run.export import ExportError, export_run

    if (problem := import_plugins(args.imports)) is not None:
        return fail("export", problem)
    results_dir, run_id = split_run(args.run)
    if not run_id or not results_dir.is_dir():
        return fail("export", f"{args.run}: expected RESULTS_DIR/RUN_ID with an existing results directory")
    try:
        files = export_run(results_dir, run_id, args.output)
    except (ExportError, FileNotFoundError) as err:
        return fail("export", err)
    print(f"wrote {len(files)} files for run {run_id} in {args.output} (see README.txt there)")
    return 0


def mlflow_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.run.mlflow_export import DEFAULT_EXPERIMENT, MlflowExportError, export_mlflow

    if args.results is None:
        args.export_parser.error("the following arguments are required with mlflow: RESULTS_DIR")
    if args.output is not None:
        args.export_parser.error("-o/--output: not with `zpeft export mlflow` (runs go to the tracking URI)")
    try:
        summary = export_mlflow(args.results, tracking_uri=args.tracking_uri,
                                experiment=args.experiment or DEFAULT_EXPERIMENT, report_dir=args.report)
    except (MlflowExportError, ValueError) as err:
        return fail("export mlflow", err)
    print(f"MLflow experiment {summary.experiment_id}: {len(summary.created)} runs logged, "
          f"{len(summary.replaced)} replaced, {len(summary.skipped)} unchanged and skipped"
          + (f"; report in run {summary.report_run}" if summary.report_run else ""))
    return 0
