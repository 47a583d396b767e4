"""The `zpeft` command line: one subcommand per job, each a thin layer over a library function.

Building the parser imports no torch, timm or peft: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys

from zpeft import __version__
from zpeft.cli import compare, data, errorbars, export, listing, perf, pipeline, report, run, tune

COMMANDS = (listing, pipeline, data, run, tune, report, compare, export, errorbars, perf)


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the process's arguments), run the command, return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zpeft", description="PEFT benchmark for galaxy redshift regression")
    parser.add_argument("--version", action="version", version=f"zpeft {__version__}")
    sub = parser.add_subparsers(dest="command")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def fail(command: str, message: object) -> int:
    """Print `zpeft COMMAND: message` on stderr; exit status 2 (bad input)."""
    print(f"zpeft {command}: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
