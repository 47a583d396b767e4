"""Strategy registry: `create(name, **params)`, `list_strategies()`, and third-party entry points.

A third-party package registers strategies by naming a module under the entry-point group
`zpeft.strategies`; the module's `@register_strategy` decorators run when it is imported.
"""

from __future__ import annotations

from dataclasses import fields
from importlib.metadata import entry_points

from zpeft.registry import Registry
from zpeft.strategies.base import Strategy

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
ENTRY_POINT_GROUP = "zpeft.strategies"
_plugins_loaded = False


def register_strategy(name: str):
    """Class decorator: register a Strategy subclass under `name` (which becomes its `name`)."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        if not issubclass(cls, Strategy):
            raise TypeError(f"strategy {name!r}: {cls.__name__} is not a Strategy subclass")
        STRATEGIES.add(name, cls)
        cls.name = name
        return cls

    return add


def _load_plugins() -> None:
    """Import third-party strategies declared under the `zpeft.strategies` entry-point group once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as `name`; KeyError listing the known names otherwise."""
    _load_plugins()
    return STRATEGIES.get(name)


def parameters(name: str) -> list[str]:
    """The parameters strategy `name` accepts (its dataclass fields, `bn` included)."""
    return sorted(f.name for f in fields(strategy_class(name)))


def create(name: str, **params) -> Strategy:
    """Instantiate strategy `name`; unknown parameters are an error naming the accepted ones."""
    cls = strategy_class(name)
    accepted = parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"strategy {name!r} has no parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    return cls(**params)


def list_strategies(pattern: str = "*") -> list[str]:
    """Registered strategy names matching a shell wildcard."""
    _load_plugins()
    return STRATEGIES.names(pattern)
