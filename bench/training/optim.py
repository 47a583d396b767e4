"""The optimizer of every training step (torch's AdamW) and the learning-rate schedule both steppers follow.

`RateSchedule` says which (lr, beta1) is in force at each step. The default, `plateau`, warms
up linearly, then holds the rate and cuts it when validation stops improving: the rate never
depends on the epoch cap, so a run that ends by its stopping rule is the same run under any
larger cap. `onecycle` (torch's OneCycleLR values, stretched over the cap) and `constant` remain.
A captured CUDA graph would freeze Python-float hyperparameters at their capture-time values, so
the graphed step builds AdamW with `capturable=True` and `lr`, `beta1` as 0-d device tensors and
sets them in place before each replay; the eager step writes the same values into its groups.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

BETAS = (0.9, 0.999)


def adamw(params: list[Tensor], *, lr: float, weight_decay: float, device: torch.device,
          tensor_hypers: bool = False) -> torch.optim.AdamW:
    """torch AdamW for `params`; `tensor_hypers` keeps lr and beta1 in device tensors (graph-capturable on CUDA)."""
    if not params:
        raise ValueError("the optimizer needs at least one trainable parameter")
    cuda = device.type == "cuda"
    if not tensor_hypers:
        return torch.optim.AdamW(params, lr=lr, betas=BETAS, weight_decay=weight_decay,
                                 **({"fused": True} if cuda else {"foreach": True}))
    hypers = dict(lr=torch.tensor(float(lr), device=device),
                  betas=(torch.tensor(BETAS[0], device=device), torch.tensor(BETAS[1], device=device)))
    # capturable needs a CUDA-like device; on the CPU (tests of the graphed body) the single-tensor path
    # takes tensor hyperparameters too.
    return torch.optim.AdamW(params, weight_decay=weight_decay, capturable=cuda, foreach=cuda, **hypers)


def set_hypers(optimizer: torch.optim.Optimizer, lr: float, beta1: float) -> None:
    """Write this step's learning rate and beta1 into the optimizer's tensors, in place (no host sync)."""
    for group in optimizer.param_groups:
        group["lr"].fill_(lr)
        group["betas"][0].fill_(beta1)


def reset_state(optimizer: torch.optim.Optimizer) -> None:
    """Zero the step counts and moments in place: a fresh optimizer whose tensors keep their addresses."""
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, Tensor):
                value.zero_()


class RateSchedule:
    """(lr, beta1) per optimisation step; `cut()` lowers the plateau rate between epochs."""

    def __init__(self, lr: float, schedule: str, *, total_steps: int, warmup_steps: int = 0,
                 factor: float = 0.3) -> None:
        self.lr, self.schedule, self.total_steps = lr, schedule, total_steps
        self.warmup_steps, self.factor, self.scale = warmup_steps, factor, 1.0
        self.cuts = 0
        self.table = hyper_schedule(lr, total_steps, schedule) if schedule == "onecycle" else None

    def hypers(self, step: int) -> tuple[float, float]:
        """The (lr, beta1) of optimisation step `step` (0-based)."""
        if self.table is not None:
            if step >= len(self.table):
                raise RuntimeError(f"step {step + 1} is past the schedule's {len(self.table)} steps")
            return self.table[step]
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.schedule == "plateau" and self.warmup_steps else 1.0
        return self.lr * self.scale * warm, BETAS[0]

    def cut(self) -> None:
        """Multiply the plateau rate by `factor` (validation stopped improving); other schedules ignore it."""
        if self.schedule == "plateau":
            self.scale *= self.factor
            self.cuts += 1


def set_group_hypers(optimizer: torch.optim.Optimizer, lr: float, beta1: float) -> None:
    """Write this step's learning rate and beta1 into an eager optimizer's param groups (as torch schedulers do)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["betas"] = (beta1, group["betas"][1])


def hyper_schedule(lr: float, total_steps: int, schedule: str) -> list[tuple[float, float]]:
    """(lr, beta1) in force at each step, exactly as torch's OneCycleLR sets them on AdamW (or constant)."""
    probe = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([probe], lr=lr, betas=BETAS)
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
