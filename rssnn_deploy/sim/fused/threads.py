"""How many threads a fused run (``rssnn_deploy.sim.fused.engine``) uses, and how they share
its pieces.

Threads that cannot collapse. The batch is cut into pieces (``engine.run``: sized by
cache, and with several threads at least ``PIECES_PER_THREAD`` per thread); the calling
thread and helper threads of a pool kept for the process pull pieces from one counter
and take each through every layer, torch single-threaded in them, so no thread waits
for another inside a run and one slowed by another process takes fewer pieces.
OpenMP's barriers (one per torch op and step, spinning while a core is taken by another
process) are what made the reference, and torch's own multi-threaded GEMMs, 3–100×
slower on a loaded machine.

How many: ``threads`` given to :func:`set_threads` / the CLI's ``--threads``, or by
default the free cores, capped by the work. Free cores: the cores this process may use
(``os.sched_getaffinity``) minus the other threads ready to run at that moment
(``/proc/loadavg``'s running count, not the 1-minute load, which lags and counts this
process's own earlier runs; read at most every half second), at least one; on a machine
whose cores are all busy one thread measured faster than two; for a run of
``LONG_RUN_S`` or more only other processes' threads count (this process's own OpenMP
workers stop spinning within milliseconds). The cap: one thread per
``MIN_THREAD_WORK_S`` of the run's expected work (the simulator's seconds per sample
on its last run at the same steps), because a second thread costs more than it brings
on short runs here: a helper whose core was idle runs its first millisecond or so at
half speed, and where a piece is driven from Python each GIL hand-over between its
torch and kernel calls waits for the other thread's core (two concurrent 128-sample
pieces of 784-128-10 took 1.5–1.7 ms each against 1.0–1.1 ms alone, and 1.03 ms each
in two processes; as one C call, ``piece``, they take 1.01 ms each in two
threads). Batches up to ``MIN_PIECE`` samples run on one thread.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

import torch

__all__ = ["set_threads", "cores", "auto_threads", "describe_threads", "torch_threads",
           "PIECES_PER_THREAD", "MIN_PIECE", "MIN_THREAD_WORK_S", "LONG_RUN_S", "thread_count",
           "shared"]

_THREADS: Optional[int] = None


def set_threads(threads: Optional[int]) -> None:
    """Worker threads for fused runs (see the module notes); ``None`` = automatic."""
    global _THREADS
    if threads is not None and int(threads) < 1:
        raise ValueError("threads must be at least 1")
    _THREADS = None if threads is None else int(threads)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_OTHERS_TTL_S = 0.5
_others_cache: Tuple[float, Tuple[int, int]] = (-1.0, (0, 0))


def _own_runnable() -> int:
    """Threads of this process ready to run now besides the calling one (its OpenMP
    workers still spinning after a torch op, mostly), from /proc/self/task (0 where
    unavailable)."""
    count = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as fh:
                count += fh.read().rsplit(")", 1)[1].split()[0] == "R"
    except (OSError, IndexError):
        return 0
    return max(0, count - 1)


def _runnable_others(foreign_only: bool = False) -> int:
    """Threads ready to run now besides the one asking: the median of five reads of
    /proc/loadavg's running count, 1 ms apart (0 where unavailable); remembered for half
    a second, so back-to-back runs do not pay the 4 ms of reads each. This process's own
    OpenMP workers count too: they keep spinning on a core for a while after a torch op,
    and a second worker thread started then measured slower than one. ``foreign_only``:
    other processes' threads alone (each read less this process's runnable threads at
    that moment: read later, the spin had ended and was subtracted from nothing)."""
    global _others_cache
    now = time.monotonic()
    if 0.0 <= now - _others_cache[0] < _OTHERS_TTL_S:
        return _others_cache[1][foreign_only]
    counts, foreign = [], []
    for k in range(5):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - 1)
        foreign.append(running - 1 - _own_runnable())
        if k < 4:
            time.sleep(0.001)
    values = (max(0, sorted(counts)[2]), max(0, sorted(foreign)[2]))
    _others_cache = (time.monotonic(), values)
    return values[foreign_only]


def auto_threads() -> int:
    """Worker threads by default: the free cores, i.e. the cores this process may use
    minus the threads of other processes ready to run now, at least 1."""
    n = cores()
    return max(1, min(n, n - _runnable_others()))


def describe_threads() -> str:
    return (f"{_THREADS} (set)" if _THREADS is not None
            else f"automatic, now {auto_threads()} of {cores()} cores")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)


#: pieces per worker thread at least (when the batch allows), so that a thread slowed
#: by another process hands its share to the others instead of holding up the join
PIECES_PER_THREAD = 4

#: smallest piece when the batch is cut for the threads' sake
MIN_PIECE = 16

#: least work, in seconds of one thread, that pays for one more thread when the count is
#: automatic. A helper thread whose core has been idle runs its first millisecond or so
#: at about half speed (784-128-10, a 128-sample piece: 1.1 ms back to back, 2.0 ms
#: after a 3 ms pause), and each extra piece costs ≈ 0.1 ms of Python, so a run shorter
#: than a few milliseconds is fastest on the calling thread alone (dense batch 256:
#: 2.4 ms alone, 3.1 ms on two threads).
MIN_THREAD_WORK_S = 0.004

#: expected work (seconds of one thread) from which this process's own runnable threads
#: no longer count against the automatic thread count: after a torch op on two threads
#: its OpenMP workers stayed runnable for up to 4.5 ms (polled every millisecond), so a
#: longer run has those cores to itself for nearly all of its time. Counted as busy, they
#: had PilotNet-LIF at batch 256 (about a second) run on one thread right after a torch
#: run, at about half the speed of two.
LONG_RUN_S = 0.02


def thread_count(n: int, cost: Optional[float]) -> int:
    """Threads for a run of n samples: the set count, or the free cores (auto_threads),
    but only as many as the run has ``MIN_THREAD_WORK_S`` of work for, judged by
    ``cost``, the seconds per sample the simulator's last run at these steps took on
    its threads (``None`` before a first run, which uses the free cores)."""
    if _THREADS is not None:
        return _THREADS
    if n <= MIN_PIECE:
        return 1
    worth = cores() if cost is None else int(n * cost / MIN_THREAD_WORK_S)
    free = auto_threads()
    if free < cores() and cost is not None and n * cost >= LONG_RUN_S:
        # a long run outlasts this process's own spinning OpenMP workers: count only
        # the other processes' threads as taking cores
        free = max(free, cores() - _runnable_others(foreign_only=True))
    return max(1, min(free, worth))


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _forget_pool_after_fork() -> None:
    """A forked child inherits the pool object but not its threads: work handed to it
    would wait forever (measured: a child running a fused simulation hung). The child
    starts its own pool when it first needs one."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _pool() -> ThreadPoolExecutor:
    """The helper threads of fused runs: one per core this process may use, started on
    first use (a run asks for at most ``threads − 1`` of them)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, cores() - 1),
                                       thread_name_prefix="rssnn-fused")
        return _POOL


def shared(piece: Callable[[int], object], count: int, threads: int) -> List:
    """``[piece(i) for i in range(count)]``, the calling thread and up to ``threads − 1``
    helpers of a kept pool each taking the next index as it finishes one.

    The caller works too, so a helper that starts late (an idle core waking up, or one
    taken by another process) costs nothing beyond the pieces it did not take; the
    helpers live as long as the process, so a run does not pay thread start-up. Once a
    piece fails (or the caller is interrupted, Ctrl-C) no thread starts another one, so
    the error comes back after the pieces under way, not after the whole batch."""
    parts: List = [None] * count
    order = itertools.count()
    failed = threading.Event()

    def drain() -> None:
        for i in iter(order.__next__, None):   # next() on a count is atomic in CPython
            if i >= count or failed.is_set():
                return
            try:
                parts[i] = piece(i)
            except BaseException:
                failed.set()
                raise

    helpers = [] if threads < 2 or count < 2 else \
        [_pool().submit(drain) for _ in range(min(threads, count) - 1)]
    try:
        drain()
    except BaseException:
        failed.set()
        raise
    finally:
        for h in helpers:       # wait for every helper, then raise the first error
            h.result()
    return parts
