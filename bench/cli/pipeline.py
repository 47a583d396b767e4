"""`zpeft pipeline`: one dataset pair, one backbone, one seed, every strategy side by side, through the runner.

The command builds a one-off suite from its options and runs it like any other suite (same
validation, records, resume and base-model reuse), then prints the spec-z test metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zpeft.cli.run import add_import_option, import_plugins
from zpeft.conventions import TABLE_METRICS

DEFAULT_STRATEGIES = "zero-shot,head-only,lora,full,combined"


def add_parser(sub) -> None:
    p = sub.add_parser("pipeline", help="train a base model and compare strategies on one dataset pair",
                       description="A one-off suite from the options below, run and recorded like any suite.")
    p.add_argument("--dataset", default="toy", help="dataset name (zpeft list datasets) or path")
    p.add_argument("--backbone", default="cnn-small", help="backbone name (zpeft list backbones)")
    p.add_argument("--weights", default=None,
                   help="the backbone's pretrained weights (safetensors, or a torch state dict): the base model, "
                        "instead of one trained on photo-z (README: Bring your own model and data)")
    p.add_argument("--preprocessing", default=None,
                   help="with --weights: the preprocessing.json the weights go with (as zpeft export writes it)")
    p.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                   help="comma-separated; name:key=value;key=value for parameters, e.g. lora:rank=8")
    p.add_argument("--base-epochs", type=int, default=10, help="base model epoch cap (the stopping rule may end sooner)")
    p.add_argument("--epochs", type=int, default=15, help="fine-tuning epoch cap, equal for every strategy (the stopping rule may end sooner)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--crop", type=int, default=None, help="centre-crop cutouts to this size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default="results/pipeline", help="results directory (records, predictions, base model)")
    add_import_option(p)
    p.set_defaults(func=pipeline_command)


def parse_strategy_list(text: str) -> list[dict]:
    """`lora:rank=8;alpha=16,full` -> suite strategy entries; values parse as bool, int, float, then string."""
    entries = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, rest = item.partition(":")
        grid = {}
        for pair in filter(None, (kv.strip() for kv in rest.split(";"))):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"strategy {name!r}: parameter {pair!r} is not key=value")
            grid[key.strip()] = _value(value.strip())
        entries.append({"name": name.strip(), "grid": grid})
    if not entries:
        raise ValueError("no strategies given")
    return entries


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def pipeline_suite(args: argparse.Namespace) -> dict:
    """The suite (as parsed TOML) that the options describe."""
    backbone = {"name": args.backbone}
    backbone.update({k: getattr(args, k) for k in ("weights", "preprocessing") if getattr(args, k) is not None})
    return {
        "name": "pipeline", "description": "zpeft pipeline", "datasets": [args.dataset], "backbones": [backbone],
        "strategies": parse_strategy_list(args.strategies), "seeds": [args.seed], "device": args.device,
        "crop": "none" if args.crop is None else args.crop,
        "training": {"base": {"epochs": args.base_epochs, "batch_size": args.batch_size},
                     "finetune": {"epochs": args.epochs, "batch_size": args.batch_size}},
    }


def pipeline_command(args: argparse.Namespace) -> int:
    from zpeft.cli import fail
    from zpeft.run.suite import SuiteError, parse_suite

    if (problem := import_plugins(args.imports)) is not None:
        return fail("pipeline", problem)
    try:
        suite = parse_suite(pipeline_suite(args), source="given to zpeft pipeline")
    except (SuiteError, ValueError) as err:
        return fail("pipeline", err)
    from zpeft.run.records import read_records
    from zpeft.run.runner import run_suite

    out = Path(args.out)
    try:
        summary = run_suite(suite, out)
    except (SuiteError, RuntimeError) as err:
        return fail("pipeline", err)
    print(summary.text())
    print(spec_table(read_records(out), summary.run_ids).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 1 if summary.failed else 0


def spec_table(records, run_ids: list[str]):
    """One row per run of the plan, in plan order: costs and the spec-z test metrics against the label."""
    import pandas as pd

    by_id = {r.run_id: r for r in records}
    rows = []
    for r in (by_id[run_id] for run_id in run_ids if run_id in by_id):
        metrics = r.metrics.get("spec", {}).get("label", {}).get("all", {}) if r.status == "ok" else {}
        rows.append({"strategy": r.label, "status": r.status, "trainable_params": r.trainable_params,
                     "train_seconds": r.train_seconds, "epochs": r.epochs,
                     **{m: metrics.get(m, float("nan")) for m in TABLE_METRICS}})
    return pd.DataFrame(rows)
