"""One process pool for every stage of the simulation (tiles, photo-z fit, stamps)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def forked_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
               initializer: Callable[[], None] | None = None) -> Iterator[R]:
    """`fn` of each item, in order: in this process when workers <= 1 (or one item), else in a pool of processes.

    Forked where the platform allows: spawned workers would re-import the caller's main module,
    which breaks scripts without an `if __name__ == "__main__"` guard. `fn` must be a module-level
    function. Items not yet started are cancelled when the caller stops early (an error, a kill).
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:  # a pool would only add its start-up (and lose this process's caches)
        for item in items:
            yield fn(item)
        return
    ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx, initializer=initializer)
    try:
        yield from pool.map(fn, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
