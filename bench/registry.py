"""One registry mechanism for every kind of plugin: named items, found by name or by shell wildcard.

Backbones, strategies, datasets, metrics, losses and executors each keep one `Registry`;
kinds with special names (`timm/<model>`) resolve those in their own `create` first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named items of one kind; an unknown name is a KeyError that lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: add `item` under `name` (a name registered twice is an error)."""

        def add(item: T) -> T:
            self.add(name, item)
            return item

        return add

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item

    def remove(self, name: str) -> T:
        """Take `name` out again (a plugin that lives only for a while, such as a test's) and return it."""
        try:
            return self._items.pop(name)
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    __getitem__ = get

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell wildcard, sorted."""
        return sorted(n for n in self._items if fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self):
        """(name, item) pairs in registration order."""
        return self._items.items()

    def values(self):
        """Items in registration order."""
        return self._items.values()
