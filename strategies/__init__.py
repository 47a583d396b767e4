"""Adaptation strategies: `create(name, **params)` builds one, `list_strategies()` lists them."""

# Importing the strategy modules runs their @register_strategy decorators.
from strategies import adapters as _adapters  # noqa: F401
from strategies import retrain as _retrain  # noqa: F401
from strategies import transfer as _transfer  # noqa: F401
from strategies.base import Strategy
from strategies.registry import create, list_strategies, register_strategy, strategy_class

__all__ = ["Strategy", "create", "list_strategies", "register_strategy", "strategy_class"]
