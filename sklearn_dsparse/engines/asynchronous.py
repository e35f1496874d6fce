"""Engines for asynchronous ISGD (``asynchronous=True``): no rounds.

Both engines run the same loop (``_AsyncLoop.run_epoch``): take the next
message that arrives, apply it if the staleness bound allows (else hold it:
its sender waits), and answer its sender alone with the model.  They differ
in what "arrives next" means:

- in process, each worker's compute time is drawn from its own stream
  (exponential, mean 1, or ``SIMULATED_SLOWDOWN[i]``) and an event queue
  orders the arrivals: the fit is a deterministic function of random_state;
- on joblib tasks (loky, Dask), the order in which the frames reach the
  driver (``multiprocessing.connection.wait``).  Each worker draws the same
  numbers as in process, but the models they are computed at depend on the
  real order, and so does the fitted model.

Messages are ``messages.encode`` frames: a worker's message carries the
version of the model it was computed at in the round field; the master's
answer carries every block of W and its version.
"""

import heapq
import time
from collections import deque
from multiprocessing.connection import wait

import numpy as np

from .._layout import kernel_view
from ..accounting import new_counters
from ..asynchronous import AsyncMaster, AsyncWorkers, worker_spec
from ..exceptions import WorkerProcessError
from ..messages import HEADER_BYTES, decode_header, encode
from ._tasks import READY, WIRE_BYTES, TaskEngine, serve
from .base import Engine

#: Test hooks, read when a fit starts: worker -> factor of its mean simulated
#: compute time (in process), and worker -> seconds it sleeps per message
#: (joblib tasks).
SIMULATED_SLOWDOWN = {}
SLEEP_SECONDS = {}

#: The sender id of the master's stop frame.
STOP = 0xFFFFFFFF


class _AsyncLoop:
    """The master's loop; ``_receive`` and ``_reply`` move the messages."""

    def _start_master(self, problem, coef, max_staleness):
        self.problem = problem
        self._W = np.array(coef, dtype=np.float64, order="C")
        self._counters = new_counters()
        self.master = AsyncMaster(problem, kernel_view(self._W), max_staleness,
                                  self._counters)
        self._hbar = self.master.hbar
        self._held = []

    def run_epoch(self, n_rounds):
        """Apply ``n_rounds * n_workers`` messages: as many minibatch
        gradients as a synchronous epoch."""
        master = self.master
        for _ in range(n_rounds * self.problem.n_workers):
            while True:
                message = self._applicable_held()
                if message is None:
                    message = self._receive()
                    if not master.can_apply(message[0]):
                        self._held.append(message)
                        master.n_held += 1
                        continue
                break
            worker, block_ids, values = message
            master.apply(worker, block_ids, values)
            self._reply(worker)

    def _applicable_held(self):
        """The oldest held message the bound now lets through, if any."""
        versions = self.master.versions
        for message in sorted(self._held, key=lambda m: versions[m[0]]):
            if self.master.can_apply(message[0]):
                self._held.remove(message)
                return message
        return None

    @property
    def statistics(self):
        return self.master.statistics


class InProcessAsyncEngine(_AsyncLoop, Engine):
    """Every worker in this process; arrivals simulated from the workers'
    streams (a worker computes its message when it receives the model, and
    the message arrives its compute time later)."""

    def __init__(self, max_staleness):
        self.max_staleness = max_staleness

    def start(self, problem, coef, seed_sequences):
        n = problem.n_workers
        self._start_master(problem, coef, self.max_staleness)
        means = [SIMULATED_SLOWDOWN.get(i, 1.0) for i in range(n)]
        self.workers = AsyncWorkers(worker_spec(
            problem, np.arange(n), seed_sequences, delay_means=means,
            sleep_seconds={}))
        self.clock = 0.0
        self._events = []
        for worker in range(n):
            self._reply(worker)
        return self

    def _receive(self):
        arrival, worker, block_ids, values = heapq.heappop(self._events)
        self.clock = max(self.clock, arrival)
        return worker, block_ids, values

    def _reply(self, worker):
        block_ids, values, compute_time = self.workers.respond(worker, self.master.W)
        heapq.heappush(self._events,
                       (self.clock + compute_time, worker, block_ids, values))


def _host_async(conn):
    """A task's loop: compute a message whenever a model arrives."""
    spec = conn.recv()
    workers = AsyncWorkers(spec)
    W = kernel_view(spec["W"])
    m = len(workers.starts) - 1
    conn.send(READY)

    def send(worker, version, W):
        block_ids, values, _ = workers.respond(worker, W)
        n_ids = 0 if len(block_ids) == m else len(block_ids)
        conn.send_bytes(encode(worker, version, block_ids, n_ids, values))

    for worker in workers.worker_ids:
        send(worker, 0, W)
    while True:
        frame = np.frombuffer(conn.recv_bytes(), dtype=np.uint8)
        worker, _, version, _ = decode_header(frame)
        if worker == STOP:
            return
        W = frame[HEADER_BYTES:].copy().view(np.float64).reshape(W.shape)
        send(worker, version, W)


def serve_async(address, authkey, idle_timeout):
    """The body of a worker task of ``JoblibAsyncEngine``."""
    return serve(address, authkey, _host_async, idle_timeout)


class JoblibAsyncEngine(_AsyncLoop, TaskEngine):
    """The workers as long-lived tasks of the active joblib backend; the
    master applies their messages in the order they reach the driver."""

    def __init__(self, n_jobs, master_address=None, max_staleness=None):
        super().__init__(n_jobs, master_address)
        self.max_staleness = max_staleness
        self._wire = np.zeros(len(WIRE_BYTES), dtype=np.int64)
        self._frames = deque()

    def start(self, problem, coef, seed_sequences):
        n = problem.n_workers
        self._start_master(problem, coef, self.max_staleness)
        groups = self._launch(n, serve_async)
        self._task_of = np.empty(n, dtype=np.int64)
        for task, (conn, group) in enumerate(zip(self._conns, groups)):
            self._task_of[group] = task
            spec = worker_spec(problem, group, seed_sequences,
                               delay_means=np.ones(n), sleep_seconds=SLEEP_SECONDS)
            spec["W"] = self._W.copy()
            conn.send(spec)
        self._await_ready()
        self._sizes = problem.partition.sizes * problem.n_outputs
        self._all_blocks = np.arange(problem.partition.n_blocks, dtype=np.int64)
        return self

    def run_epoch(self, n_rounds):
        started = time.perf_counter()
        try:
            super().run_epoch(n_rounds)
        except (EOFError, OSError) as exc:
            self._raise_task_error()
            raise WorkerProcessError(
                f"lost the connection to a worker process ({exc!r}): it was killed "
                "or crashed. The fit is abandoned.") from exc
        self._record_round(time.perf_counter() - started)

    def _receive(self):
        while not self._frames:
            waited = time.perf_counter()
            ready = wait(self._conns, timeout=self._armed)
            if not ready:
                # The oldest worker is the one every other may be waiting for.
                oldest = int(np.argmin(self.master.versions))
                raise self._deadline_error(int(self._task_of[oldest]),
                                           time.perf_counter() - waited, "epoch")
            for conn in ready:
                self._frames.append((self._conns.index(conn), conn.recv_bytes()))
        task, frame = self._frames.popleft()
        frame = np.frombuffer(frame, dtype=np.uint8)
        self._wire[0] += frame.nbytes
        self._wire[1] += 4
        return self._decode(task, frame)

    def _decode(self, task, frame):
        """(worker, block ids, values) of a worker's message, checked."""
        header = decode_header(frame)
        if header is not None:
            worker, n_ids, version, ids = header
            m = len(self._sizes)
            if worker in self._groups[task] and \
                    version == self.master.versions[worker] and \
                    n_ids <= m and np.all((ids >= 0) & (ids < m)):
                start = HEADER_BYTES + 4 * n_ids
                if n_ids == 0:
                    ids = self._all_blocks if frame.nbytes > HEADER_BYTES \
                        else self._all_blocks[:0]
                ids = ids.astype(np.int64)
                n_values = int(np.sum(self._sizes[ids]))
                if frame.nbytes == start + 8 * n_values:
                    return worker, ids, frame[start:].copy().view(np.float64)
        raise WorkerProcessError(
            f"worker task {task} sent {frame.nbytes} bytes that are not the "
            "message of one of its workers at the version it was sent: the "
            "workers run another version of sklearn-dsparse?")

    def _reply(self, worker):
        frame = encode(worker, self.master.version, self._all_blocks, 0, self._W.ravel())
        conn = self._conns[self._task_of[worker]]
        try:
            conn.send_bytes(frame)
        except BlockingIOError:  # the task reads nothing: the deadline
            raise self._deadline_error(int(self._task_of[worker]), self._armed,
                                       "epoch") from None
        self._wire[2] += frame.nbytes
        self._wire[3] += 4

    @property
    def wire_bytes(self):
        return {name: int(v) for name, v in zip(WIRE_BYTES, self._wire)}

    def close(self):
        stop = encode(STOP, 0, np.empty(0, dtype=np.int32), 0)
        for conn in self._conns:
            try:
                conn.send_bytes(stop)
            except OSError:
                pass
        self._close_tasks()
