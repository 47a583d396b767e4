"""CUDA-only checks of the fast paths: graph vs eager training, host prefetch, bf16 fused LoRA, perf rows.

Skipped without CUDA. Run on a GPU machine with `pytest tests/test_gpu.py`.
"""

from __future__ import annotations

import copy

import pytest
import torch

from zpeft import backbones, strategies
from zpeft.data.preprocess import Preprocessor
from zpeft.data.rows import ImageRows
from zpeft.data.synthetic import toy_pair
from zpeft.perf.throughput import rows_table, run_perf
from zpeft.run.prepared import prepare_data
from zpeft.strategies.fast_lora import unfuse_lora
from zpeft.training.batches import Inputs, batches, place
from zpeft.training.loop import train
from zpeft.training.settings import TrainSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def spec_xy():
    data = prepare_data(toy_pair(n_photo=200, n_spec=1200, size=32))
    return data.inputs("spec", "train"), data.inputs("spec", "val")


def _model(strategy="full", backbone="cnn-small", img_size=32, **params):
    torch.manual_seed(0)
    return strategies.create(strategy, **params).prepare(backbones.create(backbone, img_size=img_size))


@pytest.mark.parametrize("strategy, bn_frozen", [("full", False), ("lora", True)])
def test_cuda_graph_training_follows_eager_loss_curve(spec_xy, strategy, bn_frozen):
    settings = dict(epochs=4, batch_size=64, lr=2e-3, patience=10)
    eager = train(_model(strategy), *spec_xy, TrainSettings(**settings), device=CUDA, seed=0, bn_frozen=bn_frozen,
                  progress=False)
    graph = train(_model(strategy), *spec_xy, TrainSettings(**settings, cuda_graph=True), device=CUDA, seed=0,
                  bn_frozen=bn_frozen, progress=False)
    assert graph.step_mode == "cuda_graph" and eager.step_mode == "eager"
    # Same data order and augmentation; dropout masks and bf16 rounding differ, so curves agree within tolerance.
    for e, g in zip(eager.history, graph.history, strict=True):
        assert g["train_loss"] == pytest.approx(e["train_loss"], rel=0.15, abs=0.01)
        assert g["val_loss"] == pytest.approx(e["val_loss"], rel=0.25, abs=0.02)


def test_graph_warmup_leaves_no_trace_on_first_step(spec_xy):
    """A one-step graphed run starts from the same weights as eager: its loss equals eager's first loss."""
    settings = dict(epochs=1, batch_size=len(spec_xy[0]) // 2, lr=1e-3, augment=False, schedule="constant")
    model = _model("head-only")  # BatchNorm frozen and dropout off below: deterministic losses
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    runs = [train(copy.deepcopy(model), *spec_xy, TrainSettings(**settings, cuda_graph=g), device=CUDA, seed=0,
                  bn_frozen=True, progress=False) for g in (False, True)]
    assert runs[1].history[0]["train_loss"] == pytest.approx(runs[0].history[0]["train_loss"], rel=0.02)


def test_host_prefetch_gives_the_device_batches():
    pixels = torch.randn(100, 5, 8, 8).half().numpy()
    host = Inputs(ImageRows.of(pixels), torch.randn(100), Preprocessor.fit(pixels, crop=6))
    on_device = place(host, CUDA, "device")
    assert on_device.storage == "device" and host.storage == "memory"
    order = torch.randperm(100)
    placed = [tuple(t.cpu() for t in b) for b in batches(on_device, order, 16, CUDA)]
    prefetched = [tuple(t.cpu() for t in b) for b in batches(host, order, 16, CUDA)]
    assert len(placed) == 6 and placed[0][0].shape == (16, 5, 6, 6)
    for (xa, ya), (xb, yb) in zip(placed, prefetched, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_host_placement_trains_like_device_placement(spec_xy):
    settings = dict(epochs=2, batch_size=64, lr=2e-3)
    runs = [train(_model(), *spec_xy, TrainSettings(**settings, data_placement=p), device=CUDA, seed=0,
                  bn_frozen=False, progress=False) for p in ("device", "host")]
    for a, b in zip(runs[0].history, runs[1].history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.02)


def test_fused_lora_matches_peft_under_bf16_autocast():
    model = _model("lora", backbone="resnet18-mlp", img_size=64).to(CUDA).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.to(memory_format=torch.channels_last)
    x = torch.randn(16, 5, 64, 64, device=CUDA).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        fused = model(x).float()
        unfuse_lora(model)
        plain = model(x).float()
    torch.testing.assert_close(fused, plain, rtol=0.05, atol=0.05)


def test_perf_measures_graph_loop_and_lora_at_least_as_fast_as_peft():
    rows = run_perf(["resnet18-mlp"], ["full", "lora-r4-peft", "lora-r4-fused"], ["eager", "cuda_graph"],
                    batch_size=256, steps=20, warmup=5, device=CUDA, progress=False)
    table = rows_table(rows)
    assert table.error.isna().all(), table.error.tolist()
    speed = table.set_index(["variant", "loop"]).train_img_s
    assert speed["lora-r4-fused", "eager"] > speed["lora-r4-peft", "eager"]
    assert speed["full", "cuda_graph"] > speed["full", "eager"]
