"""`zpeft data ...`: inspect, validate, plot, simulate and write synthetic datasets from the command line."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `data` and its subcommands to the top-level parser's subparsers."""
    data = subparsers.add_parser("data", help="inspect, validate, plot or simulate a dataset")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="{inspect,validate,plot,simulate,synthetic}")
    where = "a pair directory (manifest.json), a pair description (.toml/.json), a single file, or a dataset name"

    p = sub.add_parser("inspect", help="table of counts, image sizes and redshift ranges per set and split")
    p.add_argument("path", help=where)
    p.set_defaults(func=inspect_command)

    p = sub.add_parser("validate", help="check files; exit 1 and one line per problem, or print ok")
    p.add_argument("path", help="a pair directory, a pair description or a single HDF5/FITS file")
    p.set_defaults(func=validate_command)

    p = sub.add_parser("plot", help="figure of example cutouts and the z distributions")
    p.add_argument("path", help=where)
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--max-rows", type=int, default=None, help="read only the first rows of each split")
    p.set_defaults(func=plot_command)

    p = sub.add_parser("simulate", help="write a simulated survey to disk (needs the `sim` extra)")
    p.add_argument("--preset", required=True, help="tiny, quick or paper")
    p.add_argument("-o", "--output", required=True, help="directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label-model", default="deep", help="photo-z label-error model: deep or mismatch")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for the population tiles, photo-z fit and rendering (default: all cores)")
    p.set_defaults(func=simulate_command)

    p = sub.add_parser("synthetic", help="write N toy galaxies as an HDF5 pair (float16 images): for streaming "
                                         "and memory checks at any size, in seconds per 10k galaxies")
    p.add_argument("--galaxies", type=int, required=True, help="photo-z plus spec-z galaxies")
    p.add_argument("--size", type=int, default=64, help="cutout side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="directory to write")
    p.set_defaults(func=synthetic_command)
    return data


def inspect_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from zpeft.data.inspect import summarise

    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 3):
        print(summarise(args.path).to_string(index=False))
    return 0


def validate_command(args: argparse.Namespace) -> int:
    from zpeft.data.validate import validate_path

    problems = validate_path(args.path)
    for problem in problems:
        print(problem)
    if not problems:
        print("ok")
    return 1 if problems else 0


def plot_command(args: argparse.Namespace) -> int:
    from zpeft.data.inspect import plot_examples
    from zpeft.data.registry import load_pair

    options = {} if args.max_rows is None else {"max_rows": args.max_rows}
    print(plot_examples(load_pair(args.path, **options), args.output))
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.simsurvey import simulate  # GalSim and SkyPy are an optional extra

    try:
        path = simulate(args.preset, args.output, seed=args.seed, label_model=args.label_model, workers=args.workers,
                        progress=True)
    except (KeyError, ValueError, FileExistsError) as err:
        return fail("data simulate", err)
    except KeyboardInterrupt:
        print("zpeft data simulate: interrupted; the same command resumes from the last finished shard",
              file=sys.stderr)
        return 130
    counts = json.loads((path / "manifest.json").read_text())["counts"]
    print(f"{path}\n  photo-z: {counts['photo']}\n  spec-z:  {counts['spec']}\n"
          f"  label model: {args.label_model}, seed {args.seed}")
    return 0


def synthetic_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.data.synthetic import write_synthetic_pair

    if args.galaxies < 100 or args.size < 8:
        return fail("data synthetic", f"need at least 100 galaxies and 8-pixel cutouts, got {args.galaxies} "
                                      f"galaxies of {args.size} pixels")
    path = write_synthetic_pair(args.output, args.galaxies, size=args.size, seed=args.seed)
    counts = json.loads((path / "manifest.json").read_text())["counts"]
    print(f"{path}\n  photo-z: {counts['photo']}\n  spec-z:  {counts['spec']}")
    return 0
