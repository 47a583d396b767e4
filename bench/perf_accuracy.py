"""Does the fast path learn the same thing? Short trainings, plain loop vs fast path, metrics vs seed spread.

Plain: eager steps and peft's own LoRA forward. Fast: the merged-weight LoRA forward and, on
CUDA, the captured-graph step. For each seed one base model is trained (plain loop) and both
paths fine-tune it; their spec-z test metrics should differ by less than the seeds differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import strategies
from bench.data.registry import load_pair
from bench.metrics import point_metrics
from bench.pipeline import adapt, prepare_data, state_of, train_base
from bench.train import TrainSettings, predict

METRICS = ("sigma_nmad", "outlier_015", "bias")
SPREAD_FACTOR = 2.0  # "within seed spread": |mean difference| <= this x the larger seed standard deviation


def accuracy_runs(dataset: str, backbone: str, *, seeds: list[int], base_epochs: int, epochs: int, batch_size: int,
                  device: torch.device, crop: int | None = None, progress: bool = True) -> pd.DataFrame:
    """One row per (seed, strategy, path) with spec-z test metrics."""
    data = prepare_data(load_pair(dataset), crop=crop)
    x_test, _ = data.tensors["spec", "test"]
    z_test = data.sets["spec", "test"].z
    paths = {
        "plain": (TrainSettings(epochs=epochs, batch_size=batch_size), False),
        "fast": (TrainSettings(epochs=epochs, batch_size=batch_size, cuda_graph=True), True),
    }
    rows = []
    for seed in seeds:
        base_model, _ = train_base(backbone, data, TrainSettings(epochs=base_epochs, batch_size=batch_size),
                                   device=device, seed=seed, progress=progress)
        base_state = state_of(base_model)
        for name in ("full", "lora"):
            for path, (settings, fused) in paths.items():
                strategy = strategies.create("lora", rank=4, fused=fused) if name == "lora" else strategies.create(name)
                model, result = adapt(strategy, backbone, base_state, data, settings, settings, device=device,
                                      seed=seed, progress=progress)
                metrics = point_metrics(predict(model, x_test, device), z_test)
                rows.append({"seed": seed, "strategy": strategy.label(), "path": path, "step_mode": result.step_mode,
                             "images_per_second": result.images_per_second,
                             **{m: metrics[m] for m in METRICS}})
    return pd.DataFrame(rows)


def accuracy_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and metric: plain and fast mean +- std over seeds, and whether they agree within the spread."""
    out = []
    for (strategy, metric), part in runs.melt(id_vars=["seed", "strategy", "path"], value_vars=list(METRICS),
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
