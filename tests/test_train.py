"""The training loop on CPU: deterministic, never worse than its start, ended by its rule; graph step = eager step."""

from __future__ import annotations

import copy

import pytest
import torch

from zpeft import backbones, strategies
from zpeft.data.preprocess import Preprocessor
from zpeft.data.rows import ImageRows
from zpeft.data.synthetic import toy_pair
from zpeft.run.prepared import prepare_data
from zpeft.training.batches import Inputs, batches, preprocessed
from zpeft.training.loop import make_step, train
from zpeft.training.losses import hsc_loss
from zpeft.training.optim import RateSchedule, adamw, hyper_schedule, reset_state, set_hypers
from zpeft.training.settings import TrainSettings
from zpeft.training.steps import EagerStep, GraphStep

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def spec_xy():
    data = prepare_data(toy_pair(n_photo=200, n_spec=200, size=16))
    return data.inputs("spec", "train"), data.inputs("spec", "val")


def _network_ready(inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole set as one preprocessed batch, in row order."""
    return next(batches(inputs, torch.arange(len(inputs)), len(inputs), CPU))


def _model(strategy: str = "full", **params):
    torch.manual_seed(0)
    return strategies.create(strategy, **params).prepare(backbones.create("cnn-small", img_size=16))


def test_settings_reject_unknown_data_placement():
    with pytest.raises(ValueError, match="data_placement"):
        TrainSettings(data_placement="gpu")


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_cpu_training_is_deterministic(spec_xy, strategy):
    settings = TrainSettings(epochs=2, batch_size=32, lr=2e-3)
    runs = []
    for _ in range(2):
        model = _model(strategy)
        result = train(model, *spec_xy, settings, device=CPU, seed=3, bn_frozen=strategy != "full", progress=False)
        runs.append((result, model.state_dict()))
    (r1, s1), (r2, s2) = runs
    assert r1.history == r2.history and r1.step_mode == "eager"
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_cuda_graph_and_host_placement_change_nothing_on_cpu(spec_xy):
    plain = TrainSettings(epochs=2, batch_size=32, lr=2e-3)
    fast = TrainSettings(epochs=2, batch_size=32, lr=2e-3, cuda_graph=True, data_placement="host")
    results = [train(_model(), *spec_xy, s, device=CPU, seed=1, bn_frozen=False, progress=False) for s in (plain, fast)]
    assert results[0].history == results[1].history
    assert results[1].step_mode == "eager"


def test_tensor_hyperparameter_adamw_follows_torch_adamw_with_one_cycle():
    """The graphed step's AdamW, its lr and beta1 set in place from hyper_schedule, follows OneCycleLR exactly."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 1))
    twin = copy.deepcopy(model)
    steps = 12
    reference = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3, foreach=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=1e-2, total_steps=steps)
    device_opt = adamw(list(twin.parameters()), lr=1e-2, weight_decay=1e-3, device=CPU, tensor_hypers=True)
    schedule = hyper_schedule(1e-2, steps, "onecycle")
    assert len({beta1 for _, beta1 in schedule}) > 1  # one-cycle moves beta1 too: a frozen beta1 would differ
    for i in range(steps):
        x = torch.randn(4, 3, 8, 8)
        for m in (model, twin):
            m.zero_grad(set_to_none=True)
            (m(x) ** 2).mean().backward()
        reference.step()
        scheduler.step()
        set_hypers(device_opt, *schedule[i])
        device_opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_optimizer_reset_state_equals_fresh_optimizer():
    p = torch.nn.Parameter(torch.ones(3))
    opt = adamw([p], lr=0.1, weight_decay=1e-2, device=CPU, tensor_hypers=True)
    p.grad = torch.ones(3)
    opt.step()
    reset_state(opt)
    with torch.no_grad():
        p.fill_(1.0)
    opt.step()
    fresh_p = torch.nn.Parameter(torch.ones(3))
    fresh = adamw([fresh_p], lr=0.1, weight_decay=1e-2, device=CPU, tensor_hypers=True)
    fresh_p.grad = torch.ones(3)
    fresh.step()
    torch.testing.assert_close(p, fresh_p)


def test_graph_step_body_matches_eager_step(spec_xy):
    """GraphStep without capture runs the captured body: same losses and weights as the eager step."""
    x, y = _network_ready(spec_xy[0])
    steps, batch = 6, 16
    models = [_model("lora"), _model("lora")]
    def kwargs():
        return dict(lr=2e-3, weight_decay=1e-4, schedule=RateSchedule(2e-3, "onecycle", total_steps=steps), device=CPU)
    eager = EagerStep(models[0], [p for p in models[0].parameters() if p.requires_grad], hsc_loss, **kwargs())
    body = GraphStep(models[1], [p for p in models[1].parameters() if p.requires_grad], hsc_loss,
                     sample=(x[:batch], y[:batch]), capture=False, **kwargs())
    for m in models:
        m.train()
    for i in range(steps):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        for stepper in (eager, body):
            torch.manual_seed(i)  # same dropout masks for both
            stepper.step(xb, yb)
    torch.testing.assert_close(eager.loss_sum, body.loss_sum, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(RuntimeError, match="past the schedule"):
        body.step(x[:batch], y[:batch])


def test_make_step_is_eager_on_cpu_even_when_graph_asked(spec_xy):
    model = _model()
    settings = TrainSettings(lr=1e-3, cuda_graph=True)
    step = make_step(model, list(model.parameters()), hsc_loss, settings, device=CPU,
                     schedule=RateSchedule(1e-3, "plateau", total_steps=2),
                     sample=tuple(t[:4] for t in _network_ready(spec_xy[0])))
    assert isinstance(step, EagerStep)


def test_batches_yield_rows_in_the_given_order_preprocessed():
    pixels = torch.arange(10.0).reshape(10, 1, 1, 1).expand(10, 1, 3, 3).half().numpy()
    identity = Preprocessor(sky_sigma=(1 / 3,), mean=(0.0,), std=(1.0,))  # asinh(pixel) only
    inputs = Inputs(ImageRows.of(pixels), torch.arange(10.0), identity)
    order = torch.tensor([3, 1, 4, 0, 9, 2, 6, 5, 7, 8])
    got = list(batches(inputs, order, 3, CPU))
    assert [b[1].tolist() for b in got] == [[3, 1, 4], [0, 9, 2], [6, 5, 7]]  # the ragged tail is dropped
    assert all(bx.dtype == torch.float32 and torch.equal(bx[:, 0, 1, 1], torch.asinh(by)) for bx, by in got)
    kept = list(batches(inputs, order, 3, CPU, drop_last=False))
    assert kept[-1][1].tolist() == [8.0]


@pytest.mark.slow
def test_compiled_training_learns_like_eager():
    data = prepare_data(toy_pair(n_photo=200, n_spec=600, size=16))
    xy = data.inputs("spec", "train"), data.inputs("spec", "val")
    settings = dict(epochs=4, batch_size=32, lr=2e-3)
    eager = train(_model(), *xy, TrainSettings(**settings), device=CPU, seed=1, bn_frozen=False, progress=False)
    compiled = train(_model(), *xy, TrainSettings(**settings, compile=True), device=CPU, seed=1, bn_frozen=False,
                     progress=False)
    assert compiled.step_mode == "compiled"
    # Compiled dropout draws other random numbers: compare the learning, not the trajectory.
    first, last = compiled.history[0]["train_loss"], compiled.history[-1]["train_loss"]
    assert last < 0.5 * first
    assert last == pytest.approx(eager.history[-1]["train_loss"], rel=0.5)


def test_the_stopping_rule_ends_a_run_that_stops_improving_and_says_so(spec_xy):
    # lr 1e-30 leaves float32 weights exactly as they are: validation never improves, so after the one warm-up
    # epoch (which does not count) patience 1 stops at epoch 2.
    frozen = train(_model("head-only"), *spec_xy, TrainSettings(epochs=6, batch_size=32, lr=1e-30, patience=1),
                   device=CPU, seed=0, bn_frozen=True, progress=False)
    assert frozen.epochs_run == 2 and frozen.ended_by == "stopping rule"
    learning = train(_model("head-only"), *spec_xy, TrainSettings(epochs=2, batch_size=32, lr=2e-3, patience=1),
                     device=CPU, seed=0, bn_frozen=True, progress=False)
    assert learning.epochs_run == 2 and learning.ended_by == "epoch cap"


def test_a_fine_tune_at_a_destructive_rate_returns_its_starting_weights_exactly(spec_xy):
    """Epoch 0 is validated: when no epoch beats the start, the start comes back bit for bit (best_epoch 0)."""
    model = _model("full")
    start = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, *spec_xy, TrainSettings(epochs=4, batch_size=32, lr=50.0, patience=2, warmup_epochs=0),
                   device=CPU, seed=0, bn_frozen=False, validate_start=True, progress=False)
    assert result.best_epoch == 0 and result.history[0]["epoch"] == 0
    assert result.best_val_loss == result.history[0]["val_loss"]
    assert all(h["val_loss"] > result.best_val_loss for h in result.history[1:])
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    # Without validating the start, the same training keeps its best (worse) epoch instead.
    worse = train(_model("full"), *spec_xy, TrainSettings(epochs=4, batch_size=32, lr=50.0, patience=2,
                                                          warmup_epochs=0),
                  device=CPU, seed=0, bn_frozen=False, progress=False)
    assert worse.best_epoch >= 1 and worse.best_val_loss > result.best_val_loss


def test_plateau_schedule_warms_up_then_holds_then_cuts():
    schedule = RateSchedule(1e-2, "plateau", total_steps=100, warmup_steps=4, factor=0.5)
    assert [round(schedule.hypers(i)[0], 6) for i in range(5)] == [0.0025, 0.005, 0.0075, 0.01, 0.01]
    assert schedule.hypers(99)[0] == schedule.hypers(1000)[0] == 1e-2  # no cap: the rate never runs out
    schedule.cut()
    assert schedule.hypers(50) == (5e-3, 0.9) and schedule.cuts == 1
    assert RateSchedule(1e-2, "constant", total_steps=10).hypers(0) == (1e-2, 0.9)


def test_plateau_training_does_not_depend_on_the_epoch_cap(spec_xy):
    """A run that ends by its stopping rule is the same run under a larger cap (the schedule ignores the cap)."""
    runs = [train(_model("lora"), *spec_xy, TrainSettings(epochs=cap, batch_size=32, lr=3e-2, patience=1),
                  device=CPU, seed=2, bn_frozen=True, validate_start=True, progress=False) for cap in (12, 24)]
    assert runs[0].ended_by == "stopping rule" and runs[0].history == runs[1].history


def test_preprocessing_a_set_once_gives_the_batches_bitwise(spec_xy):
    inputs = spec_xy[0]
    once = preprocessed(inputs)
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(0))
    for (a, ya), (b, yb) in zip(batches(inputs, order, 16, CPU), batches(once, order, 16, CPU)):
        assert torch.equal(a, b) and torch.equal(ya, yb)
