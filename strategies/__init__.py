"""Adaptation strategies: `create(name, **params)` builds one, `list_strategies()` lists them."""

from strategies.base import Strategy
from strategies.registry import create, list_strategies, register_strategy, strategy_class
from strategies import adapters as _adapters, retrain as _retrain, transfer as _transfer  # noqa: F401  (register)

__all__ = ["Strategy", "create", "list_strategies", "register_strategy", "strategy_class"]
