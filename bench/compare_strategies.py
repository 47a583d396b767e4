"""One dataset pair, one backbone, one seed: every strategy side by side in a table (`zpeft pipeline`)."""

from __future__ import annotations

import pandas as pd
import torch

import backbones
import strategies
from bench.data import DatasetPair
from bench.pipeline import adapt, prepare_data, score, state_of, train_base
from bench.train import TrainSettings
from strategies import Strategy

TABLE_METRICS = ("bias", "sigma_nmad", "outlier_015")


def parse_strategy_list(text: str) -> list[Strategy]:
    """`lora:rank=8,full` -> strategies; values parse as int, float, then string."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, rest = item.partition(":")
        params = {}
        for kv in filter(None, rest.split(";")):
            key, _, value = kv.partition("=")
            params[key.strip()] = _parse_value(value.strip())
        out.append(strategies.create(name, **params))
    return out


def _parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def compare_strategies(pair: DatasetPair, backbone: str, chosen: list[Strategy], *, base: TrainSettings,
                       finetune: TrainSettings, device: torch.device, seed: int = 0, crop: int | None = None,
                       progress: bool = True) -> pd.DataFrame:
    """Train the base model once, apply each strategy, return one row per strategy (spec-z test metrics)."""
    data = prepare_data(pair, crop=crop)
    base_model, base_result = train_base(backbone, data, base, device=device, seed=seed, progress=progress)
    base_state = state_of(base_model)
    rows = []
    for strategy in chosen:
        model, result = adapt(strategy, backbone, base_state, data, finetune, base, device=device, seed=seed,
                              progress=progress)
        metrics = score(model, data, device=device, n_boot=200, seed=seed)["spec"]["label"]["all"]
        rows.append({
            "strategy": strategy.label(),
            "trainable_params": backbones.count_parameters(model, trainable_only=True),
            "train_seconds": 0.0 if result is None else result.train_seconds,
            "epochs": 0 if result is None else result.epochs_run,
            **{m: metrics[m] for m in TABLE_METRICS},
        })
    table = pd.DataFrame(rows)
    table.attrs["base_train_seconds"] = base_result.train_seconds
    return table
