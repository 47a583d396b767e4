"""`zpeft perf`: throughput of each backbone and strategy beside the reference loop, into PERFORMANCE.md."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path

GPU_COMMAND = "zpeft perf --device cuda --accuracy"


def add_parser(subparsers) -> argparse.ArgumentParser:
    from zpeft.perf.cases import DEFAULT_BACKBONES, VARIANTS

    p = subparsers.add_parser("perf", help="measure training/inference img/s and peak memory; write PERFORMANCE.md")
    p.add_argument("--backbones", default=",".join(DEFAULT_BACKBONES), help="comma-separated backbone names")
    p.add_argument("--strategies", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--loops", default="reference,eager,cuda_graph",
                   help="comma-separated, of: reference, eager, compiled, cuda_graph (cuda_graph needs CUDA)")
    p.add_argument("--compile", action="store_true", help="also time the torch.compile loop")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=50, help="timed training steps per case")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (capture, compilation, caches)")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--in-chans", type=int, default=5)
    p.add_argument("--ref-workers", type=int, default=None, help="DataLoader workers of the reference loop")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="reports/PERFORMANCE.md", help="markdown report to write (its device section)")
    p.add_argument("--csv", default=None, help="also write the raw table here")
    p.add_argument("--accuracy", action="store_true",
                   help="also run the short-training accuracy check (plain loop vs fast path)")
    p.add_argument("--dataset", default="toy", help="dataset of the accuracy check")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the accuracy check")
    p.add_argument("--accuracy-backbone", default="resnet18-mlp")
    p.add_argument("--accuracy-epochs", type=int, default=3)
    p.add_argument("--memory", action="store_true",
                   help="instead of throughput: peak host memory and preparation time of the data path against "
                        "the number of galaxies (synthetic HDF5 pairs, one fresh process each)")
    p.add_argument("--memory-sizes", default="10000,50000,100000,400000", help="galaxies per synthetic pair")
    p.add_argument("--memory-storages", default="auto,stream", help="comma-separated, of: auto, memory, stream")
    p.add_argument("--memory-dir", default="results/memory-pairs",
                   help="where the synthetic pairs are written (and reused); 400k galaxies take 16 GB")
    p.set_defaults(func=perf_command)
    return p


def perf_command(args) -> int:
    import peft
    import timm
    import torch

    from zpeft.perf.document import command_line, paper_workload, project_paper_hours, render_section, write_report
    from zpeft.perf.throughput import rows_table, run_perf
    from zpeft.training.device import device_name, resolve_device

    if args.memory:
        return _memory_command(args)
    device = resolve_device(args.device)
    load_start = _load()
    loops = _split(args.loops) + (["compiled"] if args.compile and "compiled" not in args.loops else [])
    rows = run_perf(_split(args.backbones), _split(args.strategies), loops, batch_size=args.batch_size,
                    steps=args.steps, warmup=args.warmup, device=device, in_chans=args.in_chans,
                    img_size=args.img_size, ref_workers=args.ref_workers)
    table = rows_table(rows)
    work = paper_workload()
    from zpeft.perf.refpipeline import default_workers

    meta = {
        "device_kind": device.type, "device": device_name(device),
        "date": dt.datetime.now().isoformat(timespec="seconds"), "command": f"`{command_line()}`",
        "versions": f"torch {torch.__version__}, timm {timm.__version__}, peft {peft.__version__}, "
                    f"python {platform.python_version()}",
        "settings": f"batch {args.batch_size}, {args.img_size}x{args.img_size}x{args.in_chans}, "
                    f"{args.warmup} warm-up + {args.steps} timed steps, reference loop with "
                    f"{args.ref_workers if args.ref_workers is not None else default_workers()} DataLoader workers",
        "host load": f"1-minute load average {load_start} at start, {_load()} at end, on {os.cpu_count()} CPUs "
                     "(other processes slow CPU timings)",
    }
    sections = [render_section(table, project_paper_hours(table, work), work, meta)]
    print(table.drop(columns=["memory_kind"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    out = write_report(Path(args.out), sections[0], device.type, GPU_COMMAND)
    if args.accuracy:
        out = write_report(out, _accuracy_section(args, device, meta), f"{device.type}_accuracy", GPU_COMMAND)
    print(f"wrote {out}")
    return 0


def _accuracy_section(args, device, meta) -> str:
    from zpeft.markdown import markdown_table
    from zpeft.perf.accuracy import SPREAD_FACTOR, accuracy_runs, accuracy_summary

    runs = accuracy_runs(args.dataset, args.accuracy_backbone, seeds=list(range(args.seeds)),
                         base_epochs=args.accuracy_epochs, epochs=args.accuracy_epochs,
                         batch_size=min(args.batch_size, 128), device=str(device))
    summary = accuracy_summary(runs)
    print(summary.to_string(index=False))
    kind = f"{device.type}_accuracy"
    return "\n".join([
        f"<!-- perf:{kind} -->", f"## {device.type.upper()} accuracy check: plain loop vs fast path", "",
        f"- device: {meta['device']}", f"- date: {meta['date']}", f"- command: {meta['command']}",
        f"- {args.dataset}, {args.accuracy_backbone}, seeds {list(range(args.seeds))}, base and fine-tuning "
        f"{args.accuracy_epochs} epochs each, spec-z test metrics; fast = fused LoRA"
        + (" + CUDA-graph step" if device.type == "cuda" else " (CUDA graphs need a GPU: eager steps here)"),
        f"- within_spread: |fast mean - plain mean| <= {SPREAD_FACTOR:g} x the larger seed std", "",
        markdown_table(summary.assign(difference=summary.difference.map(lambda v: f"{v:+.4f}"))), "",
        f"<!-- /perf:{kind} -->", ""])


def _memory_command(args) -> int:
    from zpeft.perf.document import command_line, write_report
    from zpeft.perf.memory import measure, plot_memory, render_section

    sizes = [int(n) for n in _split(args.memory_sizes)]
    machine = f"{os.cpu_count()} CPUs, {_memory_total()}, python {platform.python_version()}"
    rows = measure(sizes, args.memory_dir, _split(args.memory_storages), size=args.img_size)
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "command": command_line(), "machine": machine}
    figure = plot_memory(rows, Path(args.out).with_name("host_memory.png"))
    out = write_report(Path(args.out), render_section(rows, meta, figure.name), "host_memory", GPU_COMMAND)
    print(f"wrote {out}")
    return 0


def _memory_total() -> str:
    from zpeft.data.checks import available_memory

    available = available_memory()
    return "memory unknown" if available is None else f"{available / 2**30:.1f} GiB available at start"


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]
