"""Where independent fits run: in this process, in local worker processes (joblib's
loky) or on a Dask cluster, with one torch thread per worker.

The walk-forward folds, the final fit and a grid search's variants are independent
fits; on a 2-core laptop two one-thread workers train about twice as fast as one
process, and far faster than one process with two threads on a busy machine (the
LSTM's OpenMP threads wait on each other at every time step)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cbi_toolkit.errors import CbiError


def worker_context(label: str) -> dict:
    """What `in_worker` needs to make a worker behave like this process: its log level."""
    import logging

    return {"label": label, "level": logging.getLogger("cbi_toolkit").getEffectiveLevel()}


def in_worker(context: dict | None) -> None:
    """Set up a worker process for one task of this process (``context`` from
    `worker_context`; None: running in this process, nothing to do).

    - SIGINT is ignored: Ctrl-C reaches every process of the terminal's group, and
      skorch would take a KeyboardInterrupt as "stop training" and return a half-trained
      net; the parent stops the workers instead.
    - The package's log messages go to stderr at the parent's level, each prefixed
      with the task (e.g. ``[fold 3]``).
    - A watchdog ends the worker when the parent dies (say, by SIGKILL), so no orphan
      keeps training and writing checkpoints into a run folder that a resumed run uses.
    """
    if context is None:
        return
    import logging
    import os
    import signal
    import sys
    import threading
    import time

    if threading.current_thread() is threading.main_thread():  # a Dask task runs in a thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger("cbi_toolkit")
    logger.setLevel(context["level"])
    if not any(getattr(h, "_cbi_worker", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._cbi_worker = True
        logger.addHandler(handler)
        logger.propagate = False
    for h in logger.handlers:
        if getattr(h, "_cbi_worker", False):
            h.setFormatter(logging.Formatter(f"[{context['label']}] %(message)s"))
    parent = os.getppid()
    if parent > 1 and not getattr(in_worker, "_watching", False):
        in_worker._watching = True

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="cbi-parent-watchdog").start()


def resolve_jobs(n_jobs: int | str, n_tasks: int) -> int:
    """Worker processes for ``n_tasks`` independent fits: ``auto`` takes one per core,
    -1 every core; never more than there are tasks."""
    import joblib

    if n_jobs in ("auto", -1):
        n_jobs = joblib.cpu_count(only_physical_cores=False)
    return max(1, min(int(n_jobs), n_tasks))


@contextlib.contextmanager
def execution(n_jobs: int, scheduler: str | None) -> Iterator[tuple[int, int]]:
    """joblib backend for independent fits; yields (n_jobs, parallel slots).

    Local: loky with one BLAS/OpenMP thread per worker (``n_jobs`` 1: in
    process, torch set to one thread for the duration). Dask: the
    dask.distributed joblib backend on ``scheduler``; a worker plugin sets one
    torch thread on every worker."""
    import joblib
    import torch

    if scheduler:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover
            raise CbiError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'"
                           ) from None
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise CbiError(f"cannot reach the Dask scheduler {scheduler} ({exc}); start it with "
                           "`dask scheduler` and workers with `dask worker ADDRESS`") from None
        try:
            client.register_plugin(TorchThreads(), name="cbi-torch-threads")
            slots = max(1, sum(client.nthreads().values()))
            with joblib.parallel_config(backend="dask", wait_for_workers_timeout=60):
                yield -1, slots
        finally:
            client.close()
        return
    if n_jobs == 1:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with joblib.parallel_config(backend="sequential"):
                yield 1, 1
        finally:
            torch.set_num_threads(saved)
        return
    slots = joblib.cpu_count() if n_jobs < 0 else n_jobs
    with joblib.parallel_config(backend="loky", n_jobs=n_jobs, inner_max_num_threads=1):
        yield n_jobs, slots


def _torch_threads_plugin_base():
    try:
        from distributed.diagnostics.plugin import WorkerPlugin
    except ImportError:  # pragma: no cover
        return object
    return WorkerPlugin


class TorchThreads(_torch_threads_plugin_base()):
    """Dask worker plugin: one torch thread per worker process."""

    def setup(self, worker):  # noqa: ARG002
        import torch

        torch.set_num_threads(1)


