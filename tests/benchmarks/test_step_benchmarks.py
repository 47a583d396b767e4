"""Micro-benchmarks: one training step and one inference batch per strategy (pytest-benchmark).

Off by default (pyproject passes --benchmark-disable: each runs once as a test). Time them with
`pytest tests/benchmarks --benchmark-enable`; on CUDA they use the GPU (`ZPEFT_BENCH_DEVICE=cpu` forces CPU, `ZPEFT_BENCH_BATCH` sets the batch).
"""

from __future__ import annotations

import os

import pytest
import torch

from zpeft import backbones
from zpeft.perf.throughput import make_variant, synthetic_inputs
from zpeft.training.batches import place
from zpeft.training.loop import predict, set_train_mode
from zpeft.training.losses import hsc_loss
from zpeft.training.optim import RateSchedule
from zpeft.training.steps import EagerStep

DEVICE = torch.device(os.environ.get("ZPEFT_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
BATCH = int(os.environ.get("ZPEFT_BENCH_BATCH", 8 if DEVICE.type == "cpu" else 256))
CASES = [(b, v) for b in ("cnn-small", "resnet18-mlp") for v in ("full", "lora-r4-peft", "lora-r4-fused", "head-only")]


def _setup(backbone: str, variant: str, steps: int):
    torch.manual_seed(0)
    strategy = make_variant(variant)
    model = strategy.prepare(backbones.create(backbone, img_size=64)).to(DEVICE)
    if DEVICE.type == "cuda":
        model.to(memory_format=torch.channels_last)
    x = torch.randn(BATCH, 5, 64, 64, device=DEVICE)
    y = 3 * torch.rand(BATCH, device=DEVICE)
    set_train_mode(model, strategy.bn == "frozen")
    params = [p for p in model.parameters() if p.requires_grad]
    step = EagerStep(model, params, hsc_loss, lr=strategy.default_lr, weight_decay=1e-4,
                     schedule=RateSchedule(strategy.default_lr, "constant", total_steps=steps), device=DEVICE)
    return model, step, x, y


def _synced(fn):
    def run():
        fn()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
    return run


@pytest.mark.parametrize("backbone, variant", CASES)
def test_train_step(benchmark, backbone, variant):
    model, step, x, y = _setup(backbone, variant, steps=1000)
    step.step(x, y)  # first step allocates optimizer state
    before = float(step.loss_sum)
    benchmark(_synced(lambda: step.step(x, y)))
    assert float(step.loss_sum) > before  # the benchmarked call did train


@pytest.mark.parametrize("backbone, variant", CASES)
def test_inference_batch(benchmark, backbone, variant):
    model, _, _, _ = _setup(backbone, variant, steps=1)
    raw = place(synthetic_inputs(BATCH, 5, 64, seed=0), DEVICE, "device")  # preprocessed per batch, as in runs
    out = benchmark(lambda: predict(model, raw, DEVICE, batch_size=BATCH))
    assert out.shape == (BATCH,)
