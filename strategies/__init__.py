"""Adaptation strategies: `create(name, **params)` builds one, `list_strategies()` lists them.

Strategy classes are torch-free; peft and torch load when a strategy prepares a model.
"""

# Importing the strategy modules runs their @register_strategy decorators.
from zpeft.strategies import adapters as _adapters  # noqa: F401
from zpeft.strategies import retrain as _retrain  # noqa: F401
from zpeft.strategies import transfer as _transfer  # noqa: F401
from zpeft.strategies.base import Strategy
from zpeft.strategies.registry import STRATEGIES, create, list_strategies, parameters, register_strategy, strategy_class

__all__ = ["STRATEGIES", "Strategy", "create", "list_strategies", "parameters", "register_strategy", "strategy_class"]
