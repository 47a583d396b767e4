"""The `zpeft` command line: one subcommand per job, each a thin layer over a library function."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zpeft", description="PEFT benchmark for galaxy redshift regression")
    sub = parser.add_subparsers(dest="command")
    _add_list(sub)
    _add_pipeline(sub)
    from bench.data.cli import add_parser as add_data

    add_data(sub)
    from bench.cli_run import add_parser as add_run

    add_run(sub)
    from bench.cli_perf import add_parser as add_perf

    add_perf(sub)
    from bench.cli_report import add_parser as add_report

    add_report(sub)
    return parser


def _add_list(sub) -> None:
    p = sub.add_parser("list", help="list registered backbones, strategies or datasets")
    p.add_argument("what", choices=["backbones", "strategies", "datasets"])
    p.add_argument("pattern", nargs="?", default="*", help="shell wildcard; 'timm/*resnet*' lists timm models")
    p.set_defaults(func=_list)


def _list(args) -> int:
    if args.what == "backbones":
        import backbones

        names = backbones.list_backbones(args.pattern)
        if args.pattern == "*":
            names.append("timm/<any timm model>  (zpeft list backbones 'timm/<pattern>')")
    elif args.what == "strategies":
        import strategies

        names = [_describe_strategy(n) for n in strategies.list_strategies(args.pattern)]
    else:
        from bench.data.registry import list_datasets

        names = list_datasets()
    print("\n".join(names))
    return 0


def _describe_strategy(name: str) -> str:
    import strategies

    cls = strategies.strategy_class(name)
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    return f"{name:<10} starts from {cls.starts_from:<7} trains on {cls.trains_on:<8} {doc}"


def _add_pipeline(sub) -> None:
    p = sub.add_parser("pipeline", help="train a base model and compare the five core strategies on one dataset pair")
    p.add_argument("--dataset", default="toy", help="dataset name (zpeft list datasets) or path")
    p.add_argument("--backbone", default="cnn-small")
    p.add_argument("--strategies", default="zero-shot,head-only,lora,full,combined",
                   help="comma-separated; name:key=value for parameters, e.g. lora:rank=8")
    p.add_argument("--base-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=15, help="fine-tuning epoch budget, equal for every strategy")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--crop", type=int, default=None, help="centre-crop cutouts to this size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_pipeline)


def _pipeline(args) -> int:
    from bench.compare_strategies import compare_strategies, parse_strategy_list
    from bench.data.registry import load_pair
    from bench.device import resolve_device
    from bench.train import TrainSettings

    table = compare_strategies(
        load_pair(args.dataset), args.backbone, parse_strategy_list(args.strategies),
        base=TrainSettings(epochs=args.base_epochs, batch_size=args.batch_size),
        finetune=TrainSettings(epochs=args.epochs, batch_size=args.batch_size),
        device=resolve_device(args.device), seed=args.seed, crop=args.crop,
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
