"""Ways to execute a suite's pending runs: in this process, in a pool of processes, or as Ray tasks.

Every executor gets the same pending runs and calls `done(record)` as each finishes; records
and base models are files written atomically by whichever process made them, so none of them
assumes one process. Base models go first; runs that start from scratch do not wait for them,
and runs that start from a base model start as soon as it is on disk.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import TYPE_CHECKING

from zpeft.conventions import DEFAULT_WORKERS
from zpeft.registry import Registry

if TYPE_CHECKING:  # the run machinery (torch) loads when an executor runs, not when the CLI lists them
    from zpeft.run.execute import RunContext
    from zpeft.run.plan import PlannedRun
    from zpeft.run.records import RunRecord

Done = Callable[["RunRecord"], None]
EXECUTORS: Registry[Callable[..., None]] = Registry("executor")


def run_threads(executor: str, workers: int | None = None) -> int:
    """Torch threads per run under `executor`: this process's for local, cores // workers for process, 1 for Ray."""
    if executor == "process":
        return max(1, cpu_cores() // (DEFAULT_WORKERS if workers is None else max(1, workers)))
    if executor == "ray":
        return 1  # a Ray task gets one CPU unless told otherwise
    import torch

    return torch.get_num_threads()


def run_pending(pending: list[PlannedRun], ctx: RunContext, done: Done, executor: str = "local",
                workers: int | None = None) -> None:
    """Execute `pending` with the named executor, calling `done` with each run's record."""
    EXECUTORS.get(executor)(pending, ctx, done, workers=workers)


@EXECUTORS.register("local")
def run_local(pending: list[PlannedRun], ctx: RunContext, done: Done, workers: int | None = None) -> None:
    """One after the other in this process (the runs come grouped by base model, so each is trained once)."""
    from zpeft.run.execute import execute_run

    for planned in pending:
        done(execute_run(planned, ctx))


# --- a pool of local processes ------------------------------------------------------------------------------------

def cpu_cores() -> int:
    """Cores this process may use (the affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return os.cpu_count() or 1


MAX_ATTEMPTS = 2  # a job in flight when a worker dies is retried once, then recorded as failed


@EXECUTORS.register("process")
def run_processes(pending: list[PlannedRun], ctx: RunContext, done: Done, workers: int | None = None) -> None:
    """A pool of `workers` processes, each with cores // workers torch threads.

    Runs are independent, so on a small CPU several single-threaded trainings beat one
    multi-threaded one (small convolutions scale poorly across threads). Workers are spawned,
    not forked: a forked copy of a process that already started torch's thread pools can hang.
    At most `workers` jobs are in flight, so when a worker dies (killed, out of memory) the jobs
    it may have taken are known: they are retried once in a fresh pool, then recorded as failed
    with the cause, and the suite goes on. Workers exit when their parent dies; an interrupt
    terminates them, keeping every record already written. A script calling this must guard its
    entry point with `if __name__ == "__main__":`, as spawned workers import the main module.
    """
    from zpeft.run.execute import clear_caches, execute_run, failed_record, train_base_job
    from zpeft.run.records import write_record

    workers = DEFAULT_WORKERS if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    threads = run_threads("process", workers)
    worker_ctx = replace(ctx, progress=False)  # many workers' inner bars would garble the terminal
    bases, dependants, ready = _schedule(pending, ctx)
    clear_caches()  # the parent's copy of the data is not needed while the workers run
    queue = deque([("base", digest, planned) for digest, planned in bases.items()]
                  + [("run", planned.run_id, planned) for planned in ready])
    attempts: Counter[str] = Counter()

    def finish(job: tuple, result) -> None:
        kind, key, planned = job
        if kind == "run":
            done(result)
            return
        for waiting in dependants.pop(key):  # result: None, or the base model's error
            if result is None:
                queue.append(("run", waiting.run_id, waiting))
            else:
                done(_record_base_failure(waiting, ctx, result))

    def lost(job: tuple, cause: str) -> None:
        attempts[job[1]] += 1
        if attempts[job[1]] < MAX_ATTEMPTS:
            queue.appendleft(job)
            return
        error = (f"a worker process died while this job was in flight, {attempts[job[1]]} times (killed, or out "
                 f"of memory?): {cause}")
        if job[0] == "base":
            finish(job, error)
        else:
            record = failed_record(job[2], ctx, error)
            write_record(record, ctx.out)
            done(record)

    pool = worker_pool(workers, threads)
    in_flight: dict[Future, tuple] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                job = queue.popleft()
                task = train_base_job if job[0] == "base" else execute_run
                in_flight[pool.submit(task, job[2], worker_ctx)] = job
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = None
            for future in finished:
                try:
                    result = future.result()
                except BrokenProcessPool as err:
                    broken = err
                    continue
                finish(in_flight.pop(future), result)
            if broken is not None:
                jobs = list(in_flight.values())
                in_flight.clear()
                _stop(pool)
                pool = worker_pool(workers, threads)
                for job in jobs:
                    lost(job, str(broken))
    except BaseException:
        _stop(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def worker_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    """Spawned worker processes with `threads` torch threads each, which end when this process does."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now (an interrupt, or a broken pool) rather than waiting for their jobs."""
    for process in list(getattr(pool, "_processes", {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _init_worker(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="zpeft-parent-watch").start()


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """End this worker when its parent is gone (killed with -9, say): orphans would go on writing records."""
    while True:
        time.sleep(every)
        if os.getppid() != parent:
            os._exit(1)


def _schedule(pending: list[PlannedRun], ctx: RunContext) -> tuple[dict[str, PlannedRun], dict[str, list[PlannedRun]],
                                                                  list[PlannedRun]]:
    """Base models to train (one representative run each), runs waiting on them, and runs ready now.

    Ready runs are ordered with the ones that train from scratch first: they take the base
    model's budget on the largest training set, so starting them early balances the pool.
    """
    store = ctx.bases
    bases: dict[str, PlannedRun] = {}
    dependants: dict[str, list[PlannedRun]] = defaultdict(list)
    ready = []
    for planned in pending:
        if planned.base_hash is not None and not store.has(planned.base_hash):
            bases.setdefault(planned.base_hash, planned)
            dependants[planned.base_hash].append(planned)
        else:
            ready.append(planned)
    ready.sort(key=lambda p: p.run.needs_base)
    return bases, dependants, ready


def _record_base_failure(planned: PlannedRun, ctx: RunContext, error: str) -> RunRecord:
    from zpeft.run.execute import failed_record
    from zpeft.run.records import write_record

    record = failed_record(planned, ctx, f"base model {planned.base_hash} failed to train:\n{error}")
    write_record(record, ctx.out)
    return record


# --- Ray ----------------------------------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("executor 'ray' needs Ray: pip install 'zpeft[ray]' (or pip install ray), "
                          "or use --executor local / process") from None
    return ray


@EXECUTORS.register("ray")
def run_ray(pending: list[PlannedRun], ctx: RunContext, done: Done, workers: int | None = None) -> None:
    """Each run a Ray task (one GPU each when the device is a GPU), on the cluster `ray.init()` finds.

    The results directory must be shared by every node (records and base models are files);
    set RAY_ADDRESS to join an existing cluster. A run's task waits on its base model's task.
    """
    from zpeft.run.execute import failed_record, train_base_job
    from zpeft.run.records import write_record

    ray = _import_ray()
    if not ray.is_initialized():
        ray.init()
    gpus = _ray_gpus(ray, ctx.device)
    worker_ctx = replace(ctx, progress=False)
    bases, dependants, ready = _schedule(pending, ctx)
    base_task = ray.remote(num_gpus=gpus, max_retries=0)(train_base_job)
    run_task = ray.remote(num_gpus=gpus, max_retries=0)(_run_after_base)
    base_refs = {digest: base_task.remote(planned, worker_ctx) for digest, planned in bases.items()}
    refs = {run_task.remote(planned, worker_ctx, None): planned for planned in ready}
    for digest, waiting in dependants.items():
        refs.update({run_task.remote(planned, worker_ctx, base_refs[digest]): planned for planned in waiting})
    while refs:
        finished, _ = ray.wait(list(refs), num_returns=1)
        for ref in finished:
            planned = refs.pop(ref)
            try:
                record = ray.get(ref)
            except Exception as err:  # the task's worker died (killed, out of memory), or a task it waited on did
                lines = str(err).strip().splitlines()
                record = failed_record(planned, ctx, f"the Ray task of this run died before it recorded the run "
                                                     f"({type(err).__name__}): {' '.join(lines[:3])}")
                write_record(record, ctx.out)
            done(record)


def _run_after_base(planned: PlannedRun, ctx: RunContext, base_error: str | None) -> RunRecord:
    """A run, or its failed record when the base model it needs could not be trained (Ray passes the error)."""
    if base_error is not None:
        return _record_base_failure(planned, ctx, base_error)
    from zpeft.run.execute import execute_run

    return execute_run(planned, ctx)


def _ray_gpus(ray, device: str) -> float:
    if device == "cpu":
        return 0
    if device == "auto":
        return 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    return 1
