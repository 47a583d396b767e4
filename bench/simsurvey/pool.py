"""One process pool for every stage of the simulation (tiles, photo-z fit, stamps)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from typing import Callable, Iterable, Iterator, TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")
R = TypeVar("R")


def forked_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
               initializer: Callable[[], None] | None = None) -> Iterator[R]:
    """`fn` of each item, in order: in this process when workers <= 1 (or one item), else in a pool of processes.

    Forked where the platform allows: spawned workers would re-import the caller's main module,
    which breaks scripts without an `if __name__ == "__main__"` guard. `fn` must be a module-level
    function. Items not yet started are cancelled when the caller stops early (an error, a kill).
    Each worker does linear algebra on one thread (the workers fill the cores already) and exits
    within a second of its parent's death.
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1:  # a pool would only add its start-up (and lose this process's caches)
        for item in items:
            yield fn(item)
        return
    ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx, initializer=_start_worker,
                               initargs=(os.getpid(), initializer))
    try:
        yield from pool.map(fn, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(parent: int, initializer: Callable[[], None] | None) -> None:
    """Watch the parent, pin the worker's BLAS to one thread, then run the caller's initializer."""
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="zpeft-sim-parent-watch").start()
    single_threaded_blas()
    if initializer is not None:
        initializer()


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """End this worker when its parent is gone (killed with -9, say): an orphan would render on for nobody."""
    while True:
        time.sleep(every)
        if os.getppid() != parent:
            os._exit(1)


def single_threaded_blas() -> None:
    """Every BLAS/OpenMP pool loaded in this worker on one thread, for the rest of its life (threadpoolctl: in a
    fork the libraries are already up, so environment variables come too late). OpenBLAS threads spin-wait; on 2
    cores the quick preset's photo-z fit took 25 s in 2 workers of 2 threads each, 15 s with 1."""
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"  # for libraries loaded later
    threadpool_limits(limits=1)  # not a context: the limit stays until the worker exits
