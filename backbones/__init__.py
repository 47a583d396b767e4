"""Backbones: `create(name)` builds a redshift regressor; `list_backbones(pattern)` lists them."""

from backbones import custom as _custom  # noqa: F401  (registers the built-in CNNs)
from backbones.registry import count_parameters, create, is_known, list_backbones, register_backbone
from backbones.regressor import Regressor

__all__ = ["Regressor", "count_parameters", "create", "is_known", "list_backbones", "register_backbone"]
