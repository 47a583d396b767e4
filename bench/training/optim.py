"""The optimizer of every training step: torch's AdamW, plus the schedule table a captured graph replays.

Eager steps use AdamW (fused on CUDA) with torch's OneCycleLR. A captured CUDA graph would
freeze Python-float hyperparameters at their capture-time values, and OneCycleLR cycles both
the learning rate and beta1, replacing beta1 by a float. So the graphed step builds the same
AdamW with `capturable=True` and `lr`, `beta1` as 0-d device tensors, and sets them in place
before each replay from `hyper_schedule`, the values OneCycleLR would have set.
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
