"""Throughput of every (backbone, strategy, loop): training and inference images per second, peak memory.

Training is timed over `steps` batches after `warmup` batches (which include any graph
capture or compilation), with the device synchronised, through the same batch source,
augmentation and steppers as `zpeft.training.loop.train`. The reference paper's loop
(`zpeft.perf.refpipeline`) is timed in the same run on the same card.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from zpeft import backbones, strategies
from zpeft.data.preprocess import Preprocessor
from zpeft.data.rows import ImageRows
from zpeft.perf.cases import LOOPS, REFERENCE_VARIANTS, VARIANTS
from zpeft.perf.refpipeline import reference_train_throughput, write_hdf5
from zpeft.strategies import Strategy
from zpeft.training.batches import Inputs, batches, first_batch, place
from zpeft.training.device import peak_memory_mb, reset_peak_memory, synchronize
from zpeft.training.loop import TrainSettings, make_step, predict, random_dihedral, set_train_mode
from zpeft.training.losses import get_loss
from zpeft.training.optim import RateSchedule

_DATA_BATCHES = 8  # distinct batches of synthetic data cycled through while timing


@dataclass
class PerfRow:
    """One measured (backbone, variant, loop); `error` set instead of numbers when it could not run."""

    backbone: str
    variant: str
    loop: str
    batch_size: int
    trainable_params: int
    train_img_s: float | None = None
    infer_img_s: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str = ""
    error: str | None = None


def make_variant(variant: str) -> Strategy:
    try:
        spec = dict(VARIANTS[variant])
    except KeyError:
        raise KeyError(f"unknown perf variant {variant!r}; known: {', '.join(VARIANTS)}") from None
    return strategies.create(spec.pop("name"), **spec)


def _prepared(backbone: str, variant: str, in_chans: int, img_size: int, seed: int) -> tuple[nn.Module, Strategy]:
    torch.manual_seed(seed)
    strategy = make_variant(variant)
    return strategy.prepare(backbones.create(backbone, in_chans=in_chans, img_size=img_size)), strategy


def synthetic_inputs(n: int, in_chans: int, img_size: int, seed: int) -> Inputs:
    """Random raw images (float16, as survey files store them), redshifts and a preprocessor fitted on them:
    throughput does not depend on pixel values, but it does include the per-batch preprocessing."""
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, in_chans, img_size, img_size, generator=gen).half().numpy()
    return Inputs(ImageRows.of(pixels), 3 * torch.rand(n, generator=gen), Preprocessor.fit(pixels, seed=seed))


def measure_training(model: nn.Module, strategy: Strategy, data: Inputs, *, loop: str, batch_size: int, steps: int,
                     warmup: int, device: torch.device, seed: int = 0) -> float:
    """Training images per second of `loop` ("eager", "compiled", "cuda_graph") after `warmup` steps."""
    settings = TrainSettings(lr=strategy.default_lr, batch_size=batch_size, cuda_graph=loop == "cuda_graph",
                             compile=loop == "compiled")
    model.to(device).to(memory_format=torch.channels_last)
    data = place(data, device, "device")
    params = [p for p in model.parameters() if p.requires_grad]
    bn_frozen = strategy.bn == "frozen"
    set_train_mode(model, bn_frozen)
    schedule = RateSchedule(settings.lr, settings.schedule, total_steps=warmup + steps)
    stepper = make_step(model, params, get_loss(settings.loss), settings, device=device, schedule=schedule,
                        sample=first_batch(data, batch_size, device))
    if loop == "cuda_graph" and stepper.mode != "cuda_graph":
        raise RuntimeError("cuda_graph needs a CUDA device")
    generator = torch.Generator(device=device).manual_seed(seed)
    per_epoch = len(data) // batch_size
    start, done = 0.0, 0
    while done < warmup + steps:
        order = torch.randperm(len(data), device=device, generator=generator)
        needed = min(per_epoch, warmup + steps - done) * batch_size
        for xb, yb in batches(data, order[:needed], batch_size, device):
            if done == warmup:
                synchronize(device)
                start = time.perf_counter()
            stepper.step(random_dihedral(xb, generator), yb)
            done += 1
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def measure_inference(model: nn.Module, data: Inputs, *, batch_size: int, device: torch.device) -> float:
    """Images per second of `zpeft.training.loop.predict` over `data` (placed on the device), after a warm-up pass."""
    data = place(data, device, "device")
    predict(model, Inputs(data.images[:batch_size], data.z[:batch_size], data.preprocess), device, batch_size)
    synchronize(device)
    start = time.perf_counter()
    predict(model, data, device, batch_size)  # returns host numpy: synchronised by construction
    return len(data) / (time.perf_counter() - start)


def run_perf(backbone_names: list[str], variants: list[str], loops: list[str], *, batch_size: int, steps: int,
             warmup: int, device: torch.device, in_chans: int = 5, img_size: int = 64, seed: int = 0,
             ref_workers: int | None = None, progress: bool = True) -> list[PerfRow]:
    """Measure every requested (backbone, variant, loop); loops a device cannot run are left out."""
    unknown = sorted(set(loops) - set(LOOPS))
    if unknown:
        raise ValueError(f"unknown loop(s) {unknown}; known: {', '.join(LOOPS)}")
    if device.type != "cuda":
        loops = [loop for loop in loops if loop != "cuda_graph"]
    for v in variants:
        make_variant(v)
    data = synthetic_inputs(batch_size * _DATA_BATCHES, in_chans, img_size, seed)
    cases = [(b, v, loop) for b in backbone_names for v in variants for loop in loops
             if loop != "reference" or v in REFERENCE_VARIANTS]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zpeft-perf-") as tmp:
        h5 = (write_hdf5(Path(tmp) / "reference.hdf5", data.images.read().astype(np.float32), data.z.numpy())
              if "reference" in loops else None)
        for backbone, variant, loop in tqdm(cases, desc="perf", disable=not progress, unit="case"):
            rows.append(_measure_case(backbone, variant, loop, data, h5, batch_size=batch_size, steps=steps,
                                      warmup=warmup, device=device, in_chans=in_chans, img_size=img_size,
                                      seed=seed, ref_workers=ref_workers))
    return rows


def _measure_case(backbone, variant, loop, data, h5, *, batch_size, steps, warmup, device, in_chans, img_size, seed,
                  ref_workers) -> PerfRow:
    model, strategy = _prepared(backbone, variant, in_chans, img_size, seed)
    row = PerfRow(backbone, variant, loop, batch_size, backbones.count_parameters(model, trainable_only=True))
    try:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        reset_peak_memory(device)
        if loop == "reference":
            row.train_img_s = reference_train_throughput(
                model, h5, batch_size=batch_size, steps=steps, warmup=warmup, device=device,
                bn_frozen=strategy.bn == "frozen", lr=strategy.default_lr, num_workers=ref_workers)
        else:
            row.train_img_s = measure_training(model, strategy, data, loop=loop, batch_size=batch_size, steps=steps, warmup=warmup,
                                               device=device, seed=seed)
            if loop == "eager":  # inference runs the same eager predict() whatever the training loop
                row.infer_img_s = measure_inference(model, data, batch_size=batch_size, device=device)
        row.peak_memory_mb, row.memory_kind = peak_memory_mb(device)
    except Exception as err:  # one case failing (e.g. out of memory) must not lose the others' numbers
        row.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]
    return row


def rows_table(rows: list[PerfRow]):
    """The rows as a pandas DataFrame, with speed-ups vs the reference loop and vs full fine-tuning."""
    import pandas as pd

    table = pd.DataFrame([r.__dict__ for r in rows])
    ref = table[table.loop == "reference"].set_index(["backbone", "variant"]).train_img_s
    full = table[table.variant == "full"].set_index(["backbone", "loop"]).train_img_s
    ref_full = ref.xs("full", level="variant") if len(ref) else pd.Series(dtype=float)
    table["x_reference_full"] = [r.train_img_s / ref_full.get(r.backbone, np.nan) if r.train_img_s else np.nan
                                 for r in table.itertuples()]
    table["x_full_same_loop"] = [r.train_img_s / full.get((r.backbone, r.loop), np.nan) if r.train_img_s else np.nan
                                 for r in table.itertuples()]
    return table
