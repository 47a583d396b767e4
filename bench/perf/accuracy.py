"""Does the fast path learn the same thing? Short trainings, plain loop vs fast path, metrics vs seed spread.

Plain: eager steps and peft's own LoRA forward. Fast: the merged-weight LoRA forward and, on
CUDA, the captured-graph step. Both are suites run by the ordinary runner into one results
directory, so per seed one base model is trained (plain loop) and both paths fine-tune it;
their spec-z test metrics should differ by less than the seeds differ.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import TABLE_METRICS

SPREAD_FACTOR = 2.0  # "within seed spread": |mean difference| <= this x the larger seed standard deviation
PATHS = {"plain": {"fused": False, "cuda_graph": False}, "fast": {"fused": True, "cuda_graph": True}}


def accuracy_suite(path: str, dataset: str, backbone: str, *, seeds: list[int], base_epochs: int, epochs: int,
                   batch_size: int, crop: int | None = None) -> dict:
    """The suite (as parsed TOML) of one path: full and LoRA r=4 fine-tuned from the shared base models."""
    settings = PATHS[path]
    return {
        "name": f"perf-accuracy-{path}", "datasets": [dataset], "backbones": [backbone], "seeds": list(seeds),
        "crop": "none" if crop is None else crop,
        "strategies": ["full", {"name": "lora", "grid": {"rank": 4, "fused": settings["fused"]}}],
        "training": {"base": {"epochs": base_epochs, "batch_size": batch_size},
                     "finetune": {"epochs": epochs, "batch_size": batch_size, "cuda_graph": settings["cuda_graph"]}},
        "evaluation": {"n_boot": 50},
    }


def accuracy_runs(dataset: str, backbone: str, *, seeds: list[int], base_epochs: int, epochs: int, batch_size: int,
                  device: str, crop: int | None = None, out: str | Path | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """One row per (seed, strategy, path) with spec-z test metrics, from records made by the runner."""
    from zpeft.run.records import read_records
    from zpeft.run.runner import run_suite
    from zpeft.run.suite import parse_suite

    with tempfile.TemporaryDirectory(prefix="zpeft-accuracy-") as tmp:
        results = Path(out) if out is not None else Path(tmp)
        rows = []
        for path in PATHS:
            suite = parse_suite(accuracy_suite(path, dataset, backbone, seeds=seeds, base_epochs=base_epochs,
                                               epochs=epochs, batch_size=batch_size, crop=crop),
                                source=f"perf accuracy ({path})")
            summary = run_suite(suite, results, device=device, progress=progress)
            mine = set(summary.run_ids)
            for r in read_records(results):
                if r.run_id not in mine:
                    continue
                if r.status != "ok":
                    raise RuntimeError(f"accuracy check run {r.run_id} failed:\n{r.error}")
                metrics = r.metrics["spec"]["label"]["all"]
                rows.append({"seed": r.seed, "strategy": r.label, "path": path, "step_mode": r.step_mode,
                             "images_per_second": r.images_per_second, **{m: metrics[m] for m in TABLE_METRICS}})
    return pd.DataFrame(rows)


def accuracy_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and metric: plain and fast mean +- std over seeds, and whether they agree within the spread."""
    out = []
    for (strategy, metric), part in runs.melt(id_vars=["seed", "strategy", "path"], value_vars=list(TABLE_METRICS),
                                              var_name="metric").groupby(["strategy", "metric"]):
        stats = {p: (g.value.mean(), g.value.std(ddof=1)) for p, g in part.groupby("path")}
        spread = max(stats["plain"][1], stats["fast"][1])
        diff = stats["fast"][0] - stats["plain"][0]
        out.append({"strategy": strategy, "metric": metric,
                    "plain": f"{stats['plain'][0]:.4f} +- {stats['plain'][1]:.4f}",
                    "fast": f"{stats['fast'][0]:.4f} +- {stats['fast'][1]:.4f}",
                    "difference": diff,
                    "within_spread": bool(np.isfinite(spread) and abs(diff) <= SPREAD_FACTOR * spread)})
    return pd.DataFrame(out)
