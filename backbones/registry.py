"""Backbone registry: named factories returning redshift regressors, plus any timm model as `timm/<name>`.

Factories import torch only when called, so listing and checking names costs nothing. Backbones
from outside zpeft register the same way, from a module imported first: one named under the
entry-point group `zpeft.backbones` of an installed package, or one given to `zpeft run --import`.
Every model `create` returns is checked: a `Regressor` giving one redshift per image.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from zpeft.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from zpeft.backbones.regressor import Regressor

BACKBONES: Registry[Callable[..., Regressor]] = Registry("backbone")
TIMM_PREFIX = "timm/"
ENTRY_POINT_GROUP = "zpeft.backbones"
IMPORT_ENV = "ZPEFT_IMPORT"  # modules `--import` named, os.pathsep-separated: spawned workers import them too
_CHECK_BATCH = 2  # images in the forward pass that checks a new model's output shape
_loaded: set[str] = set()  # modules already imported
_entry_points_loaded = False


def register_backbone(name: str, *, head_names: list[str] | None = None,
                      block_names: list[str] | None = None) -> Callable:
    """Decorator: register a factory `(in_chans, img_size, **options) -> model` under `name`.

    The factory returns a `Regressor`; or a plain `nn.Module` with one output per image when
    `head_names` (its head's module names, as in `named_modules()`) are given here, and then
    it is wrapped in a Regressor with those names (and `block_names` for last-k fine-tuning).
    """

    def add(factory: Callable) -> Callable:
        if head_names is None:
            BACKBONES.add(name, factory)
            return factory

        @functools.wraps(factory)
        def wrapped(*args, **kwargs):
            from zpeft.backbones.regressor import Regressor

            net = factory(*args, **kwargs)
            if isinstance(net, Regressor):
                return net
            return Regressor(net, head_names=list(head_names), name=name,
                             block_names=None if block_names is None else list(block_names))

        BACKBONES.add(name, wrapped)
        return factory

    return add


def load_plugins() -> None:
    """Import the backbone modules of installed packages (entry points) and of `--import`, each once."""
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as err:
                raise ImportError(f"backbone entry point {ep.name!r} ({ep.value}, group {ENTRY_POINT_GROUP}) "
                                  f"does not import: {type(err).__name__}: {err}") from err
    for module in filter(None, os.environ.get(IMPORT_ENV, "").split(os.pathsep)):
        if module not in _loaded:
            _import(module)


def import_modules(modules: list[str]) -> None:
    """Import `modules` (dotted names on the path or in the current directory) so what they register is known.

    The names are kept in the environment (IMPORT_ENV), so worker processes spawned later import
    them as well. ImportError naming the module when one does not import.
    """
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does; the `zpeft` script's own folder is not the user's
    for module in modules:
        _import(module)
    known = [m for m in os.environ.get(IMPORT_ENV, "").split(os.pathsep) if m]
    os.environ[IMPORT_ENV] = os.pathsep.join(known + [m for m in modules if m not in known])


def _import(module: str) -> None:
    _loaded.add(module)
    try:
        importlib.import_module(module)
    except Exception as err:
        _loaded.discard(module)
        raise ImportError(f"module {module!r} does not import: {type(err).__name__}: {err} "
                          "(it must be on the Python path or in the current directory)") from err


def create(name: str, in_chans: int = 5, img_size: int = 64, **kwargs) -> Regressor:
    """Build backbone `name` mapping (B, in_chans, img_size, img_size) images to (B,) redshifts."""
    if name.startswith(TIMM_PREFIX):
        from zpeft.backbones.timm_models import timm_regressor

        return timm_regressor(name.removeprefix(TIMM_PREFIX), in_chans=in_chans, img_size=img_size, **kwargs)
    load_plugins()
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES.names())}, or timm/<any timm model>")
    model = BACKBONES.get(name)(in_chans=in_chans, img_size=img_size, **kwargs)
    return checked(model, name, in_chans, img_size)


def checked(model: object, name: str, in_chans: int, img_size: int) -> Regressor:
    """`model` when it is a Regressor giving shape (B,) on a batch of zeros; TypeError or ValueError in one line.

    The batch is zeros and the model runs in eval mode without gradients, so the check draws no
    random numbers and changes no BatchNorm statistics: a seeded run gives the same numbers with it.
    """
    import torch

    from zpeft.backbones.regressor import Regressor

    if not isinstance(model, Regressor):
        raise TypeError(f"backbone {name!r}: its factory returned a {type(model).__name__}, not a zpeft Regressor; "
                        "return zpeft.backbones.regressor.Regressor(net, head_names=[...]), or register the factory "
                        f"with register_backbone({name!r}, head_names=[...]) so zpeft wraps it")
    x = torch.zeros(_CHECK_BATCH, in_chans, img_size, img_size)
    training = model.training
    try:
        with torch.no_grad():
            model.eval()
            raw = model.net(x)
            out = model(x) if raw.numel() == _CHECK_BATCH else None
    except Exception as err:
        raise ValueError(f"backbone {name!r}: a batch of {_CHECK_BATCH} images of shape ({in_chans}, {img_size}, "
                         f"{img_size}) does not go through it: {type(err).__name__}: {err}") from None
    finally:
        model.train(training)
    if out is None or tuple(raw.shape) not in ((_CHECK_BATCH,), (_CHECK_BATCH, 1)) or tuple(out.shape) != (_CHECK_BATCH,):
        got = tuple(raw.shape) if out is None else tuple(out.shape)
        raise ValueError(f"backbone {name!r}: gives outputs of shape {got} for a batch of {_CHECK_BATCH}; a backbone "
                         "gives one redshift per image, shape (B,) (its network (B,) or (B, 1))")
    return model


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered names matching a shell wildcard; `timm/<pattern>` lists timm's models (imports timm)."""
    if pattern.startswith(TIMM_PREFIX):
        import timm

        return [TIMM_PREFIX + m for m in timm.list_models(pattern.removeprefix(TIMM_PREFIX))]
    load_plugins()
    return BACKBONES.names(pattern)


def is_known(name: str) -> bool:
    """True for a registered name, or a timm model name timm knows (asking timm imports it)."""
    if name.startswith(TIMM_PREFIX):
        import timm

        return timm.is_model(name.removeprefix(TIMM_PREFIX))
    load_plugins()
    return name in BACKBONES


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
