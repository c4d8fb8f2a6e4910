"""Where independent chunks of work run: in this process, or on a Dask cluster.

Every loop over independent chunks hands them to one executor: population chunks of
`simulate_summaries`, the (arm, patient chunk) tasks of `compare`, subjects of individual fits and their
(subject, parameter) profiles, the starts of a multi-start population (SAEM) fit and chunks of VPC
replicates. Two executors exist:

* in-process (the default): chunks run one after the other in this process; each chunk's subjects are
  solved on numba's threads, as before;
* a `distributed.Client`: chunks become Dask tasks on the cluster's workers (local processes,
  Kubernetes, Slurm, ...). Dask is the scientific-Python standard for this and is optional: importing
  cartkin never imports it (`pip install "cartkin[distributed]"`).

Choose with `client=` on the function, or for a block of code::

    with cartkin.execution.using(client):
        summary = cartkin.simulate_summaries(...)

The interface, for a new loop (a module-level task function, so it pickles by reference)::

    from cartkin.execution import chunks_for, executor

    def _score(shared, chunk, progress=None):      # runs here or on a worker
        model, regimen, times = shared               # the heavy part, sent once per run
        first, count = chunk                         # the small part, one per task
        ...
        return values                                # only what the caller needs comes back

    chunks, sizes = chunks_for(n, 4096)              # [(first, count), ...], [count, ...]
    parts = executor(client).map(_score, (model, regimen, times), chunks, sizes, progress)
    # parts[i] is _score's result for chunks[i], in chunk order, whatever ran where

`map(task, shared, chunks, sizes, progress)`: `shared` goes to the cluster once per run, as one task
every chunk depends on, so a worker unpickles it once; a chunk is a few small values; `sizes` (one
number per chunk) feed `progress(done)`. Objects travel by plain pickle: a `Model` pickles as its
constructor arguments (a built-in one as its name), objects holding compiled modules drop them and
reload them from the receiving process's cache, so a worker compiles each model once. For the same
numbers wherever a chunk runs, draw a chunk's random numbers from streams keyed by (seed, index), never
from a generator shared across chunks.

Faults: a chunk that raises is retried (`retries`); a chunk whose worker dies is recomputed on another
worker by the scheduler (up to `distributed.scheduler.allowed-failures` times). On any exit other than
success (an error, Ctrl-C) every submitted chunk is cancelled.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import uuid
from typing import Any, Callable, Iterator, Sequence

from .errors import CartkinError

#: seconds to wait for a scheduler before giving up (`connect`)
CONNECT_TIMEOUT = 3.0
#: times a chunk that raised is resubmitted (worker deaths are counted by the scheduler separately)
RETRIES = 2
INSTALL_HINT = 'pip install "cartkin[distributed]"'

#: task(shared, chunk, progress) -> result; progress is None on a cluster
Task = Callable[[Any, Any, Callable[[int], None] | None], Any]


class InProcess:
    """Run chunks one after the other in this process (numba's threads work inside each chunk)."""
    workers = 1

    def map(self, task: Task, shared, chunks: Sequence, sizes: Sequence[int], progress=None) -> list:
        results, done = [], 0
        for chunk, size in zip(chunks, sizes):
            callback = (lambda k, d0=done: progress(d0 + k)) if progress else None
            results.append(task(shared, chunk, callback))
            done += size
            if progress:
                progress(done)
        return results

    def __repr__(self) -> str:
        return "InProcess()"


class DaskExecutor:
    """Run chunks as tasks of a `distributed.Client`; results come back in chunk order."""

    def __init__(self, client, retries: int = RETRIES):
        self.client = client
        self.retries = retries

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(self, task: Task, shared, chunks: Sequence, sizes: Sequence[int], progress=None) -> list:
        from distributed import as_completed

        client = self.client
        run = uuid.uuid4().hex[:12]
        name = getattr(task, "__name__", "task").strip("_")
        # the shared part as a task (not scattered data): if a worker holding it dies, it is recomputed
        shared_future = client.submit(_identity, shared, key=f"cartkin-shared-{run}", pure=False)
        futures = [client.submit(_run_chunk, task, shared_future, chunk, key=f"cartkin-{name}-{run}-{i}",
                                 pure=False, retries=self.retries) for i, chunk in enumerate(chunks)]
        position = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(futures)
        try:
            done = 0
            for future in as_completed(futures, loop=client.loop):  # not the default client: ours
                i = position[future.key]
                try:
                    results[i] = future.result()
                except Exception as exc:
                    if type(exc).__name__ == "KilledWorker":  # the same chunk took several workers down
                        raise CartkinError(f"chunk {i} of {len(futures)} killed every worker that ran it "
                                           f"(out of memory? a crash in compiled code?)") from exc
                    raise
                future.release()
                done += sizes[i]
                if progress:
                    progress(done)
            return results
        finally:  # an error or Ctrl-C: nothing keeps running on the cluster for this run
            client.cancel(futures + [shared_future], force=True)

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


def _identity(x):
    return x


def _run_chunk(task: Task, shared, chunk):
    """A chunk on a worker: one thread per task (a worker's threads run tasks side by side)."""
    import numba
    if numba.get_num_threads() != 1:
        numba.set_num_threads(1)
    return task(shared, chunk, None)


_CURRENT: contextvars.ContextVar = contextvars.ContextVar("cartkin_executor", default=None)


def executor(client=None):
    """The executor for `client=`: a distributed.Client, an executor, or None for the one set by `using`
    (in-process if none is)."""
    if client is None:
        client = _CURRENT.get()
    if client is None:
        return InProcess()
    if isinstance(client, (InProcess, DaskExecutor)):
        return client
    if hasattr(client, "submit") and hasattr(client, "scheduler_info"):
        return DaskExecutor(client)
    raise CartkinError(f"client must be a distributed.Client (or None), got {type(client).__name__}")


@contextlib.contextmanager
def using(client) -> Iterator[object]:
    """Within the block, chunked runs use `client` (a distributed.Client; None: in this process)."""
    token = _CURRENT.set(client)
    try:
        yield client
    finally:
        _CURRENT.reset(token)


def chunks_for(n: int, chunk_size) -> tuple[list[tuple[int, int]], list[int]]:
    """(first, count) of consecutive chunks covering n subjects, and their sizes; a chunk_size that is not a
    positive integer is refused here, for every caller."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise CartkinError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    chunk_size = int(chunk_size)
    chunks = [(first, min(chunk_size, n - first)) for first in range(0, n, chunk_size)]
    return chunks, [c for _, c in chunks]


def spread(n: int, workers: int, low: int = 256, high: int = 16_384) -> int:
    """A chunk size giving each worker about four chunks of n subjects, within [low, high]."""
    return int(min(max(low, math.ceil(n / (4 * max(workers, 1)))), high))


def parse_cluster(spec: str) -> int:
    """Workers of a `--cluster local:N` specification."""
    kind, _, count = spec.partition(":")
    if kind != "local" or not count.isdigit() or int(count) < 1:
        raise CartkinError(f"--cluster {spec!r}: expected local:N with N >= 1 worker processes, e.g. local:4")
    return int(count)


@contextlib.contextmanager
def connect(scheduler: str | None = None, cluster: str | None = None,
            timeout: float = CONNECT_TIMEOUT) -> Iterator[object]:
    """A distributed.Client for the block: joining the scheduler at `scheduler` (tcp://HOST:PORT), or
    starting a local cluster from `cluster` ("local:N": N worker processes of one thread each); None
    when neither is given. Errors (Dask missing, scheduler unreachable) are one-line CartkinErrors."""
    if scheduler and cluster:
        raise CartkinError("give --scheduler or --cluster, not both")
    if not scheduler and not cluster:
        yield None
        return
    n_workers = parse_cluster(cluster) if cluster else 0
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CartkinError(f"{'--scheduler' if scheduler else '--cluster'} needs dask.distributed: "
                           f"{INSTALL_HINT}") from None
    with contextlib.ExitStack() as stack:
        if scheduler:
            _probe(scheduler, timeout)
            try:
                client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
            except Exception as exc:  # noqa: BLE001  (whatever answered is not a scheduler we can use)
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CartkinError(f"no Dask scheduler answers at {scheduler} ({type(exc).__name__}: "
                                   f"{reason[:120]})") from None
        else:
            local = stack.enter_context(LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                     dashboard_address=":0"))
            client = Client(local, set_as_default=False)
        stack.enter_context(client)
        yield client


def _probe(address: str, timeout: float) -> None:
    """Fail fast, with the address in the message, when nothing listens at a tcp:// scheduler address."""
    import socket
    from urllib.parse import urlsplit

    if "://" not in address:
        address = "tcp://" + address
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls"):
        return  # other transports (inproc, ucx, ws): left to Dask
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise CartkinError(f"--scheduler {address!r}: expected tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CartkinError(f"cannot reach the Dask scheduler at {address}: {reason}") from None
