"""`zpeft list backbones | strategies | datasets | suites`: what is registered, with a line on each."""

from __future__ import annotations

import argparse

WHAT = ("backbones", "strategies", "datasets", "suites")


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list registered backbones, strategies, datasets or the built-in suites")
    p.add_argument("what", choices=WHAT)
    p.add_argument("pattern", nargs="?", default="*", help="shell wildcard; 'timm/*resnet*' lists timm models")
    p.set_defaults(func=list_command)


def list_command(args: argparse.Namespace) -> int:
    print("\n".join(LISTERS[args.what](args.pattern)))
    return 0


def _backbones(pattern: str) -> list[str]:
    from zpeft import backbones

    names = backbones.list_backbones(pattern)
    if pattern == "*":
        names.append("timm/<any timm model>  (zpeft list backbones 'timm/<pattern>')")
    return names


def _strategies(pattern: str) -> list[str]:
    from zpeft import strategies

    out = []
    for name in strategies.list_strategies(pattern):
        cls = strategies.strategy_class(name)
        params = ", ".join(strategies.parameters(name))
        out.append(f"{name:<10} starts from {cls.starts_from:<7} trains on {cls.trains_on:<8} "
                   f"{_first_line(cls.__doc__)}  [{params}]")
    return out


def _datasets(pattern: str) -> list[str]:
    from zpeft.data.registry import DATASETS

    return [f"{name:<10} {_first_line(DATASETS[name].__doc__)}" for name in DATASETS.names(pattern)]


def _suites(pattern: str) -> list[str]:
    """Names and descriptions, read without validating (validating a timm suite would import timm)."""
    from fnmatch import fnmatchcase

    from zpeft.run.suite import find_suite, list_suites
    from zpeft.tomlread import loads

    return [f"{name:<10} {loads(find_suite(name).read_text()).get('description', '')}"
            for name in list_suites() if fnmatchcase(name, pattern)]


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


LISTERS = {"backbones": _backbones, "strategies": _strategies, "datasets": _datasets, "suites": _suites}
