"""Strategy registry: `create(name, **params)`, `list_strategies()`, third-party entry points."""

from __future__ import annotations

import fnmatch
from importlib.metadata import entry_points

from strategies.base import Strategy

_STRATEGIES: dict[str, type[Strategy]] = {}
ENTRY_POINT_GROUP = "zpeft.strategies"
_plugins_loaded = False


def register_strategy(name: str):
    """Class decorator: register a Strategy subclass under `name`."""

    def add(cls: type[Strategy]) -> type[Strategy]:
        if name in _STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice")
        if not issubclass(cls, Strategy):
            raise TypeError(f"strategy {name!r}: {cls.__name__} is not a Strategy subclass")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return add


def _load_plugins() -> None:
    """Import third-party strategies declared under the `zpeft.strategies` entry-point group once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()  # importing the module runs its @register_strategy decorators


def strategy_class(name: str) -> type[Strategy]:
    _load_plugins()
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(_STRATEGIES))}") from None


def create(name: str, **params) -> Strategy:
    """Instantiate strategy `name`; unknown parameters are an error naming the accepted ones."""
    cls = strategy_class(name)
    accepted = sorted(f for f in cls.__dataclass_fields__)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"strategy {name!r} has no parameter(s) {unknown}; accepted: {accepted}")
    return cls(**params)


def list_strategies(pattern: str = "*") -> list[str]:
    _load_plugins()
    return sorted(n for n in _STRATEGIES if fnmatch.fnmatch(n, pattern))
