"""AdamW whose learning rate and beta1 live in device tensors, so a CUDA graph can replay a scheduled step.

torch's fused AdamW reads beta1 as a Python float, which a captured graph would freeze at
its capture-time value, while the one-cycle schedule cycles beta1 with the learning rate.
This optimizer uses only foreach ops whose scalars are device tensors; `hyper_schedule`
gives the (lr, beta1) torch's OneCycleLR would set before each step, so a graphed run
follows the eager run's schedule exactly.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


class DeviceAdamW:
    """AdamW (decoupled weight decay, torch's update rule) with `lr` and `beta1` as 0-d device tensors."""

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 1e-2, eps: float = 1e-8) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("DeviceAdamW needs at least one parameter")
        device = self.params[0].device
        self.lr = torch.tensor(float(lr), device=device)
        self.beta1 = torch.tensor(float(betas[0]), device=device)
        self.beta2 = float(betas[1])
        self.weight_decay = float(weight_decay)
        self.eps = float(eps)
        self.steps = torch.zeros((), device=device)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def set_hyper(self, lr: float, beta1: float) -> None:
        """Set this step's learning rate and beta1 in place (no host sync, graph stays valid)."""
        self.lr.fill_(lr)
        self.beta1.fill_(beta1)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def reset_state(self) -> None:
        """Back to a fresh optimizer without reallocating (captured graphs keep their addresses)."""
        self.steps.zero_()
        torch._foreach_zero_(self.exp_avg)
        torch._foreach_zero_(self.exp_avg_sq)

    @torch.no_grad()
    def step(self) -> None:
        missing = [i for i, p in enumerate(self.params) if p.grad is None]
        if missing:
            raise RuntimeError(f"DeviceAdamW: parameters {missing[:5]} have no gradient; every trained "
                               "parameter must take part in the loss for a graphed step")
        params, grads = self.params, [p.grad for p in self.params]
        self.steps += 1
        torch._foreach_mul_(params, 1 - self.lr * self.weight_decay)
        torch._foreach_mul_(self.exp_avg, self.beta1)
        torch._foreach_add_(self.exp_avg, torch._foreach_mul(grads, 1 - self.beta1))
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1 - self.beta2)
        neg_step_size = -self.lr / (1 - self.beta1**self.steps)
        bias_correction2_sqrt = (1 - self.beta2**self.steps).sqrt()
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_div_(denom, neg_step_size)
        torch._foreach_addcdiv_(params, self.exp_avg, denom)


def hyper_schedule(lr: float, total_steps: int, schedule: str) -> list[tuple[float, float]]:
    """(lr, beta1) in force at each step, exactly as torch's OneCycleLR sets them on AdamW (or constant)."""
    probe = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([probe], lr=lr)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
                 if schedule == "onecycle" else None)
    out = []
    for _ in range(total_steps):
        group = optimizer.param_groups[0]
        out.append((float(group["lr"]), float(group["betas"][0])))
        if scheduler is not None:
            with warnings.catch_warnings():  # the probe never steps; only the schedule's values matter
                warnings.simplefilter("ignore", UserWarning)
                scheduler.step()
    return out
