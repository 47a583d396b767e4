"""Backbones: `create(name)` builds a redshift regressor; `list_backbones(pattern)` lists them.

`Regressor` (the wrapper every backbone returns) lives in `zpeft.backbones.regressor`, which imports torch.
"""

from zpeft.backbones import custom as _custom  # noqa: F401  (registers the built-in CNNs)
from zpeft.backbones.registry import (
    BACKBONES,
    checked,
    count_parameters,
    create,
    import_modules,
    is_known,
    list_backbones,
    register_backbone,
)

__all__ = ["BACKBONES", "checked", "count_parameters", "create", "import_modules", "is_known", "list_backbones",
           "register_backbone"]
