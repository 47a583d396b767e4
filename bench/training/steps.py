"""One optimisation step of the training loop, run eagerly or replayed from a captured CUDA graph.

A step is forward (bf16 autocast on CUDA), loss, backward, AdamW update, learning-rate
schedule and a device-side running loss sum. Eagerly a ResNet18 step at 64x64 is bound by
kernel launches on an H100; capturing the whole step once and replaying it removes the
launches. Both steppers expose `step(xb, yb)`, `loss_sum` and `reset_loss()`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from zpeft.training.optim import RateSchedule, adamw, reset_state, set_group_hypers, set_hypers
from zpeft.training.weights import restore, snapshot

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before capture, as CUDA graph capture requires


class EagerStep:
    """The plain step: torch AdamW (fused on CUDA, foreach on CPU), its rate and beta1 set from a RateSchedule."""

    mode = "eager"

    def __init__(self, model: nn.Module, params: list[Tensor], loss_fn: Callable, *, lr: float, weight_decay: float,
                 schedule: RateSchedule, device: torch.device, compile: bool = False) -> None:
        self.forward = torch.compile(model) if compile else model
        self.mode = "compiled" if compile else "eager"
        self.loss_fn = loss_fn
        self.device = device
        self.optimizer = adamw(params, lr=lr, weight_decay=weight_decay, device=device)
        self.schedule = schedule
        self.calls = 0
        self.loss_sum = torch.zeros((), device=device)

    def reset_loss(self) -> None:
        self.loss_sum.zero_()

    def step(self, xb: Tensor, yb: Tensor) -> None:
        set_group_hypers(self.optimizer, *self.schedule.hypers(self.calls))
        self.calls += 1
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.loss_fn(self.forward(xb).float(), yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach()


class GraphStep:
    """The whole step captured in a CUDA graph over static input buffers, replayed for every batch.

    The optimizer is torch's AdamW with tensor (lr, beta1), set in place before each replay
    from the same RateSchedule the eager step follows. Warm-up steps (needed before capture)
    change weights, BatchNorm statistics, optimizer state and RNG; all are restored, so the
    graphed run starts where an eager run would. `capture=False` runs the same body eagerly:
    on CPU it checks everything but the capture itself.
    """

    mode = "cuda_graph"

    def __init__(self, model: nn.Module, params: list[Tensor], loss_fn: Callable, *, lr: float, weight_decay: float,
                 schedule: RateSchedule, device: torch.device, sample: tuple[Tensor, Tensor],
                 compile: bool = False, capture: bool = True) -> None:
        self.model = model
        self.forward = torch.compile(model) if compile else model
        self.loss_fn = loss_fn
        self.device = device
        self.capture = capture
        if not capture:
            self.mode = "graph_body_eager"
        self.schedule = schedule
        self.optimizer = adamw(params, lr=lr, weight_decay=weight_decay, device=device, tensor_hypers=True)
        layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self.x = torch.empty_like(sample[0], device=device).contiguous(memory_format=layout)
        self.y = torch.empty_like(sample[1], device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.calls = 0
        self.graph = self._capture(sample) if capture else None

    def _body(self) -> None:
        # The autocast cache would hold casts made during capture: graphs need it off.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda",
                            cache_enabled=False):
            loss = self.loss_fn(self.forward(self.x).float(), self.y)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach()

    def _capture(self, sample: tuple[Tensor, Tensor]) -> torch.cuda.CUDAGraph:
        saved = snapshot(self.model)
        rng = torch.cuda.get_rng_state(self.device), torch.get_rng_state()
        self.x.copy_(sample[0])
        self.y.copy_(sample[1])
        set_hypers(self.optimizer, *self.schedule.hypers(0))
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                self._body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        restore(self.model, saved)
        reset_state(self.optimizer)
        self.loss_sum.zero_()
        torch.cuda.set_rng_state(rng[0], self.device)
        torch.set_rng_state(rng[1])
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # grads are then allocated inside the graph's pool, at fixed addresses
        with torch.cuda.graph(graph):
            self._body()
        return graph

    def reset_loss(self) -> None:
        self.loss_sum.zero_()

    def step(self, xb: Tensor, yb: Tensor) -> None:
        set_hypers(self.optimizer, *self.schedule.hypers(self.calls))
        self.calls += 1
        self.x.copy_(xb)
        self.y.copy_(yb)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self._body()
